//! People and memberships. A member is read with one statement: the membership joined to its
//! person and account, with the pending invitation's expiry.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryResult, QuerySelect,
    sea_query::{
        Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, SubQueryStatement,
    },
};
use uuid::Uuid;

use super::entities::membership::{StoredRole, StoredStatus};
use super::entities::{account, group_member, invitation, membership, user};
use super::pagination::keyset_after;
use super::select::{all, columns_of, model};
use super::{Store, Tx};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::page::After;
use crate::domain::roles::Role;
use crate::domain::users::{
    AdminCounts, Member, MemberFilter, Membership, MembershipStatus, PasswordHash, Person,
};
use crate::domain::validate::EmailAddress;

impl From<Role> for StoredRole {
    fn from(role: Role) -> Self {
        match role {
            Role::AccountAdministrator => StoredRole::AccountAdministrator,
            Role::Developer => StoredRole::Developer,
            Role::MediaLibraryFullAccess => StoredRole::MediaLibraryFullAccess,
            Role::MediaLibraryViewOnly => StoredRole::MediaLibraryViewOnly,
            Role::MediaLibraryRestricted => StoredRole::MediaLibraryRestricted,
            Role::Finance => StoredRole::Finance,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(role: StoredRole) -> Self {
        match role {
            StoredRole::AccountAdministrator => Role::AccountAdministrator,
            StoredRole::Developer => Role::Developer,
            StoredRole::MediaLibraryFullAccess => Role::MediaLibraryFullAccess,
            StoredRole::MediaLibraryViewOnly => Role::MediaLibraryViewOnly,
            StoredRole::MediaLibraryRestricted => Role::MediaLibraryRestricted,
            StoredRole::Finance => Role::Finance,
        }
    }
}

impl From<MembershipStatus> for StoredStatus {
    fn from(status: MembershipStatus) -> Self {
        match status {
            MembershipStatus::Invited => StoredStatus::Invited,
            MembershipStatus::Active => StoredStatus::Active,
            MembershipStatus::Disabled => StoredStatus::Disabled,
        }
    }
}

impl From<StoredStatus> for MembershipStatus {
    fn from(status: StoredStatus) -> Self {
        match status {
            StoredStatus::Invited => MembershipStatus::Invited,
            StoredStatus::Active => MembershipStatus::Active,
            StoredStatus::Disabled => MembershipStatus::Disabled,
        }
    }
}

impl From<user::Model> for Person {
    fn from(row: user::Model) -> Self {
        Self {
            id: row.id,
            email: row.email,
            email_key: row.email_key,
            display_name: row.display_name,
            password_hash: row.password_hash.map(PasswordHash::new),
            mfa_enabled: row.mfa_enabled,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<membership::Model> for Membership {
    fn from(row: membership::Model) -> Self {
        Self {
            account_id: row.account_id,
            user_id: row.user_id,
            email_key: row.email_key,
            role: row.role.into(),
            status: row.status.into(),
            invited_by: row.invited_by,
            accepted_at: row.accepted_at,
            last_login_at: row.last_login_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<&Membership> for membership::ActiveModel {
    fn from(m: &Membership) -> Self {
        Self {
            account_id: Set(m.account_id),
            user_id: Set(m.user_id),
            email_key: Set(m.email_key.clone()),
            role: Set(m.role.into()),
            status: Set(m.status.into()),
            invited_by: Set(m.invited_by),
            accepted_at: Set(m.accepted_at),
            last_login_at: Set(m.last_login_at),
            version: Set(m.version),
            created_at: Set(m.created_at),
            updated_at: Set(m.updated_at),
        }
    }
}

/// The memberships of `account_id` with their people, the account's MFA enforcement and the
/// pending invitations' expiry: what a `User` shows, in one statement. The account's setting is
/// an uncorrelated subquery (evaluated once per statement, not per row), and the invitation is
/// looked up only for invited members.
fn member_query(account_id: Uuid) -> SelectStatement {
    let mut query = Query::select();
    columns_of(&mut query, membership::Entity, "m_");
    columns_of(&mut query, user::Entity, "u_");
    let enforce_mfa = Query::select()
        .column(account::Column::EnforceMfa)
        .from(account::Entity)
        .and_where(Expr::col((account::Entity, account::Column::Id)).eq(account_id))
        .to_owned();
    let invitation_expiry = Query::select()
        .column(invitation::Column::ExpiresAt)
        .from(invitation::Entity)
        .and_where(
            Expr::col((invitation::Entity, invitation::Column::AccountId))
                .equals((membership::Entity, membership::Column::AccountId)),
        )
        .and_where(
            Expr::col((invitation::Entity, invitation::Column::UserId))
                .equals((membership::Entity, membership::Column::UserId)),
        )
        .to_owned();
    query
        .expr_as(
            Expr::SubQuery(
                None,
                Box::new(SubQueryStatement::SelectStatement(enforce_mfa)),
            ),
            Alias::new("enforce_mfa"),
        )
        .expr_as(
            Expr::case(
                Expr::col((membership::Entity, membership::Column::Status))
                    .eq(Expr::value(StoredStatus::Invited)),
                Expr::SubQuery(
                    None,
                    Box::new(SubQueryStatement::SelectStatement(invitation_expiry)),
                ),
            ),
            Alias::new("invitation_expires_at"),
        )
        .from(membership::Entity)
        .inner_join(
            user::Entity,
            Expr::col((user::Entity, user::Column::Id))
                .equals((membership::Entity, membership::Column::UserId)),
        )
        .and_where(membership::Column::AccountId.eq(account_id));
    query
}

fn member_of_row(row: &QueryResult) -> DomainResult<Member> {
    let membership: Membership = model::<membership::Model>(row, "m_")?.into();
    let person: Person = model::<user::Model>(row, "u_")?.into();
    let invitation_expires_at: Option<DateTime<Utc>> = row.try_get("", "invitation_expires_at")?;
    Ok(Member {
        invitation_expires_at: invitation_expires_at
            .filter(|_| membership.status == MembershipStatus::Invited),
        enforce_mfa: row.try_get("", "enforce_mfa")?,
        person,
        membership,
    })
}

async fn find_member(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
) -> DomainResult<Option<Member>> {
    let mut query = member_query(account_id);
    query.and_where(membership::Column::UserId.eq(user_id));
    all(conn, &query)
        .await?
        .first()
        .map(member_of_row)
        .transpose()
}

/// Keeps the members of `group_id` only.
fn in_group(account_id: Uuid, group_id: Uuid) -> sea_orm::sea_query::Expr {
    Expr::col((membership::Entity, membership::Column::UserId)).in_subquery(
        Query::select()
            .column(group_member::Column::UserId)
            .from(group_member::Entity)
            .and_where(group_member::Column::AccountId.eq(account_id))
            .and_where(group_member::Column::GroupId.eq(group_id))
            .to_owned(),
    )
}

impl Store {
    /// The member, in one statement.
    pub async fn member(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<Option<Member>> {
        find_member(self.connection(), account_id, user_id).await
    }

    /// Up to `limit` members of the account matching `filter`, by `(email_key, user_id)` after
    /// `after`: one range scan of `(account_id, email_key, user_id)`, one statement.
    pub async fn members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<Member>> {
        let mut query = member_query(account_id);
        if let Some(role) = filter.role {
            query.and_where(membership::Column::Role.eq(StoredRole::from(role)));
        }
        if let Some(status) = filter.status {
            query.and_where(membership::Column::Status.eq(StoredStatus::from(status)));
        }
        if let Some(prefix) = &filter.email_prefix {
            query.and_where(membership::Column::EmailKey.starts_with(prefix));
        }
        if let Some(group_id) = filter.group_id {
            query.and_where(in_group(account_id, group_id));
        }
        if let Some(after) = after {
            query.and_where(keyset_after(
                membership::Column::EmailKey,
                membership::Column::UserId,
                after.key.clone(),
                after.id,
                false,
            ));
        }
        query
            .order_by(
                (membership::Entity, membership::Column::EmailKey),
                Order::Asc,
            )
            .order_by((membership::Entity, membership::Column::UserId), Order::Asc)
            .limit(limit);
        all(self.connection(), &query)
            .await?
            .iter()
            .map(member_of_row)
            .collect()
    }

    pub async fn person(&self, id: Uuid) -> DomainResult<Option<Person>> {
        Ok(user::Entity::find_by_id(id)
            .one(self.connection())
            .await?
            .map(Person::from))
    }

    pub async fn person_by_email(&self, email_key: &str) -> DomainResult<Option<Person>> {
        Ok(user::Entity::find()
            .filter(user::Column::EmailKey.eq(email_key))
            .one(self.connection())
            .await?
            .map(Person::from))
    }
}

impl Tx {
    /// The member, read inside the unit of work.
    pub async fn member(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<Option<Member>> {
        find_member(self.conn(), account_id, user_id).await
    }

    /// The person, read inside the unit of work.
    pub async fn person(&self, id: Uuid) -> DomainResult<Option<Person>> {
        Ok(user::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .map(Person::from))
    }

    /// The person with this email, created if new. Safe under races: the insert yields to a
    /// concurrent one (`ON CONFLICT DO NOTHING`) and the row is then read back.
    pub async fn find_or_create_person(
        &self,
        email: &EmailAddress,
        display_name: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<Person> {
        let new = Person::new(email, display_name, now);
        user::Entity::insert(user::ActiveModel {
            id: Set(new.id),
            email: Set(new.email),
            email_key: Set(new.email_key),
            display_name: Set(new.display_name),
            password_hash: Set(None),
            mfa_enabled: Set(new.mfa_enabled),
            version: Set(new.version),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(user::Column::EmailKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        user::Entity::find()
            .filter(user::Column::EmailKey.eq(email.key()))
            .one(self.conn())
            .await?
            .map(Person::from)
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("person vanished after insert")))
    }

    /// Inserts the membership; `false` when the person is already a member of the account.
    pub async fn insert_membership(&self, membership: &Membership) -> DomainResult<bool> {
        let inserted = membership::Entity::insert(membership::ActiveModel::from(membership))
            .on_conflict(
                OnConflict::columns([membership::Column::AccountId, membership::Column::UserId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(inserted == 1)
    }

    /// Sets the member's role and/or status and moves the membership's version (the etag) on.
    pub async fn update_membership(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        role: Option<Role>,
        status: Option<MembershipStatus>,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let mut update = membership::Entity::update_many()
            .col_expr(
                membership::Column::Version,
                Expr::col(membership::Column::Version).add(1),
            )
            .col_expr(membership::Column::UpdatedAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.eq(user_id));
        if let Some(role) = role {
            update = update.col_expr(
                membership::Column::Role,
                Expr::value(StoredRole::from(role)),
            );
        }
        if let Some(status) = status {
            update = update.col_expr(
                membership::Column::Status,
                Expr::value(StoredStatus::from(status)),
            );
        }
        update.exec(self.conn()).await?;
        Ok(())
    }

    pub async fn delete_membership(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<()> {
        membership::Entity::delete_by_id((account_id, user_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Takes the member out of every group of the account.
    pub async fn remove_from_groups(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<()> {
        group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::UserId.eq(user_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Active and invited administrators of the (locked) account.
    pub async fn admin_counts(&self, account_id: Uuid) -> DomainResult<AdminCounts> {
        let rows: Vec<StoredStatus> = membership::Entity::find()
            .select_only()
            .column(membership::Column::Status)
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::Role.eq(StoredRole::AccountAdministrator))
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(AdminCounts {
            active: rows.iter().filter(|s| **s == StoredStatus::Active).count(),
            invited: rows.iter().filter(|s| **s == StoredStatus::Invited).count(),
        })
    }

    /// Renames the person if still at `version`; `false` when another write moved it on. The
    /// person is shared by accounts whose locks differ, so this guard is what keeps two
    /// concurrent renames from both winning.
    pub async fn rename_person(
        &self,
        user_id: Uuid,
        name: &str,
        version: i64,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let result = user::Entity::update_many()
            .col_expr(user::Column::DisplayName, Expr::value(name))
            .col_expr(
                user::Column::Version,
                Expr::col(user::Column::Version).add(1),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::Version.eq(version))
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected == 1)
    }
}
