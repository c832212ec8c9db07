//! Sessions with rotating refresh tokens, the login throttle, email-code challenges, account
//! selections and password resets. Each check-and-change is one transaction on a locked row, so
//! counters hold with any number of replicas.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait, TransactionTrait,
    sea_query::{
        Alias, CaseStatement, CommonTableExpression, Expr, ExprTrait, InsertStatement, OnConflict,
        Query, SubQueryStatement, WithClause,
    },
};
use uuid::Uuid;

use super::entities::membership::StoredStatus;
use super::entities::{
    account, account_selection, invitation, login_throttle, membership, mfa_challenge,
    password_reset, refresh_token, session, user,
};
use super::{Store, Tx};
use crate::auth::secret_token;
use crate::domain::auth::{
    ActiveMembership, Attempt, EmailChallenge, FAILURE_WINDOW, FREE_ATTEMPTS, MAX_LOCK, NewSession,
    PasswordLogin, PasswordReset, PendingSelection, RefreshRefusal, Session, lock_after,
};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::users::{Invitation, MembershipStatus, Person};

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

impl From<session::Model> for Session {
    fn from(row: session::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            account_id: row.account_id,
            amr: row
                .amr
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
            mfa_passed: row.mfa_passed,
            user_agent: row.user_agent,
            ip_address: row.ip_address,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

impl From<mfa_challenge::Model> for EmailChallenge {
    fn from(row: mfa_challenge::Model) -> Self {
        Self {
            id_hash: row.id_hash,
            user_id: row.user_id,
            account_id: row.account_id,
            code_hash: row.code_hash,
            code_expires_at: row.code_expires_at,
            attempts_left: row.attempts_left,
            resends_left: row.resends_left,
            last_sent_at: row.last_sent_at,
            created_at: row.created_at,
            consumed_at: row.consumed_at,
        }
    }
}

impl From<&EmailChallenge> for mfa_challenge::ActiveModel {
    fn from(c: &EmailChallenge) -> Self {
        Self {
            id_hash: Set(c.id_hash.clone()),
            user_id: Set(c.user_id),
            account_id: Set(c.account_id),
            code_hash: Set(c.code_hash.clone()),
            code_expires_at: Set(c.code_expires_at),
            attempts_left: Set(c.attempts_left),
            resends_left: Set(c.resends_left),
            last_sent_at: Set(c.last_sent_at),
            created_at: Set(c.created_at),
            consumed_at: Set(c.consumed_at),
        }
    }
}

impl From<invitation::Model> for Invitation {
    fn from(row: invitation::Model) -> Self {
        Self {
            account_id: row.account_id,
            user_id: row.user_id,
            token_hash: row.token_hash,
            invited_by: row.invited_by,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

impl Store {
    /// The person with this email and their ACTIVE memberships (with their accounts, by account
    /// name), in one query; `None` when no such person can log in anywhere.
    async fn person_for_login(
        &self,
        email_key: &str,
    ) -> DomainResult<Option<(Person, Vec<ActiveMembership>)>> {
        let rows = person_with_memberships(email_key).all(&self.db).await?;
        Ok(person_and_accounts(rows))
    }

    /// The person's ACTIVE memberships with their accounts, by account name.
    pub async fn active_memberships(&self, user_id: Uuid) -> DomainResult<Vec<ActiveMembership>> {
        self.memberships_in(user_id, &[MembershipStatus::Active])
            .await
    }

    /// The person's ACTIVE membership in one account, with the account.
    pub async fn active_membership(
        &self,
        user_id: Uuid,
        account_id: Uuid,
    ) -> DomainResult<Option<ActiveMembership>> {
        Ok(membership::Entity::find_by_id((account_id, user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Active))
            .find_also_related(account::Entity)
            .one(&self.db)
            .await?
            .and_then(|(membership, account)| joined(membership, account)))
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

    pub async fn set_mfa_enabled(
        &self,
        user_id: Uuid,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        user::Entity::update_many()
            .col_expr(user::Column::MfaEnabled, Expr::value(enabled))
            .col_expr(
                user::Column::Version,
                Expr::col(user::Column::Version).add(1),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Counts a login attempt before its password is checked. Returns how long the person must
    /// wait when attempts are paused; otherwise the attempt is counted as a failure until
    /// `clear_login_failures` says it succeeded, so parallel attempts cannot exceed the limit.
    pub async fn reserve_login_attempt(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<Attempt> {
        let attempt = count_attempt(AttemptBy::Person(user_id), now);
        let counted = self
            .db
            .query_one_raw(self.backend().build(&attempt))
            .await?;
        if counted.is_some() {
            return Ok(Attempt::Counted);
        }
        let locked_until = login_throttle::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .and_then(|row| row.locked_until);
        Ok(Attempt::Paused { locked_until })
    }

    /// The first step of a password login: the person with this email and their ACTIVE
    /// memberships (with their accounts, by account name), with the attempt counted against the
    /// person's throttle before any hash is computed. `None` when no such person can log in
    /// anywhere. On PostgreSQL this is one statement (the count is a data-modifying `WITH`
    /// query; the main query reads the wait from the snapshot before it).
    pub async fn start_password_login(
        &self,
        email_key: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<PasswordLogin>> {
        let backend = self.backend();
        if backend != DbBackend::Postgres {
            let Some((person, accounts)) = self.person_for_login(email_key).await? else {
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
                    .query(count_attempt(AttemptBy::EmailKey(email_key), now))
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
                    Attempt::Counted
                } else {
                    Attempt::Paused { locked_until }
                },
            }),
        )
    }

    /// A successful login, reset or password change forgets the failures.
    pub async fn clear_login_failures(&self, user_id: Uuid) -> DomainResult<()> {
        login_throttle::Entity::delete_by_id(user_id)
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Starts a session and returns it with its first refresh token.
    pub async fn create_session(
        &self,
        new: NewSession,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> DomainResult<(Session, String)> {
        let txn = self.db.begin().await?;
        let created = insert_session(&txn, new, now, ttl).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// A login: starts a session with its first refresh token, records the time as the
    /// member's last login and forgets the person's failed attempts, all or nothing. On
    /// PostgreSQL the four writes are one statement (data-modifying WITH queries), so a login
    /// costs one round trip here instead of six.
    pub async fn log_in(
        &self,
        new: NewSession,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> DomainResult<(Session, String)> {
        let (account_id, user_id) = (new.account_id, new.user_id);
        let row = new_session_row(new, now, ttl);
        let refresh = secret_token::generate("rt_");
        let session_insert =
            session::Entity::insert(session::ActiveModel::from(row.clone())).into_query();
        let refresh_insert = refresh_token_insert(row.id, &refresh, now);
        let last_login = membership::Entity::update_many()
            .col_expr(membership::Column::LastLoginAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.eq(user_id))
            .into_query();
        let forget_failures = login_throttle::Entity::delete_by_id(user_id).into_query();
        let backend = self.backend();
        if backend == DbBackend::Postgres {
            let writes: [SubQueryStatement; 4] = [
                session_insert.into(),
                refresh_insert.into(),
                last_login.into(),
                forget_failures.into(),
            ];
            let mut with = WithClause::new();
            for (n, write) in writes.into_iter().enumerate() {
                with.cte(
                    CommonTableExpression::new()
                        .query(write)
                        .table_name(Alias::new(format!("write_{n}")))
                        .to_owned(),
                );
            }
            let statement = with.query(Query::select().expr(Expr::value(1)).to_owned());
            self.db.execute_raw(backend.build(&statement)).await?;
        } else {
            let txn = self.db.begin().await?;
            txn.execute_raw(backend.build(&session_insert)).await?;
            txn.execute_raw(backend.build(&refresh_insert)).await?;
            txn.execute_raw(backend.build(&last_login)).await?;
            txn.execute_raw(backend.build(&forget_failures)).await?;
            txn.commit().await?;
        }
        Ok((row.into(), refresh))
    }

    /// Whether a session is live and its member still ACTIVE, in one query: the check behind
    /// `ValidateToken`, which services make on every request.
    pub async fn session_in_force(
        &self,
        session_id: Uuid,
        account_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let found = session::Entity::find_by_id(session_id)
            .select_only()
            .column(session::Column::Id)
            .join(JoinType::InnerJoin, session::Relation::Membership.def())
            .filter(session::Column::AccountId.eq(account_id))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(membership::Column::Status.eq(StoredStatus::Active))
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    pub async fn find_session(&self, id: Uuid) -> DomainResult<Option<Session>> {
        Ok(session::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Session::from))
    }

    /// Spends a refresh token and issues its successor. A token presented twice revokes the
    /// session (someone else holds a copy).
    pub async fn rotate_refresh_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<Result<(Session, String), RefreshRefusal>> {
        let hash = secret_token::digest_hex(token);
        let txn = self.db.begin().await?;
        let Some(row) = refresh_token::Entity::find_by_id(hash.clone())
            .one(&txn)
            .await?
        else {
            return Ok(Err(RefreshRefusal::Unknown));
        };
        let session = session::Entity::find_by_id(row.session_id)
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("refresh token without session"))
            })?;
        if session.revoked_at.is_some() {
            return Ok(Err(RefreshRefusal::Revoked));
        }
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::TokenHash.eq(hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if spent.rows_affected == 0 {
            revoke(
                &txn,
                Condition::all().add(session::Column::Id.eq(session.id)),
                "refresh_token_reused",
                now,
            )
            .await?;
            txn.commit().await?;
            return Ok(Err(RefreshRefusal::Reused));
        }
        if session.expires_at <= now {
            return Ok(Err(RefreshRefusal::Expired));
        }
        let next = secret_token::generate("rt_");
        insert_refresh_token(&txn, session.id, &next, now).await?;
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Ok((session.into(), next)))
    }

    /// Revokes one session; false when it was not live.
    pub async fn revoke_session(
        &self,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        Ok(revoke(
            &self.db,
            Condition::all().add(session::Column::Id.eq(id)),
            reason,
            now,
        )
        .await?
            > 0)
    }

    /// Revokes the person's live sessions (in one account, or all), except `keep`.
    pub async fn revoke_person_sessions(
        &self,
        user_id: Uuid,
        account_id: Option<Uuid>,
        keep: Option<Uuid>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        revoke_sessions(&self.db, user_id, account_id, keep, reason, now).await
    }

    /// The person's live sessions, newest first, after `(created_at, id)`.
    pub async fn list_live_sessions(
        &self,
        user_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> DomainResult<Vec<(Session, String)>> {
        let mut query = session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now));
        if let Some((created_at, id)) = after {
            query = query.filter(super::pagination::keyset_after(
                session::Column::CreatedAt,
                session::Column::Id,
                created_at,
                id,
                true,
            ));
        }
        let sessions = query
            .order_by_desc(session::Column::CreatedAt)
            .order_by_desc(session::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let name = account::Entity::find_by_id(session.account_id)
                .one(&self.db)
                .await?
                .map(|a| a.name)
                .unwrap_or_default();
            out.push((session.into(), name));
        }
        Ok(out)
    }

    /// Stores a new email-code challenge (its id and code as hashes).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_challenge(
        &self,
        id_hash: &str,
        user_id: Uuid,
        account_id: Option<Uuid>,
        code_hash: &str,
        code_ttl: Duration,
        attempts: i32,
        resends: i32,
        email: (&str, &crate::email::templates::Email),
        now: DateTime<Utc>,
    ) -> DomainResult<EmailChallenge> {
        let row = EmailChallenge {
            id_hash: id_hash.to_owned(),
            user_id,
            account_id,
            code_hash: code_hash.to_owned(),
            code_expires_at: now + code_ttl,
            attempts_left: attempts,
            resends_left: resends,
            last_sent_at: now,
            created_at: now,
            consumed_at: None,
        };
        let txn = self.db.begin().await?;
        mfa_challenge::Entity::insert(mfa_challenge::ActiveModel::from(&row))
            .exec_without_returning(&txn)
            .await?;
        crate::email::outbox::enqueue(&txn, account_id, email.0, email.1, now).await?;
        txn.commit().await?;
        Ok(row)
    }

    pub async fn find_challenge(&self, id_hash: &str) -> DomainResult<Option<EmailChallenge>> {
        Ok(mfa_challenge::Entity::find_by_id(id_hash.to_owned())
            .one(&self.db)
            .await?
            .map(EmailChallenge::from))
    }

    /// Runs `decide` on the locked challenge and stores what it returns, in one transaction.
    pub async fn update_challenge<T>(
        &self,
        id_hash: &str,
        decide: impl FnOnce(
            &EmailChallenge,
        ) -> DomainResult<(
            Option<EmailChallenge>,
            Option<(String, crate::email::templates::Email)>,
            T,
        )>,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<T>> {
        let txn = self.db.begin().await?;
        let Some(row) = mfa_challenge::Entity::find_by_id(id_hash.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        // A refusal that must be stored (a spent attempt) comes back inside `value`; an `Err`
        // from `decide` stores nothing.
        let row = EmailChallenge::from(row);
        let (change, email, value) = decide(&row)?;
        if let Some(change) = change {
            mfa_challenge::Entity::update(mfa_challenge::ActiveModel::from(&change))
                .exec(&txn)
                .await?;
        }
        if let Some((to, email)) = email {
            crate::email::outbox::enqueue(&txn, row.account_id, &to, &email, now).await?;
        }
        txn.commit().await?;
        Ok(Some(value))
    }

    pub async fn create_selection(
        &self,
        token_hash: &str,
        user_id: Uuid,
        amr: &[String],
        mfa_passed: bool,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        account_selection::Entity::insert(account_selection::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            user_id: Set(user_id),
            amr: Set(amr.join(",")),
            mfa_passed: Set(mfa_passed),
            expires_at: Set(expires_at),
            created_at: Set(now),
            consumed_at: Set(None),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Spends a live selection token; `None` when it is unknown, used or expired.
    pub async fn consume_selection(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<PendingSelection>> {
        let txn = self.db.begin().await?;
        let row = account_selection::Entity::find_by_id(token_hash.to_owned())
            .one(&txn)
            .await?;
        let Some(row) = row.filter(|r| r.consumed_at.is_none() && r.expires_at > now) else {
            return Ok(None);
        };
        let spent = account_selection::Entity::update_many()
            .col_expr(account_selection::Column::ConsumedAt, Expr::value(now))
            .filter(account_selection::Column::TokenHash.eq(token_hash))
            .filter(account_selection::Column::ConsumedAt.is_null())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok((spent.rows_affected == 1).then(|| PendingSelection {
            user_id: row.user_id,
            amr: row
                .amr
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
            mfa_passed: row.mfa_passed,
            expires_at: row.expires_at,
            consumed_at: Some(now),
        }))
    }

    /// When the person's last reset link was made, if any.
    pub async fn last_reset_at(&self, user_id: Uuid) -> DomainResult<Option<DateTime<Utc>>> {
        Ok(password_reset::Entity::find()
            .filter(password_reset::Column::UserId.eq(user_id))
            .order_by_desc(password_reset::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(|r| r.created_at))
    }

    pub async fn create_reset(
        &self,
        token_hash: &str,
        user_id: Uuid,
        expires_at: DateTime<Utc>,
        email: (&str, &crate::email::templates::Email),
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let txn = self.db.begin().await?;
        password_reset::Entity::insert(password_reset::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            user_id: Set(user_id),
            expires_at: Set(expires_at),
            created_at: Set(now),
            used_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        crate::email::outbox::enqueue(&txn, None, email.0, email.1, now).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn find_reset(&self, token_hash: &str) -> DomainResult<Option<PasswordReset>> {
        Ok(password_reset::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await?
            .map(|row| PasswordReset {
                token_hash: row.token_hash,
                user_id: row.user_id,
                expires_at: row.expires_at,
                created_at: row.created_at,
                used_at: row.used_at,
            }))
    }

    /// Sets a new password with a reset token: spends the token, revokes every session, forgets
    /// failed logins and queues the notice, in one transaction. False when the token was spent
    /// meanwhile.
    pub async fn complete_reset(
        &self,
        token_hash: &str,
        user_id: Uuid,
        hash: &str,
        notice: (&str, &crate::email::templates::Email),
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let txn = self.db.begin().await?;
        let spent = password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .filter(password_reset::Column::TokenHash.eq(token_hash))
            .filter(password_reset::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if spent.rows_affected == 0 {
            return Ok(false);
        }
        replace_password(&txn, user_id, hash, None, "password_reset", notice, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Changes a password, revokes the person's other sessions and queues the notice. Returns how
    /// many sessions were revoked.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        keep_session: Uuid,
        hash: &str,
        notice: (&str, &crate::email::templates::Email),
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        let txn = self.db.begin().await?;
        let revoked = replace_password(
            &txn,
            user_id,
            hash,
            Some(keep_session),
            "password_changed",
            notice,
            now,
        )
        .await?;
        txn.commit().await?;
        Ok(revoked)
    }

    pub async fn find_invitation_by_token(
        &self,
        token_hash: &str,
    ) -> DomainResult<Option<Invitation>> {
        Ok(invitation::Entity::find()
            .filter(invitation::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
            .map(Invitation::from))
    }

    /// Accepts an invitation: spends the link, activates the membership, sets the password and
    /// name when given. False when the link was spent or replaced meanwhile.
    pub async fn accept_invitation(
        &self,
        invitation: &Invitation,
        password_hash: Option<&str>,
        display_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let txn = self.db.begin().await?;
        let spent = invitation::Entity::delete_many()
            .filter(invitation::Column::AccountId.eq(invitation.account_id))
            .filter(invitation::Column::UserId.eq(invitation.user_id))
            .filter(invitation::Column::TokenHash.eq(invitation.token_hash.as_str()))
            .exec(&txn)
            .await?;
        if spent.rows_affected == 0 {
            return Ok(false);
        }
        let activated = membership::Entity::update_many()
            .col_expr(
                membership::Column::Status,
                Expr::value(StoredStatus::Active),
            )
            .col_expr(membership::Column::AcceptedAt, Expr::value(now))
            .col_expr(
                membership::Column::Version,
                Expr::col(membership::Column::Version).add(1),
            )
            .col_expr(membership::Column::UpdatedAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(invitation.account_id))
            .filter(membership::Column::UserId.eq(invitation.user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Invited))
            .exec(&txn)
            .await?;
        if activated.rows_affected == 0 {
            return Ok(false);
        }
        if let Some(hash) = password_hash {
            set_password(&txn, invitation.user_id, hash, now).await?;
        }
        if let Some(name) = display_name {
            user::Entity::update_many()
                .col_expr(user::Column::DisplayName, Expr::value(name))
                .col_expr(
                    user::Column::Version,
                    Expr::col(user::Column::Version).add(1),
                )
                .filter(user::Column::Id.eq(invitation.user_id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Queues an email outside any other change.
    pub async fn enqueue_email(
        &self,
        account_id: Option<Uuid>,
        to: &str,
        email: &crate::email::templates::Email,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        crate::email::outbox::enqueue(&self.db, account_id, to, email, now).await?;
        Ok(())
    }

    /// Accepts an invitation without its link (a login with the same email at an identity
    /// provider proves the address): the membership becomes ACTIVE and the link dies.
    pub async fn activate_invited(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let txn = self.db.begin().await?;
        let activated = membership::Entity::update_many()
            .col_expr(
                membership::Column::Status,
                Expr::value(StoredStatus::Active),
            )
            .col_expr(membership::Column::AcceptedAt, Expr::value(now))
            .col_expr(
                membership::Column::Version,
                Expr::col(membership::Column::Version).add(1),
            )
            .col_expr(membership::Column::UpdatedAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.eq(user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Invited))
            .exec(&txn)
            .await?;
        invitation::Entity::delete_by_id((account_id, user_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(activated.rows_affected == 1)
    }
}

async fn set_password(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
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

/// A new password: set it, end the person's sessions (but `keep`), forget failed logins and
/// queue the notice, in the caller's transaction. Returns how many sessions ended.
async fn replace_password(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    hash: &str,
    keep: Option<Uuid>,
    reason: &str,
    notice: (&str, &crate::email::templates::Email),
    now: DateTime<Utc>,
) -> DomainResult<u64> {
    set_password(conn, user_id, hash, now).await?;
    let revoked = revoke_sessions(conn, user_id, None, keep, reason, now).await?;
    login_throttle::Entity::delete_by_id(user_id)
        .exec(conn)
        .await?;
    crate::email::outbox::enqueue(conn, None, notice.0, notice.1, now).await?;
    Ok(revoked)
}

/// Whose login attempt is counted.
enum AttemptBy<'a> {
    Person(Uuid),
    /// The person with this email, if there is one.
    EmailKey(&'a str),
}

/// One upsert that counts a login attempt on the person's throttle row, unless the person must
/// wait: then it changes nothing and returns no row. The upsert's row lock makes parallel
/// attempts queue, so they cannot pass the limit together.
fn count_attempt(by: AttemptBy<'_>, now: DateTime<Utc>) -> InsertStatement {
    use login_throttle::Column as C;
    // In DO UPDATE, a column qualified by the table is the row's value before the attempt.
    let before = |column: C| Expr::col((login_throttle::Entity, column));
    // The window is measured from the last counted attempt.
    let window_over = before(C::WindowStartedAt).lt(now - FAILURE_WINDOW);
    let counted = before(C::Failures).add(1);
    let no_lock = Expr::value(Option::<DateTime<Utc>>::None);
    let mut lock = CaseStatement::new().case(window_over.clone(), no_lock.clone());
    let mut failures = FREE_ATTEMPTS;
    while lock_after(failures) < MAX_LOCK {
        lock = lock.case(counted.clone().eq(failures), now + lock_after(failures));
        failures += 1;
    }
    let lock = lock
        .case(counted.clone().gte(failures), now + MAX_LOCK)
        .finally(no_lock);
    let first = [
        Expr::value(1),
        Expr::value(now),
        Expr::value((lock_after(1) > Duration::zero()).then(|| now + lock_after(1))),
    ];
    let mut insert = Query::insert();
    insert.into_table(login_throttle::Entity).columns([
        C::UserId,
        C::Failures,
        C::WindowStartedAt,
        C::LockedUntil,
    ]);
    match by {
        AttemptBy::Person(user_id) => {
            insert.values_panic(std::iter::once(Expr::value(user_id)).chain(first));
        }
        AttemptBy::EmailKey(email_key) => {
            let mut person = Query::select();
            person
                .column(user::Column::Id)
                .exprs(first)
                .from(user::Entity)
                .and_where(Expr::col(user::Column::EmailKey).eq(email_key));
            // Infallible: the select gives as many columns as the insert names.
            let _ = insert.select_from(person);
        }
    }
    insert
        .on_conflict(
            OnConflict::column(C::UserId)
                .values([
                    (
                        C::Failures,
                        Expr::case(window_over, 1).finally(counted).into(),
                    ),
                    (C::WindowStartedAt, Expr::value(now)),
                    (C::LockedUntil, lock.into()),
                ])
                .action_and_where(
                    before(C::LockedUntil)
                        .is_null()
                        .or(before(C::LockedUntil).lte(now)),
                )
                .to_owned(),
        )
        .returning_col(C::UserId)
        .to_owned()
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

fn refresh_token_insert(session_id: Uuid, token: &str, now: DateTime<Utc>) -> InsertStatement {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_hash: Set(secret_token::digest_hex(token)),
        session_id: Set(session_id),
        created_at: Set(now),
        used_at: Set(None),
    })
    .into_query()
}

async fn insert_refresh_token(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
    token: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    conn.execute_raw(
        conn.get_database_backend()
            .build(&refresh_token_insert(session_id, token, now)),
    )
    .await?;
    Ok(())
}

fn new_session_row(new: NewSession, now: DateTime<Utc>, ttl: Duration) -> session::Model {
    session::Model {
        id: Uuid::now_v7(),
        user_id: new.user_id,
        account_id: new.account_id,
        amr: new.amr.join(","),
        mfa_passed: new.mfa_passed,
        user_agent: new.user_agent,
        ip_address: new.ip_address,
        created_at: now,
        last_used_at: now,
        expires_at: now + ttl,
        revoked_at: None,
        revoke_reason: None,
    }
}

/// Inserts a session and its first refresh token in the caller's transaction.
pub(crate) async fn insert_session(
    conn: &impl ConnectionTrait,
    new: NewSession,
    now: DateTime<Utc>,
    ttl: Duration,
) -> DomainResult<(Session, String)> {
    let row = new_session_row(new, now, ttl);
    session::Entity::insert(session::ActiveModel::from(row.clone()))
        .exec_without_returning(conn)
        .await?;
    let refresh = secret_token::generate("rt_");
    insert_refresh_token(conn, row.id, &refresh, now).await?;
    Ok((row.into(), refresh))
}

async fn revoke(
    conn: &impl ConnectionTrait,
    which: Condition,
    reason: &str,
    now: DateTime<Utc>,
) -> DomainResult<u64> {
    Ok(session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .col_expr(session::Column::RevokeReason, Expr::value(reason))
        .filter(which)
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected)
}

impl Tx {
    /// Ends the member's live sessions in the account.
    pub async fn revoke_member_sessions(
        &self,
        user_id: Uuid,
        account_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        revoke_sessions(self.conn(), user_id, Some(account_id), None, reason, now).await
    }
}

/// Revokes a person's live sessions (in one account, or all), except `keep`.
async fn revoke_sessions(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    account_id: Option<Uuid>,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> DomainResult<u64> {
    let mut which = Condition::all().add(session::Column::UserId.eq(user_id));
    if let Some(account_id) = account_id {
        which = which.add(session::Column::AccountId.eq(account_id));
    }
    if let Some(keep) = keep {
        which = which.add(session::Column::Id.ne(keep));
    }
    revoke(conn, which, reason, now).await
}
