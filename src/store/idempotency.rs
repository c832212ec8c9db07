//! `request_id` on creates: the first request's result is recorded with a fingerprint of the
//! request; a retry within 24 hours returns it, the same id with other content is refused. After
//! 24 hours a key is forgotten: the same id is a new request, and housekeeping deletes the row.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entities::idempotency_key;
use super::{Store, Tx, unique_violation};
use crate::domain::error::{DomainError, DomainResult, reason};

/// Who asked for what, under which `request_id`.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The operation and the caller, e.g. `CreateUser/<account>/user:<id>`.
    pub scope: String,
    pub request_id: String,
    /// SHA-256 of the request's content.
    pub fingerprint: String,
}

/// How long a `request_id` is remembered.
pub const KEY_TTL: Duration = Duration::hours(24);

/// Keys recorded `KEY_TTL` or longer before `now`.
fn expired(now: DateTime<Utc>) -> sea_orm::sea_query::Expr {
    idempotency_key::Column::CreatedAt.lte(now - KEY_TTL)
}

impl Store {
    /// The id of what the first request with this key created within the last 24 hours, if
    /// any; the same key with other content is `REQUEST_ID_REUSED`.
    pub async fn replay(
        &self,
        key: &Idempotency,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<String>> {
        replay(self.connection(), key, now).await
    }

    /// Deletes the keys older than 24 hours; returns how many.
    pub async fn delete_expired_requests(&self, now: DateTime<Utc>) -> DomainResult<u64> {
        delete_expired(self.connection(), now).await
    }
}

impl Tx {
    /// Records the key in the creating unit of work (see `record`).
    pub async fn record_request(
        &self,
        key: &Idempotency,
        resource_id: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        record(self.conn(), key, resource_id, now).await
    }
}

/// The id of what the first request with this key created within the last 24 hours, if any.
async fn replay(
    conn: &impl ConnectionTrait,
    key: &Idempotency,
    now: DateTime<Utc>,
) -> DomainResult<Option<String>> {
    let Some(row) =
        idempotency_key::Entity::find_by_id((key.scope.clone(), key.request_id.clone()))
            .one(conn)
            .await?
            .filter(|row| row.created_at > now - KEY_TTL)
    else {
        return Ok(None);
    };
    if row.fingerprint != key.fingerprint {
        return Err(DomainError::FailedPrecondition {
            reason: reason::REQUEST_ID_REUSED,
            message: "this request_id was already used for a different request".to_owned(),
        });
    }
    Ok(Some(row.resource_id))
}

/// Records the key in the creating transaction, in place of an expired row with the same key.
/// Two concurrent requests with one key collide on the key's primary key: the loser's
/// transaction fails with `is_conflict`, and it then replays.
async fn record(
    conn: &impl ConnectionTrait,
    key: &Idempotency,
    resource_id: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::Scope.eq(key.scope.as_str()))
        .filter(idempotency_key::Column::RequestId.eq(key.request_id.as_str()))
        .filter(expired(now))
        .exec(conn)
        .await?;
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        scope: Set(key.scope.clone()),
        request_id: Set(key.request_id.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        resource_id: Set(resource_id.to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Deletes the keys older than 24 hours; returns how many.
async fn delete_expired(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> DomainResult<u64> {
    Ok(idempotency_key::Entity::delete_many()
        .filter(expired(now))
        .exec(conn)
        .await?
        .rows_affected)
}

/// True when `err` is the collision of a concurrent request with the same key.
pub fn is_conflict(err: &DomainError) -> bool {
    matches!(err, DomainError::Internal(source)
        if source.downcast_ref::<sea_orm::DbErr>().and_then(unique_violation) == Some("idempotency_keys_pkey"))
}
