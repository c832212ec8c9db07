//! Periodic clean-up of rows whose time is over: `request_id` keys older than 24 hours, access
//! change-log entries older than an hour (a replica further behind reloads), and SSO logins started
//! and assertion ids remembered past their end. Every
//! replica runs it; the deletes are idempotent, so replicas running it at once do no harm.

use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::store::Store;

/// How often housekeeping runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// One pass; returns how many rows it deleted.
pub async fn run_once(store: &Store, clock: &SharedClock) -> anyhow::Result<u64> {
    let now = clock.now();
    let requests = store.delete_expired_requests(now).await?;
    let changes = store
        .prune_access_changes(now - chrono::Duration::hours(1))
        .await?;
    let sso = store.delete_expired_sso(now).await?;
    Ok(requests + changes + sso)
}

/// Runs a pass every `EVERY` (the first after one period, so start-up is not slowed) until
/// `stop` turns true or its sender is gone.
pub fn spawn(
    store: Store,
    clock: SharedClock,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                    continue;
                }
            }
            match run_once(&store, &clock).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "expired rows deleted"),
                Err(error) => tracing::warn!(error = %error, "housekeeping pass failed"),
            }
        }
    })
}
