//! `request_id` of creates: the key is recorded in the create's own transaction, so a retry finds
//! either nothing (the first attempt left no trace) or the key with the id of what was created.
//! Concurrent retries race on the key's primary key and the loser replays the winner's result.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use super::entities::idempotency_key;
use super::unique_violation;
use crate::domain::error::{DomainError, DomainResult, reason};

/// A create's idempotency key: who asked for what, under which `request_id`.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The operation and the caller, e.g. `CreateAccount/service:ops`.
    pub scope: String,
    pub request_id: String,
    /// A digest of the request's content: the same key with other content is refused.
    pub fingerprint: String,
}

/// The id of the resource created under `key`, if a create with it committed. The same key with
/// a different request is `FAILED_PRECONDITION REQUEST_ID_REUSED`.
pub async fn recorded(
    conn: &impl ConnectionTrait,
    key: &Idempotency,
) -> DomainResult<Option<String>> {
    let Some(row) =
        idempotency_key::Entity::find_by_id((key.scope.clone(), key.request_id.clone()))
            .one(conn)
            .await?
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

/// Records `key` for `resource_id`, inside the create's transaction.
pub async fn record(
    conn: &impl ConnectionTrait,
    key: &Idempotency,
    resource_id: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
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

/// True when a create failed because a concurrent request with the same key committed first:
/// the caller answers with that request's result instead.
pub fn lost_race(err: &DomainError) -> bool {
    matches!(err, DomainError::Internal(source)
        if source.downcast_ref::<sea_orm::DbErr>().and_then(unique_violation)
            == Some("idempotency_keys_pkey"))
}
