//! Members of accounts: the person, the membership, the pending invitation. Every write locks
//! the account row first, so caps, the last-administrator rule and invitations hold under
//! concurrent requests on any number of replicas.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::accounts::{find_or_create_person, status};
use super::entities::{account, group, group_member, invitation, membership, user};
use super::idempotency::{self, Idempotency};
use super::locks::{add_to_counter, bump_access_revision, lock_account};
use super::sessions::revoke_sessions;
use super::{Store, unique_violation};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::roles::Role;
use crate::domain::users::{self as rules, AdminCounts, UserEtag};
use crate::email::outbox;
use crate::email::templates::Email;

/// A person as a member of one account.
#[derive(Debug, Clone)]
pub struct Member {
    pub person: user::Model,
    pub membership: membership::Model,
    pub invitation_expires_at: Option<DateTime<Utc>>,
    /// The account enforces MFA.
    pub enforce_mfa: bool,
}

impl Member {
    pub fn etag(&self) -> UserEtag {
        UserEtag {
            membership: self.membership.version,
            person: self.person.version,
        }
    }

    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.membership.role)
    }
}

#[derive(Debug, Clone)]
pub struct NewMember {
    pub account_id: Uuid,
    pub email: String,
    pub email_key: String,
    pub display_name: String,
    pub role: Role,
    pub invited_by: Option<Uuid>,
    pub inviter_name: String,
    pub idempotency: Option<Idempotency>,
}

/// Filters of `ListUsers`; they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
    pub status: Option<&'static str>,
    pub email_prefix: Option<String>,
    pub group_id: Option<Uuid>,
}

/// What `UpdateUser` changes.
#[derive(Debug, Clone, Default)]
pub struct MemberChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
}

/// A new invitation link: the token goes into the email, its hash into the table.
pub struct NewLink {
    pub token: String,
    pub token_hash: String,
    pub link: String,
}

impl Store {
    /// Adds a member (status INVITED), its invitation and the email, in one transaction under the
    /// account lock: the user cap counts invited members and holds under concurrent calls.
    pub async fn create_member(
        &self,
        new: NewMember,
        link: NewLink,
        now: DateTime<Utc>,
    ) -> DomainResult<Member> {
        if let Some(key) = &new.idempotency
            && let Some(user_id) = idempotency::replay(&self.db, key, now).await?
        {
            let user_id = Uuid::parse_str(&user_id).map_err(DomainError::internal)?;
            return self.require_member(new.account_id, user_id).await;
        }
        match self.insert_member(&new, &link, now).await {
            Err(err) if idempotency::is_conflict(&err) => {
                let key = new.idempotency.as_ref().ok_or(err)?;
                let user_id = idempotency::replay(&self.db, key, now)
                    .await?
                    .ok_or_else(|| {
                        DomainError::internal(anyhow::anyhow!("lost idempotency key"))
                    })?;
                let user_id = Uuid::parse_str(&user_id).map_err(DomainError::internal)?;
                self.require_member(new.account_id, user_id).await
            }
            other => other,
        }
    }

    async fn insert_member(
        &self,
        new: &NewMember,
        link: &NewLink,
        now: DateTime<Utc>,
    ) -> DomainResult<Member> {
        let txn = self.db.begin().await?;
        let account = lock_account(&txn, new.account_id).await?;
        let person =
            find_or_create_person(&txn, &new.email, &new.email_key, &new.display_name, now).await?;
        // The key before the cap: a concurrent retry then fails on the key (and replays the
        // first result) instead of on the slot its twin has just taken.
        if let Some(key) = &new.idempotency {
            idempotency::record(&txn, key, &person.id.to_string(), now).await?;
        }
        if account.user_count >= account.max_users {
            return Err(rules::user_limit_reached(account.max_users));
        }
        let membership = membership::Model {
            account_id: new.account_id,
            user_id: person.id,
            email_key: person.email_key.clone(),
            role: new.role.as_str().to_owned(),
            status: status::INVITED.to_owned(),
            invited_by: new.invited_by,
            accepted_at: None,
            last_login_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        match membership::Entity::insert(membership::ActiveModel::from(membership.clone()))
            .exec_without_returning(&txn)
            .await
        {
            Err(err) if unique_violation(&err) == Some("memberships_pkey") => {
                return Err(rules::already_member());
            }
            other => {
                other?;
            }
        }
        add_to_counter(&txn, new.account_id, account::Column::UserCount, 1).await?;
        let expires_at = invite(
            &txn,
            &account,
            &person,
            new.invited_by,
            &new.inviter_name,
            link,
            now,
        )
        .await?;
        txn.commit().await?;
        Ok(Member {
            person,
            membership,
            invitation_expires_at: Some(expires_at),
            enforce_mfa: account.enforce_mfa,
        })
    }

    /// The display name of a member's person, if they are a member.
    pub async fn find_member_name(
        &self,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Option<String>> {
        Ok(self
            .find_member(&self.db, account_id, user_id)
            .await?
            .map(|member| member.person.display_name))
    }

    /// The member, or `USER_NOT_FOUND`.
    pub async fn require_member(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<Member> {
        self.find_member(&self.db, account_id, user_id)
            .await?
            .ok_or_else(rules::user_not_found)
    }

    async fn find_member(
        &self,
        conn: &impl ConnectionTrait,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Option<Member>> {
        let Some(membership) = membership::Entity::find_by_id((account_id, user_id))
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        let person = user::Entity::find_by_id(user_id)
            .one(conn)
            .await?
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("membership without person")))?;
        let invitation = invitation::Entity::find_by_id((account_id, user_id))
            .one(conn)
            .await?;
        let enforce_mfa = account::Entity::find_by_id(account_id)
            .select_only()
            .column(account::Column::EnforceMfa)
            .into_tuple::<bool>()
            .one(conn)
            .await?
            .unwrap_or(false);
        Ok(Some(Member {
            person,
            membership,
            invitation_expires_at: invitation.map(|i| i.expires_at),
            enforce_mfa,
        }))
    }

    /// One page of the account's members in (email, id) order, after `after`.
    pub async fn list_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<(String, Uuid)>,
        limit: u64,
    ) -> DomainResult<Vec<Member>> {
        let mut query =
            membership::Entity::find().filter(membership::Column::AccountId.eq(account_id));
        if let Some(role) = filter.role {
            query = query.filter(membership::Column::Role.eq(role.as_str()));
        }
        if let Some(status) = filter.status {
            query = query.filter(membership::Column::Status.eq(status));
        }
        if let Some(prefix) = &filter.email_prefix {
            // A range on the index instead of LIKE: no escaping, and it uses (account_id, email_key).
            query = query.filter(membership::Column::EmailKey.gte(prefix.as_str()));
            query = query.filter(membership::Column::EmailKey.lt(format!("{prefix}\u{10FFFF}")));
        }
        if let Some(group_id) = filter.group_id {
            let exists = group::Entity::find_by_id((account_id, group_id))
                .one(&self.db)
                .await?;
            if exists.is_none() {
                return Err(rules::group_not_found());
            }
            query = query.filter(
                membership::Column::UserId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(group_member::Column::UserId)
                        .from(group_member::Entity)
                        .and_where(group_member::Column::AccountId.eq(account_id))
                        .and_where(group_member::Column::GroupId.eq(group_id))
                        .to_owned(),
                ),
            );
        }
        if let Some((email_key, user_id)) = after {
            query = query.filter(super::pagination::keyset_after(
                membership::Column::EmailKey,
                membership::Column::UserId,
                email_key,
                user_id,
                false,
            ));
        }
        let memberships = query
            .order_by_asc(membership::Column::EmailKey)
            .order_by_asc(membership::Column::UserId)
            .limit(limit)
            .all(&self.db)
            .await?;
        self.complete_members(account_id, memberships).await
    }

    /// Adds the people and pending invitations to a page of memberships (two queries per page).
    async fn complete_members(
        &self,
        account_id: Uuid,
        memberships: Vec<membership::Model>,
    ) -> DomainResult<Vec<Member>> {
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = memberships.iter().map(|m| m.user_id).collect();
        let mut people: HashMap<Uuid, user::Model> = user::Entity::find()
            .filter(user::Column::Id.is_in(ids.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let invited: Vec<Uuid> = memberships
            .iter()
            .filter(|m| m.status == status::INVITED)
            .map(|m| m.user_id)
            .collect();
        let invitations: HashMap<Uuid, DateTime<Utc>> = if invited.is_empty() {
            HashMap::new()
        } else {
            invitation::Entity::find()
                .filter(invitation::Column::AccountId.eq(account_id))
                .filter(invitation::Column::UserId.is_in(invited))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|i| (i.user_id, i.expires_at))
                .collect()
        };
        let enforce_mfa = self
            .find_account(account_id)
            .await?
            .is_some_and(|account| account.enforce_mfa);
        memberships
            .into_iter()
            .map(|membership| {
                let person = people.remove(&membership.user_id).ok_or_else(|| {
                    DomainError::internal(anyhow::anyhow!("membership without person"))
                })?;
                Ok(Member {
                    invitation_expires_at: invitations.get(&membership.user_id).copied(),
                    person,
                    membership,
                    enforce_mfa,
                })
            })
            .collect()
    }

    /// Changes a member's name and/or role. A role change takes the member out of every group of
    /// the account and moves the access revision (returned).
    pub async fn update_member(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        change: MemberChange,
        etag: Option<UserEtag>,
        now: DateTime<Utc>,
    ) -> DomainResult<(Member, Option<i64>)> {
        let txn = self.db.begin().await?;
        lock_account(&txn, account_id).await?;
        let member = self.locked_member(&txn, account_id, user_id, etag).await?;
        let mut revision = None;
        if let Some(role) = change.role
            && member.role() != Some(role)
        {
            if member.role() == Some(Role::AccountAdministrator) {
                let counts = admin_counts(&txn, account_id).await?;
                rules::check_admin_remains(&member.membership.status, counts)?;
            }
            group_member::Entity::delete_many()
                .filter(group_member::Column::AccountId.eq(account_id))
                .filter(group_member::Column::UserId.eq(user_id))
                .exec(&txn)
                .await?;
            bump_membership(&txn, account_id, user_id, now, |update| {
                update.col_expr(membership::Column::Role, Expr::value(role.as_str()))
            })
            .await?;
            revision = Some(bump_access_revision(&txn, account_id).await?);
            // Tokens carry the role: the member logs in again to get the new one.
            revoke_sessions(&txn, user_id, Some(account_id), None, "role_changed", now).await?;
        }
        if let Some(name) = change.display_name
            && name != member.person.display_name
        {
            rename_person(&txn, user_id, &name, member.person.version, now).await?;
        }
        let updated = self.locked_member(&txn, account_id, user_id, None).await?;
        txn.commit().await?;
        Ok((updated, revision))
    }

    /// Removes a member: membership, invitation and group memberships go; the person stays.
    /// Returns the access revision after the removal, or `None` when there was nothing to remove.
    pub async fn delete_member(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        etag: Option<UserEtag>,
        allow_missing: bool,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<i64>> {
        let txn = self.db.begin().await?;
        lock_account(&txn, account_id).await?;
        let member = match self.locked_member(&txn, account_id, user_id, etag).await {
            Err(DomainError::NotFound { .. }) if allow_missing => return Ok(None),
            other => other?,
        };
        if member.role() == Some(Role::AccountAdministrator) {
            let counts = admin_counts(&txn, account_id).await?;
            rules::check_admin_remains(&member.membership.status, counts)?;
        }
        group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        invitation::Entity::delete_by_id((account_id, user_id))
            .exec(&txn)
            .await?;
        membership::Entity::delete_by_id((account_id, user_id))
            .exec(&txn)
            .await?;
        revoke_sessions(&txn, user_id, Some(account_id), None, "removed", now).await?;
        add_to_counter(&txn, account_id, account::Column::UserCount, -1).await?;
        let revision = bump_access_revision(&txn, account_id).await?;
        txn.commit().await?;
        Ok(Some(revision))
    }

    /// Replaces the member's invitation link (the old one stops working) and queues the email.
    pub async fn resend_invitation(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        inviter: (Option<Uuid>, String),
        link: NewLink,
        now: DateTime<Utc>,
    ) -> DomainResult<Member> {
        let txn = self.db.begin().await?;
        let account = lock_account(&txn, account_id).await?;
        let member = self.locked_member(&txn, account_id, user_id, None).await?;
        if member.membership.status != status::INVITED {
            return Err(rules::not_invited());
        }
        if let Some(previous) = invitation::Entity::find_by_id((account_id, user_id))
            .one(&txn)
            .await?
        {
            rules::check_resend_interval(previous.created_at, now)?;
        }
        invitation::Entity::delete_by_id((account_id, user_id))
            .exec(&txn)
            .await?;
        invite(
            &txn,
            &account,
            &member.person,
            inviter.0,
            &inviter.1,
            &link,
            now,
        )
        .await?;
        let updated = self.locked_member(&txn, account_id, user_id, None).await?;
        txn.commit().await?;
        Ok(updated)
    }

    /// Disables (`disable = true`) or re-enables a member. Returns the member and the access
    /// revision after the change.
    pub async fn set_member_disabled(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        disable: bool,
        etag: Option<UserEtag>,
        now: DateTime<Utc>,
    ) -> DomainResult<(Member, i64)> {
        let txn = self.db.begin().await?;
        lock_account(&txn, account_id).await?;
        let member = self.locked_member(&txn, account_id, user_id, etag).await?;
        let current = member.membership.status.as_str();
        let target = if disable {
            status::DISABLED
        } else if current != status::DISABLED {
            current
        } else if member.membership.accepted_at.is_some() {
            status::ACTIVE
        } else {
            status::INVITED
        };
        if target != current {
            if disable && member.role() == Some(Role::AccountAdministrator) {
                let counts = admin_counts(&txn, account_id).await?;
                rules::check_admin_remains(current, counts)?;
            }
            if disable {
                invitation::Entity::delete_by_id((account_id, user_id))
                    .exec(&txn)
                    .await?;
                revoke_sessions(&txn, user_id, Some(account_id), None, "disabled", now).await?;
            }
            bump_membership(&txn, account_id, user_id, now, |update| {
                update.col_expr(membership::Column::Status, Expr::value(target))
            })
            .await?;
        }
        let revision = bump_access_revision(&txn, account_id).await?;
        let updated = self.locked_member(&txn, account_id, user_id, None).await?;
        txn.commit().await?;
        Ok((updated, revision))
    }

    /// Renames a person (their name is shared by all their accounts).
    pub async fn rename_person(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        name: &str,
        etag: Option<UserEtag>,
        now: DateTime<Utc>,
    ) -> DomainResult<Member> {
        let txn = self.db.begin().await?;
        let member = self.locked_member(&txn, account_id, user_id, etag).await?;
        if name != member.person.display_name {
            rename_person(&txn, user_id, name, member.person.version, now).await?;
        }
        let updated = self.locked_member(&txn, account_id, user_id, None).await?;
        txn.commit().await?;
        Ok(updated)
    }

    /// The member inside a write transaction, checked against the caller's etag.
    async fn locked_member(
        &self,
        txn: &DatabaseTransaction,
        account_id: Uuid,
        user_id: Uuid,
        etag: Option<UserEtag>,
    ) -> DomainResult<Member> {
        let member = self
            .find_member(txn, account_id, user_id)
            .await?
            .ok_or_else(rules::user_not_found)?;
        if etag.is_some_and(|etag| etag != member.etag()) {
            return Err(DomainError::etag_mismatch("user"));
        }
        Ok(member)
    }
}

/// Records the membership's invitation link (7 days) and queues its email, in the caller's
/// transaction. Returns when the link expires.
pub(crate) async fn invite(
    conn: &impl ConnectionTrait,
    account: &account::Model,
    person: &user::Model,
    invited_by: Option<Uuid>,
    inviter_name: &str,
    link: &NewLink,
    now: DateTime<Utc>,
) -> DomainResult<DateTime<Utc>> {
    let expires_at = now + rules::INVITATION_TTL;
    invitation::Entity::insert(invitation::ActiveModel {
        account_id: Set(account.id),
        user_id: Set(person.id),
        token_hash: Set(link.token_hash.clone()),
        invited_by: Set(invited_by),
        expires_at: Set(expires_at),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    let email = invitation_email(person, &account.name, inviter_name, &link.link);
    outbox::enqueue(conn, Some(account.id), &person.email, &email, now).await?;
    Ok(expires_at)
}

/// A new person sets a password; a person who has one accepts with it.
fn invitation_email(person: &user::Model, account_name: &str, inviter: &str, link: &str) -> Email {
    let expires_in_days = rules::INVITATION_TTL.num_days();
    if person.password_hash.is_some() {
        Email::AddedToAccount {
            account_name: account_name.to_owned(),
            inviter: inviter.to_owned(),
            link: link.to_owned(),
            expires_in_days,
        }
    } else {
        Email::Invitation {
            account_name: account_name.to_owned(),
            inviter: inviter.to_owned(),
            link: link.to_owned(),
            expires_in_days,
        }
    }
}

/// Active and invited administrators of the (locked) account.
async fn admin_counts(conn: &impl ConnectionTrait, account_id: Uuid) -> DomainResult<AdminCounts> {
    let rows: Vec<String> = membership::Entity::find()
        .select_only()
        .column(membership::Column::Status)
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::Role.eq(Role::AccountAdministrator.as_str()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(AdminCounts {
        active: rows.iter().filter(|s| *s == status::ACTIVE).count(),
        invited: rows.iter().filter(|s| *s == status::INVITED).count(),
    })
}

/// Applies `change` to the membership and moves its version (the etag) on.
async fn bump_membership(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
    change: impl FnOnce(
        sea_orm::UpdateMany<membership::Entity>,
    ) -> sea_orm::UpdateMany<membership::Entity>,
) -> DomainResult<()> {
    let update = membership::Entity::update_many()
        .col_expr(
            membership::Column::Version,
            Expr::col(membership::Column::Version).add(1),
        )
        .col_expr(membership::Column::UpdatedAt, Expr::value(now))
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(user_id));
    change(update).exec(conn).await?;
    Ok(())
}

/// Renames the person if still at `version`: the person is shared by accounts whose locks differ,
/// so this guard is what keeps two concurrent renames from both winning.
async fn rename_person(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    name: &str,
    version: i64,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let result = user::Entity::update_many()
        .col_expr(user::Column::DisplayName, Expr::value(name))
        .col_expr(
            user::Column::Version,
            Expr::col(user::Column::Version).add(1),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::Version.eq(version))
        .exec(conn)
        .await?;
    if result.rows_affected == 0 {
        return Err(DomainError::etag_mismatch("user"));
    }
    Ok(())
}
