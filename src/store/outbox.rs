//! The outbox table: queued emails and the state of their delivery. These are the queries only;
//! when to claim, how long a claim lasts and what to do with a failure is `email::outbox`.
//!
//! Every outcome is recorded conditionally on the claim it belongs to (`status = sending` and the
//! claimed attempt number), so a worker whose claim was taken over cannot overwrite the newer
//! attempt. Recording returns the database's own error: the worker logs it and leaves the row to
//! its lease.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{LockBehavior, LockType},
};
use uuid::Uuid;

use super::entities::outbox_email;
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult};

/// The values of the `status` column.
pub mod status {
    /// Waiting for its first or next attempt (`next_attempt_at`).
    pub const PENDING: &str = "pending";
    /// Claimed by a worker until `next_attempt_at` (the lease); due again after it.
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    /// Rejected, or retried until the horizon; `last_error` says why.
    pub const FAILED: &str = "failed";
}

/// A row claimed by `claim_due`: moved to `sending` for attempt `attempt`.
#[derive(Debug)]
pub struct ClaimedEmail {
    pub id: Uuid,
    /// The email's kind as stored (`invitation`, `mfa_code`, ...).
    pub kind: String,
    pub recipient: String,
    /// The stored data, or why it cannot be read.
    pub email: Result<Email, serde_json::Error>,
    pub created_at: DateTime<Utc>,
    /// The attempt this claim is: one more than the attempts made before it.
    pub attempt: i32,
    /// The row was already `sending`: its previous attempt was claimed and never recorded.
    pub interrupted: bool,
}

/// Queues `email` to `to`, due at `now`, in the caller's transaction; returns its id.
pub async fn insert(
    conn: &impl ConnectionTrait,
    account_id: Option<Uuid>,
    to: &str,
    email: &Email,
    now: DateTime<Utc>,
) -> DomainResult<Uuid> {
    let id = Uuid::now_v7();
    outbox_email::Entity::insert(outbox_email::ActiveModel {
        id: Set(id),
        account_id: Set(account_id),
        kind: Set(email.kind().to_owned()),
        recipient: Set(to.to_owned()),
        payload: Set(serde_json::to_string(email).map_err(DomainError::internal)?),
        status: Set(status::PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(id)
}

/// Claims up to `limit` rows due at `now` (`pending` or `sending`, `next_attempt_at` reached),
/// earliest first, in one transaction: each becomes `sending` until `lease_until` with its
/// attempt counter bumped. Rows locked by another claim are skipped (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL; SQLite has one writer), and each update is conditional on the status and counter
/// just read, so a row is never claimed twice.
pub async fn claim_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> DomainResult<Vec<ClaimedEmail>> {
    let txn = db.begin().await?;
    let due = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.is_in([status::PENDING, status::SENDING]))
        .filter(outbox_email::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox_email::Column::NextAttemptAt)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    let mut claims = Vec::with_capacity(due.len());
    for row in due {
        let attempt = row.attempts + 1;
        let taken = outbox_email::Entity::update_many()
            .set(outbox_email::ActiveModel {
                status: Set(status::SENDING.to_owned()),
                attempts: Set(attempt),
                next_attempt_at: Set(lease_until),
                ..Default::default()
            })
            .filter(outbox_email::Column::Id.eq(row.id))
            .filter(outbox_email::Column::Status.eq(row.status.clone()))
            .filter(outbox_email::Column::Attempts.eq(row.attempts))
            .exec(&txn)
            .await?;
        if taken.rows_affected == 1 {
            claims.push(ClaimedEmail {
                id: row.id,
                email: serde_json::from_str(&row.payload),
                interrupted: row.status == status::SENDING,
                kind: row.kind,
                recipient: row.recipient,
                created_at: row.created_at,
                attempt,
            });
        }
    }
    txn.commit().await?;
    Ok(claims)
}

/// Records attempt `attempt` of `id` as accepted by the transport, keeping `kept` as the
/// payload (`{}` when there is nothing to keep). False when the row is no longer that claim.
pub async fn mark_sent(
    conn: &impl ConnectionTrait,
    id: Uuid,
    attempt: i32,
    message_id: &str,
    kept: Option<&Email>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    mark(
        conn,
        id,
        attempt,
        outbox_email::ActiveModel {
            status: Set(status::SENT.to_owned()),
            sent_at: Set(Some(now)),
            provider_message_id: Set(Some(message_id.to_owned())),
            payload: Set(payload(kept)),
            last_error: Set(None),
            ..Default::default()
        },
    )
    .await
}

/// Records attempt `attempt` of `id` as failed for `reason`, due again at `next_attempt_at`.
/// False when the row is no longer that claim.
pub async fn mark_retry(
    conn: &impl ConnectionTrait,
    id: Uuid,
    attempt: i32,
    next_attempt_at: DateTime<Utc>,
    reason: &str,
) -> Result<bool, DbErr> {
    mark(
        conn,
        id,
        attempt,
        outbox_email::ActiveModel {
            status: Set(status::PENDING.to_owned()),
            next_attempt_at: Set(next_attempt_at),
            last_error: Set(Some(reason.to_owned())),
            ..Default::default()
        },
    )
    .await
}

/// Records attempt `attempt` of `id` as the last, failed for `reason`, keeping `kept` as the
/// payload (`{}` when there is nothing to keep). False when the row is no longer that claim.
pub async fn mark_failed(
    conn: &impl ConnectionTrait,
    id: Uuid,
    attempt: i32,
    reason: &str,
    kept: Option<&Email>,
) -> Result<bool, DbErr> {
    mark(
        conn,
        id,
        attempt,
        outbox_email::ActiveModel {
            status: Set(status::FAILED.to_owned()),
            payload: Set(payload(kept)),
            last_error: Set(Some(reason.to_owned())),
            ..Default::default()
        },
    )
    .await
}

/// Applies `update` if `id` is still claimed for `attempt`.
async fn mark(
    conn: &impl ConnectionTrait,
    id: Uuid,
    attempt: i32,
    update: outbox_email::ActiveModel,
) -> Result<bool, DbErr> {
    let result = outbox_email::Entity::update_many()
        .set(update)
        .filter(outbox_email::Column::Id.eq(id))
        .filter(outbox_email::Column::Status.eq(status::SENDING))
        .filter(outbox_email::Column::Attempts.eq(attempt))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The stored form of the data kept after the last attempt.
fn payload(kept: Option<&Email>) -> String {
    kept.and_then(|email| serde_json::to_string(email).ok())
        .unwrap_or_else(|| "{}".to_owned())
}

/// When the oldest row that is due at `now` (and not delivered) was queued.
pub async fn oldest_due(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> DomainResult<Option<DateTime<Utc>>> {
    Ok(outbox_email::Entity::find()
        .select_only()
        .column(outbox_email::Column::CreatedAt)
        .filter(outbox_email::Column::Status.is_in([status::PENDING, status::SENDING]))
        .filter(outbox_email::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox_email::Column::CreatedAt)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?)
}

impl super::Tx {
    /// Queues `email` to `to`, due at once, in this unit of work; returns its id.
    pub async fn queue_email(
        &self,
        account_id: Option<Uuid>,
        to: &str,
        email: &Email,
        now: DateTime<Utc>,
    ) -> DomainResult<Uuid> {
        insert(self.conn(), account_id, to, email, now).await
    }
}
