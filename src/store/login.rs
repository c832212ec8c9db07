//! What a login reads and writes of people and memberships: the person by email with their
//! ACTIVE memberships and the attempt admitted by the throttle (one statement on PostgreSQL), the memberships a
//! person may log in to, and a person's password, name and MFA setting.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryTrait,
    sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, Query, WithClause},
};
use uuid::Uuid;

use super::entities::membership::StoredStatus;
use super::entities::{account, login_throttle, membership, user};
use super::throttle::{AttemptBy, reserve_attempt};
use super::{Store, Tx};
use crate::domain::auth::{ActiveMembership, Attempt, PasswordLogin};
use crate::domain::error::DomainResult;
use crate::domain::users::{MembershipStatus, Person};

/// A membership row joined to its account (no account: nothing to log in to).
fn joined(
    membership: membership::Model,
    account: Option<account::Model>,
) -> Option<ActiveMembership> {
    account.map(|account| ActiveMembership {
        membership: membership.into(),
        account: account.into(),
    })
}

/// A person by email joined to their ACTIVE memberships and those memberships' accounts.
fn person_with_memberships(
    email_key: &str,
) -> sea_orm::SelectThree<user::Entity, membership::Entity, account::Entity, sea_orm::TopologyChain>
{
    user::Entity::find()
        .filter(user::Column::EmailKey.eq(email_key))
        .filter(membership::Column::Status.eq(StoredStatus::Active))
        .find_also_related(membership::Entity)
        .and_also_related(account::Entity)
}

/// The person of joined `(person, membership, account)` rows (one per membership, or one with
/// neither when the person has none) with their memberships by account name; `None` without rows.
fn person_and_accounts(
    rows: Vec<(
        user::Model,
        Option<membership::Model>,
        Option<account::Model>,
    )>,
) -> Option<(Person, Vec<ActiveMembership>)> {
    let mut person = None;
    let mut accounts = Vec::with_capacity(rows.len());
    for (user, membership, account) in rows {
        accounts.extend(membership.and_then(|m| joined(m, account)));
        person.get_or_insert(user);
    }
    sort_by_account_name(&mut accounts);
    person.map(|person| (person.into(), accounts))
}

fn sort_by_account_name(memberships: &mut [ActiveMembership]) {
    memberships.sort_by(|a, b| {
        a.account
            .name
            .cmp(&b.account.name)
            .then(a.account.id.cmp(&b.account.id))
    });
}

/// Sets one column of a person's row and moves the row's version (its etag) on.
async fn update_person(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    column: user::Column,
    value: sea_orm::Value,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    user::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .col_expr(
            user::Column::Version,
            Expr::col(user::Column::Version).add(1),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .exec(conn)
        .await?;
    Ok(())
}

async fn set_password(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    update_person(conn, user_id, user::Column::PasswordHash, hash.into(), now).await
}

impl Store {
    /// The first step of a password login: the person with this email and their ACTIVE
    /// memberships (with their accounts, by account name), with the attempt admitted (or not) by the
    /// person's throttle before any hash is computed. `None` when no such person can log in
    /// anywhere. On PostgreSQL this is one statement (the count is a data-modifying `WITH`
    /// query; the main query reads the lock from the snapshot before it).
    pub async fn start_password_login(
        &self,
        email_key: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<PasswordLogin>> {
        let backend = self.backend();
        if backend != DbBackend::Postgres {
            let rows = person_with_memberships(email_key).all(&self.db).await?;
            let Some((person, accounts)) = person_and_accounts(rows) else {
                return Ok(None);
            };
            let attempt = self.reserve_login_attempt(person.id, now).await?;
            return Ok(Some(PasswordLogin {
                person,
                accounts,
                attempt,
            }));
        }
        let attempt = Alias::new("attempt");
        let mut query = person_with_memberships(email_key).into_query();
        query
            .expr_as(
                Expr::exists(
                    Query::select()
                        .expr(Expr::value(1))
                        .from(attempt.clone())
                        .to_owned(),
                ),
                Alias::new("counted"),
            )
            .expr_as(
                Expr::SubQuery(
                    None,
                    Box::new(
                        Query::select()
                            .column(login_throttle::Column::LockedUntil)
                            .from(login_throttle::Entity)
                            .and_where(
                                Expr::col((login_throttle::Entity, login_throttle::Column::UserId))
                                    .equals((user::Entity, user::Column::Id)),
                            )
                            .to_owned()
                            .into(),
                    ),
                ),
                Alias::new("locked_until"),
            );
        let statement = WithClause::new()
            .cte(
                CommonTableExpression::new()
                    .query(reserve_attempt(AttemptBy::EmailKey(email_key), now))
                    .table_name(attempt)
                    .to_owned(),
            )
            .to_owned()
            .query(query);
        let rows = self.db.query_all_raw(backend.build(&statement)).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let counted: bool = first.try_get("", "counted")?;
        let locked_until: Option<DateTime<Utc>> = first.try_get("", "locked_until")?;
        // The columns of `person_with_memberships`, prefixed as a three-way select names them.
        let rows = rows
            .iter()
            .map(|row| {
                Ok((
                    user::Model::from_query_result(row, "A_")?,
                    membership::Model::from_query_result_optional(row, "B_")?,
                    account::Model::from_query_result_optional(row, "C_")?,
                ))
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        Ok(
            person_and_accounts(rows).map(|(person, accounts)| PasswordLogin {
                person,
                accounts,
                attempt: if counted {
                    Attempt::Admitted
                } else {
                    Attempt::refused(locked_until, now)
                },
            }),
        )
    }

    /// The person's ACTIVE memberships with their accounts, by account name.
    pub async fn active_memberships(&self, user_id: Uuid) -> DomainResult<Vec<ActiveMembership>> {
        self.memberships_in(user_id, &[MembershipStatus::Active])
            .await
    }

    /// The person's memberships with one of `statuses`, with their accounts, by account name.
    pub async fn memberships_in(
        &self,
        user_id: Uuid,
        statuses: &[MembershipStatus],
    ) -> DomainResult<Vec<ActiveMembership>> {
        let mut out: Vec<ActiveMembership> = membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id))
            .filter(
                membership::Column::Status
                    .is_in(statuses.iter().map(|status| StoredStatus::from(*status))),
            )
            .find_also_related(account::Entity)
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|(membership, account)| joined(membership, account))
            .collect();
        sort_by_account_name(&mut out);
        Ok(out)
    }

    pub async fn set_password_hash(
        &self,
        user_id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        set_password(&self.db, user_id, hash, now).await
    }
}

impl Tx {
    /// Turns the person's own MFA on or off in this unit of work.
    pub async fn set_mfa_enabled(
        &self,
        user_id: Uuid,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        update_person(
            self.conn(),
            user_id,
            user::Column::MfaEnabled,
            enabled.into(),
            now,
        )
        .await
    }

    /// The accounts where the person is an ACTIVE member, read inside the unit of work.
    pub async fn active_account_ids(&self, user_id: Uuid) -> DomainResult<Vec<Uuid>> {
        use sea_orm::QuerySelect;
        Ok(membership::Entity::find()
            .select_only()
            .column(membership::Column::AccountId)
            .filter(membership::Column::UserId.eq(user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Active))
            .into_tuple::<Uuid>()
            .all(self.conn())
            .await?)
    }

    /// The person's ACTIVE membership in one account, with the account, read inside the unit of
    /// work.
    pub async fn active_membership(
        &self,
        user_id: Uuid,
        account_id: Uuid,
    ) -> DomainResult<Option<ActiveMembership>> {
        Ok(membership::Entity::find_by_id((account_id, user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Active))
            .find_also_related(account::Entity)
            .one(self.conn())
            .await?
            .and_then(|(membership, account)| joined(membership, account)))
    }

    /// Sets the person's password hash.
    pub async fn set_password(
        &self,
        user_id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        set_password(self.conn(), user_id, hash, now).await
    }

    /// Sets the name the person gave on accepting an invitation.
    pub async fn set_display_name(&self, user_id: Uuid, name: &str) -> DomainResult<()> {
        user::Entity::update_many()
            .col_expr(user::Column::DisplayName, Expr::value(name))
            .col_expr(
                user::Column::Version,
                Expr::col(user::Column::Version).add(1),
            )
            .filter(user::Column::Id.eq(user_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
