//! Sessions and their refresh tokens. A refresh token is stored under the hash the use case
//! gives; a spent one is kept to recognise its reuse. A login is one statement on PostgreSQL.
//! The check behind every access token is answered from the replica's memory (`app::access`),
//! which hears of ended sessions through the access feed.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait,
    TransactionTrait,
    sea_query::{
        Alias, Expr, ExprTrait, InsertStatement, LockType, Order, Query, SubQueryStatement,
    },
};
use uuid::Uuid;

use super::entities::{account, login_throttle, membership, refresh_token, session};
use super::select::{all, columns_of, model};
use super::{Store, Tx};
use crate::domain::auth::{RefreshToken, Session};
use crate::domain::error::DomainResult;

impl From<session::Model> for Session {
    fn from(row: session::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            account_id: row.account_id,
            amr: super::amr_of(&row.amr),
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

impl From<&Session> for session::ActiveModel {
    fn from(s: &Session) -> Self {
        Self {
            id: Set(s.id),
            user_id: Set(s.user_id),
            account_id: Set(s.account_id),
            amr: Set(s.amr.join(",")),
            mfa_passed: Set(s.mfa_passed),
            user_agent: Set(s.user_agent.clone()),
            ip_address: Set(s.ip_address.clone()),
            created_at: Set(s.created_at),
            last_used_at: Set(s.last_used_at),
            expires_at: Set(s.expires_at),
            revoked_at: Set(s.revoked_at),
            revoke_reason: Set(None),
        }
    }
}

fn refresh_token_insert(session_id: Uuid, token_hash: &str, now: DateTime<Utc>) -> InsertStatement {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_hash: Set(token_hash.to_owned()),
        session_id: Set(session_id),
        created_at: Set(now),
        used_at: Set(None),
    })
    .into_query()
}

/// Revokes the live sessions `which` selects; returns which, by account. On PostgreSQL the
/// replicas are notified (at commit, in a unit of work): a session's end reaches their memory.
async fn revoke(
    conn: &impl ConnectionTrait,
    which: Condition,
    reason: &str,
    now: DateTime<Utc>,
) -> DomainResult<Vec<(Uuid, Uuid)>> {
    let backend = conn.get_database_backend();
    let update = Query::update()
        .table(session::Entity)
        .value(session::Column::RevokedAt, Expr::value(now))
        .value(session::Column::RevokeReason, Expr::value(reason))
        .cond_where(which.add(session::Column::RevokedAt.is_null()))
        .returning(Query::returning().columns([session::Column::AccountId, session::Column::Id]))
        .to_owned();
    let rows = conn.query_all_raw(backend.build(&update)).await?;
    let mut ended = Vec::with_capacity(rows.len());
    for row in rows {
        ended.push((
            row.try_get::<Uuid>("", "account_id")?,
            row.try_get::<Uuid>("", "id")?,
        ));
    }
    super::access_changes::notify_sessions_ended(conn, &ended).await?;
    Ok(ended)
}

/// Revokes a person's live sessions (in one account, or all), except `keep`.
async fn revoke_sessions(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    account_id: Option<Uuid>,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> DomainResult<Vec<(Uuid, Uuid)>> {
    let mut which = Condition::all().add(session::Column::UserId.eq(user_id));
    if let Some(account_id) = account_id {
        which = which.add(session::Column::AccountId.eq(account_id));
    }
    if let Some(keep) = keep {
        which = which.add(session::Column::Id.ne(keep));
    }
    revoke(conn, which, reason, now).await
}

impl Store {
    /// A login: stores `session` with its first refresh token (under `refresh_hash`), records
    /// the session's start as the member's last login and forgets the person's failed
    /// attempts, all or nothing. On PostgreSQL the four writes are one statement
    /// (data-modifying WITH queries), so a login costs one round trip here instead of six.
    pub async fn log_in(
        &self,
        session: &Session,
        refresh_hash: &str,
        events: &[crate::domain::audit::Event],
    ) -> DomainResult<()> {
        let now = session.created_at;
        let session_insert =
            session::Entity::insert(session::ActiveModel::from(session)).into_query();
        let refresh_insert = refresh_token_insert(session.id, refresh_hash, now);
        let last_login = membership::Entity::update_many()
            .col_expr(membership::Column::LastLoginAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(session.account_id))
            .filter(membership::Column::UserId.eq(session.user_id))
            .into_query();
        let forget_failures = login_throttle::Entity::delete_by_id(session.user_id).into_query();
        let audit = super::audit::append_writes(events);
        let backend = self.backend();
        if backend == DbBackend::Postgres {
            let mut writes: Vec<SubQueryStatement> = vec![
                session_insert.into(),
                refresh_insert.into(),
                last_login.into(),
                forget_failures.into(),
            ];
            writes.extend(audit.into_iter().map(SubQueryStatement::from));
            self.db
                .execute_raw(super::combined(backend, writes))
                .await?;
        } else {
            let txn = self.db.begin().await?;
            txn.execute_raw(backend.build(&session_insert)).await?;
            txn.execute_raw(backend.build(&refresh_insert)).await?;
            txn.execute_raw(backend.build(&last_login)).await?;
            txn.execute_raw(backend.build(&forget_failures)).await?;
            for write in &audit {
                txn.execute_raw(backend.build(write)).await?;
            }
            txn.commit().await?;
        }
        if !events.is_empty() {
            self.wake_chainer();
        }
        Ok(())
    }

    /// Stores a session that has no refresh token (it cannot be renewed), in one statement.
    pub async fn create_session(&self, session: &Session) -> DomainResult<()> {
        session::Entity::insert(session::ActiveModel::from(session))
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    pub async fn find_session(&self, id: Uuid) -> DomainResult<Option<Session>> {
        Ok(session::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Session::from))
    }

    /// Revokes one session; false when it was not live.
    pub async fn revoke_session(
        &self,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let which = Condition::all().add(session::Column::Id.eq(id));
        let ended = revoke(&self.db, which, reason, now).await?;
        self.tell_sessions_ended(&ended);
        Ok(!ended.is_empty())
    }

    /// The person's live sessions, newest first, after `(created_at, id)`, each with its
    /// account's name, in one statement.
    pub async fn list_live_sessions(
        &self,
        user_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> DomainResult<Vec<(Session, String)>> {
        let mut query = Query::select();
        columns_of(&mut query, session::Entity, "s_");
        query
            .expr_as(
                Expr::col((account::Entity, account::Column::Name)),
                Alias::new("account_name"),
            )
            .from(session::Entity)
            .left_join(
                account::Entity,
                Expr::col((account::Entity, account::Column::Id))
                    .equals((session::Entity, session::Column::AccountId)),
            )
            .and_where(Expr::col((session::Entity, session::Column::UserId)).eq(user_id))
            .and_where(Expr::col((session::Entity, session::Column::RevokedAt)).is_null())
            .and_where(Expr::col((session::Entity, session::Column::ExpiresAt)).gt(now));
        if let Some((created_at, id)) = after {
            let columns = Expr::tuple([
                Expr::col((session::Entity, session::Column::CreatedAt)),
                Expr::col((session::Entity, session::Column::Id)),
            ]);
            query.and_where(columns.lt(Expr::tuple([Expr::value(created_at), Expr::value(id)])));
        }
        query
            .order_by((session::Entity, session::Column::CreatedAt), Order::Desc)
            .order_by((session::Entity, session::Column::Id), Order::Desc)
            .limit(limit);
        all(&self.db, &query)
            .await?
            .iter()
            .map(|row| {
                let session: Session = model::<session::Model>(row, "s_")?.into();
                let name: Option<String> = row.try_get("", "account_name")?;
                Ok((session, name.unwrap_or_default()))
            })
            .collect()
    }
}

impl Tx {
    /// The refresh token with this hash and its session, both locked until the unit of work
    /// ends (one statement): a token presented twice at once is spent by the first only, and
    /// the second sees it spent.
    pub async fn lock_refresh_token(
        &self,
        token_hash: &str,
    ) -> DomainResult<Option<(RefreshToken, Session)>> {
        let mut query = Query::select();
        columns_of(&mut query, refresh_token::Entity, "r_");
        columns_of(&mut query, session::Entity, "s_");
        query
            .from(refresh_token::Entity)
            .inner_join(
                session::Entity,
                Expr::col((session::Entity, session::Column::Id))
                    .equals((refresh_token::Entity, refresh_token::Column::SessionId)),
            )
            .and_where(
                Expr::col((refresh_token::Entity, refresh_token::Column::TokenHash)).eq(token_hash),
            )
            .lock(LockType::Update);
        let rows = all(self.conn(), &query).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let token: refresh_token::Model = model(row, "r_")?;
        let session: session::Model = model(row, "s_")?;
        Ok(Some((
            RefreshToken {
                session_id: token.session_id,
                created_at: token.created_at,
                used_at: token.used_at,
            },
            session.into(),
        )))
    }

    /// Spends a refresh token; false when it was spent already.
    pub async fn spend_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(self.conn())
            .await?;
        Ok(spent.rows_affected == 1)
    }

    /// Adds a refresh token (its hash) to a session.
    pub async fn add_refresh_token(
        &self,
        session_id: Uuid,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let insert = refresh_token_insert(session_id, token_hash, now);
        self.conn()
            .execute_raw(self.conn().get_database_backend().build(&insert))
            .await?;
        Ok(())
    }

    /// Records that a session was used at `now`.
    pub async fn touch_session(&self, id: Uuid, now: DateTime<Utc>) -> DomainResult<()> {
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Revokes one session; false when it was not live.
    pub async fn revoke_session(
        &self,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let which = Condition::all().add(session::Column::Id.eq(id));
        let ended = revoke(self.conn(), which, reason, now).await?;
        self.sessions_ended(&ended);
        Ok(!ended.is_empty())
    }

    /// Ends the member's live sessions in the account.
    pub async fn revoke_member_sessions(
        &self,
        user_id: Uuid,
        account_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        let ended =
            revoke_sessions(self.conn(), user_id, Some(account_id), None, reason, now).await?;
        self.sessions_ended(&ended);
        Ok(ended.len() as u64)
    }

    /// Ends the person's live sessions in every account, except `keep`; returns how many.
    pub async fn revoke_person_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        let ended = revoke_sessions(self.conn(), user_id, None, keep, reason, now).await?;
        self.sessions_ended(&ended);
        Ok(ended.len() as u64)
    }
}
