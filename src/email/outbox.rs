//! The outbox: `enqueue` inside the caller's transaction; `deliver_due` sends what is due, claiming
//! rows with `FOR UPDATE SKIP LOCKED` so replicas never send the same email twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{LockBehavior, LockType},
};
use uuid::Uuid;

use super::templates::Email;
use super::{Mailer, SendError};
use crate::clock::SharedClock;
use crate::domain::error::{DomainError, DomainResult};
use crate::store::Store;
use crate::store::entities::outbox_email;

pub mod status {
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
}

/// Give up retrying after this many attempts.
const MAX_ATTEMPTS: i32 = 12;

/// Queues `email` to `to` in the caller's transaction.
pub async fn enqueue(
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

/// Sends up to `batch` due emails; returns how many were sent.
pub async fn deliver_due(
    store: &Store,
    mailer: &dyn Mailer,
    now: DateTime<Utc>,
    batch: u64,
) -> DomainResult<usize> {
    let txn = store.connection().begin().await?;
    let due = outbox_email::Entity::find()
        .filter(outbox_email::Column::Status.eq(status::PENDING))
        .filter(outbox_email::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox_email::Column::NextAttemptAt)
        .limit(batch)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    let mut sent = 0;
    for row in due {
        let email: Email = serde_json::from_str(&row.payload).map_err(DomainError::internal)?;
        let attempts = row.attempts + 1;
        let mut update = outbox_email::ActiveModel {
            id: Set(row.id),
            attempts: Set(attempts),
            ..Default::default()
        };
        match mailer.send(&email.render(&row.recipient)).await {
            Ok(message_id) => {
                sent += 1;
                update.status = Set(status::SENT.to_owned());
                update.sent_at = Set(Some(now));
                update.provider_message_id = Set(Some(message_id));
                update.payload =
                    Set(serde_json::to_string(&email.scrubbed()).map_err(DomainError::internal)?);
                update.last_error = Set(None);
            }
            Err(SendError::Retryable(error)) if attempts < MAX_ATTEMPTS => {
                let backoff = Duration::from_secs(30 * 2u64.pow(attempts.min(10) as u32));
                update.next_attempt_at =
                    Set(now + chrono::Duration::from_std(backoff).map_err(DomainError::internal)?);
                update.last_error = Set(Some(error));
            }
            Err(error) => {
                update.status = Set(status::FAILED.to_owned());
                update.last_error = Set(Some(error.to_string()));
            }
        }
        outbox_email::Entity::update(update).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(sent)
}

/// Delivers due emails every `interval` until the process ends.
pub fn spawn_worker(
    store: Store,
    mailer: Arc<dyn Mailer>,
    clock: SharedClock,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match deliver_due(&store, mailer.as_ref(), clock.now(), 20).await {
                // More may be waiting: go again at once.
                Ok(20) => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(error = ?error, "outbox delivery failed; retrying"),
            }
            tokio::time::sleep(interval).await;
        }
    })
}
