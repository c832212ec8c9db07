//! The outbox: `enqueue` inside the caller's transaction; the worker delivers due rows. The
//! queries are `store::outbox`; the lease, the batch, the retry policy, metrics and logs are here.
//!
//! Delivery of one row is at-least-once, with a lease:
//!
//! 1. **Claim** (one short transaction): due rows are selected with `FOR UPDATE SKIP LOCKED`
//!    (PostgreSQL; SQLite has one writer) and each is moved to `sending`, its `attempts` counter
//!    bumped and `next_attempt_at` set to the end of a lease (`LEASE`). The update is conditional
//!    on the status and counter just read, so a claim can never be taken twice.
//! 2. **Send**, outside any transaction (no row lock or SQLite writer held across the SES call).
//! 3. **Mark** the result, conditional on `status = sending` and the claimed attempt number: a
//!    worker whose lease was taken over cannot overwrite the newer attempt.
//!
//! A row still `sending` after its lease ended belongs to a worker that died between send and
//! mark; it is due again and is sent again (attempt `n + 1`, logged as an interrupted attempt).
//! Two live replicas never send one row twice: the lease outlasts a whole batch of SES calls
//! (each bounded by `ses::SEND_TIMEOUT`). See docs/decisions.md, "Email".

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicI64, Ordering},
};
use std::time::Duration;

use chrono::{DateTime, Utc};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, ObservableGauge},
};
use rand::Rng;
use sea_orm::ConnectionTrait;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::templates::{self, Email};
use super::{Mailer, SendError};
use crate::clock::{Clock, SharedClock};
use crate::domain::error::DomainResult;
use crate::store::Store;
use crate::store::outbox::{self as store, ClaimedEmail};

pub use crate::store::outbox::status;

/// How long a claim lasts. Longer than a batch of sends can take (`BATCH` x the SES call
/// timeout), so only a dead worker's claims expire.
pub const LEASE: chrono::Duration = chrono::Duration::minutes(10);
/// Rows claimed per pass.
pub const BATCH: u64 = 10;
/// The ceiling of the first retry's delay; it doubles per attempt up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// No retry waits longer than this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A retry never follows sooner than this (full jitter may draw zero).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// What the worker is allowed to do with failures.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retryable failures are retried until `created_at` plus this.
    pub retry_horizon: Duration,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// The delay before retry number `attempt + 1`: full jitter, uniform in `[0, ceiling]` where the
/// ceiling is `FIRST_BACKOFF * 2^(attempt-1)` capped at `MAX_BACKOFF`, never under `MIN_BACKOFF`.
pub fn backoff(attempt: i32, rng: &mut impl Rng) -> Duration {
    let ceiling = backoff_ceiling(attempt);
    let drawn = rng.gen_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(drawn).max(MIN_BACKOFF)
}

/// The largest delay `backoff` may draw after `attempt` attempts.
pub fn backoff_ceiling(attempt: i32) -> Duration {
    let doublings = attempt.saturating_sub(1).clamp(0, 20) as u32;
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF)
        .max(MIN_BACKOFF)
}

/// OpenTelemetry instruments, from the global meter provider (`telemetry::init` installs it
/// before anything is queued; without OTLP it is a no-op).
struct Metrics {
    queued: Counter<u64>,
    sent: Counter<u64>,
    retried: Counter<u64>,
    failed: Counter<u64>,
    /// Seconds since the oldest due row was queued (0: nothing due), as the workers last saw it.
    oldest_due_age: Arc<AtomicI64>,
    _oldest_due_gauge: ObservableGauge<i64>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("identity");
        let oldest_due_age = Arc::new(AtomicI64::new(0));
        let observed = oldest_due_age.clone();
        Metrics {
            queued: meter
                .u64_counter("identity.email.queued")
                .with_description("Emails queued in the outbox")
                .build(),
            sent: meter
                .u64_counter("identity.email.sent")
                .with_description("Emails accepted by the transport")
                .build(),
            retried: meter
                .u64_counter("identity.email.retried")
                .with_description("Failed attempts scheduled for a retry")
                .build(),
            failed: meter
                .u64_counter("identity.email.failed")
                .with_description("Emails given up on (rejected, or retried until the horizon)")
                .build(),
            oldest_due_age,
            _oldest_due_gauge: meter
                .i64_observable_gauge("identity.email.oldest_due_age")
                .with_unit("s")
                .with_description("Age of the oldest email that is due and not yet delivered")
                .with_callback(move |gauge| gauge.observe(observed.load(Ordering::Relaxed), &[]))
                .build(),
        }
    })
}

/// Queues `email` to `to` in the caller's transaction.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    account_id: Option<Uuid>,
    to: &str,
    email: &Email,
    now: DateTime<Utc>,
) -> DomainResult<Uuid> {
    let id = store::insert(conn, account_id, to, email, now).await?;
    queued(id, email);
    Ok(id)
}

/// Counts and logs an email the caller queued (`store::Tx::queue_email`). Counted when written;
/// a caller's rollback afterwards is rare and leaves the count high.
pub fn queued(id: Uuid, email: &Email) {
    metrics()
        .queued
        .add(1, &[KeyValue::new("kind", email.kind())]);
    tracing::info!(email_id = %id, kind = email.kind(), "email queued");
}

/// The rendered email, or why it can never be sent. Error texts never quote the payload.
fn prepare(claim: &ClaimedEmail) -> Result<(&Email, super::RenderedEmail), SendError> {
    let email = claim.email.as_ref().map_err(|e| {
        SendError::Permanent(format!(
            "unreadable payload ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let rendered = templates::render(email, &claim.recipient)
        .map_err(|e| SendError::Permanent(e.to_string()))?;
    Ok((email, rendered))
}

/// Sends one claimed row and records the outcome.
async fn deliver_one(
    store: &Store,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    policy: Policy,
    claim: ClaimedEmail,
    report: &mut Delivery,
) {
    let (id, attempt) = (claim.id, claim.attempt);
    let kind = claim.kind.as_str();
    if claim.interrupted {
        // Its worker died (or lost the database) between send and mark: the email may already
        // have been delivered once.
        tracing::warn!(
            email_id = %id,
            kind,
            attempt,
            "the previous attempt ended without a recorded result; sending again"
        );
    }
    let prepared = prepare(&claim);
    let (email, result) = match prepared {
        Ok((email, rendered)) => {
            let result = mailer.send(&rendered).await;
            (Some(email), result)
        }
        Err(error) => (None, Err(error)),
    };
    let now = clock.now();
    enum Outcome {
        Sent(String),
        Retry(DateTime<Utc>, String),
        Failed(String),
    }
    let outcome = match result {
        Ok(message_id) => Outcome::Sent(message_id),
        Err(SendError::Permanent(reason)) => Outcome::Failed(reason),
        Err(SendError::Retryable(reason)) => {
            let horizon = chrono::Duration::from_std(policy.retry_horizon)
                .unwrap_or(chrono::Duration::days(1));
            let deadline = claim.created_at + horizon;
            if now >= deadline {
                Outcome::Failed(format!(
                    "gave up after {attempt} attempts in {}s: {reason}",
                    horizon.num_seconds()
                ))
            } else {
                let delay = chrono::Duration::from_std(backoff(attempt, &mut rand::thread_rng()))
                    .unwrap_or(chrono::Duration::minutes(15));
                // The last try falls on the horizon itself.
                Outcome::Retry((now + delay).min(deadline), reason)
            }
        }
    };
    // What a sent or failed row keeps of the email: links and codes wiped.
    let kept = email.map(Email::scrubbed);
    let marked = match &outcome {
        Outcome::Sent(message_id) => {
            store::mark_sent(
                store.connection(),
                id,
                attempt,
                message_id,
                kept.as_ref(),
                now,
            )
            .await
        }
        Outcome::Retry(next, reason) => {
            store::mark_retry(store.connection(), id, attempt, *next, reason).await
        }
        Outcome::Failed(reason) => {
            store::mark_failed(store.connection(), id, attempt, reason, kept.as_ref()).await
        }
    };
    match marked {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                email_id = %id,
                kind,
                attempt,
                "the claim expired and was taken over before this attempt was recorded"
            );
            return;
        }
        Err(error) => {
            // The row stays claimed; after the lease it is sent again (at-least-once).
            tracing::warn!(
                email_id = %id,
                kind,
                attempt,
                error = %error,
                "could not record the attempt; the email is retried after the lease"
            );
            return;
        }
    }
    let metrics = metrics();
    let attributes = [KeyValue::new("kind", claim.kind.clone())];
    match outcome {
        Outcome::Sent(message_id) => {
            report.sent += 1;
            metrics.sent.add(1, &attributes);
            tracing::info!(email_id = %id, kind, attempt, message_id = %message_id, "email sent");
        }
        Outcome::Retry(next, reason) => {
            report.retried += 1;
            metrics.retried.add(1, &attributes);
            tracing::warn!(
                email_id = %id,
                kind,
                attempt,
                next_attempt_at = %next,
                reason = %reason,
                "email not sent; retrying"
            );
        }
        Outcome::Failed(reason) => {
            report.failed += 1;
            metrics.failed.add(1, &attributes);
            tracing::error!(email_id = %id, kind, attempt, reason = %reason, "email failed");
        }
    }
}

/// One pass: claims up to `batch` due rows and sends them, one after another.
pub async fn deliver_due(
    store: &Store,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    policy: Policy,
    batch: u64,
) -> DomainResult<Delivery> {
    let now = clock.now();
    let claims = store::claim_due(store.connection(), now, now + LEASE, batch).await?;
    let mut report = Delivery {
        claimed: claims.len(),
        ..Delivery::default()
    };
    for claim in claims {
        // Each email's delivery is a trace of its own: its SES call and the statement that
        // records the outcome are its children.
        let span = tracing::info_span!(
            "identity.email.deliver",
            identity.email.id = %claim.id,
            identity.email.kind = %claim.kind,
            identity.email.attempt = claim.attempt,
        );
        deliver_one(store, mailer, clock, policy, claim, &mut report)
            .instrument(span)
            .await;
    }
    Ok(report)
}

/// When the oldest row that is due now (and not delivered) was queued.
pub async fn oldest_due(store: &Store, now: DateTime<Utc>) -> DomainResult<Option<DateTime<Utc>>> {
    store::oldest_due(store.connection(), now).await
}

/// Delivers due emails every `interval` until `stop` turns true; a pass under way finishes first,
/// so a claimed email is recorded rather than left to its lease.
pub fn spawn_worker(
    store: Store,
    mailer: Arc<dyn Mailer>,
    clock: SharedClock,
    interval: Duration,
    policy: Policy,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(60);
    tokio::spawn(async move {
        let mut last_backlog_log: Option<tokio::time::Instant> = None;
        // Each pass comes after a pause (the first one too, so start-up is not slowed), except
        // right after a full batch: more may be waiting.
        let mut pause = true;
        loop {
            if pause {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            // The server is gone.
                            break;
                        }
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            let full =
                match deliver_due(&store, mailer.as_ref(), clock.as_ref(), policy, BATCH).await {
                    Ok(delivery) => delivery.claimed as u64 == BATCH,
                    Err(error) => {
                        tracing::warn!(error = ?error, "outbox delivery failed; retrying");
                        false
                    }
                };
            let now = clock.now();
            if let Ok(oldest) = oldest_due(&store, now).await {
                let age = oldest.map_or(0, |at| (now - at).num_seconds().max(0));
                metrics().oldest_due_age.store(age, Ordering::Relaxed);
                let quiet = last_backlog_log.is_none_or(|at| at.elapsed() >= BACKLOG_LOG_EVERY);
                if age > 0 && quiet {
                    tracing::info!(oldest_due_age_s = age, "emails are waiting for delivery");
                    last_backlog_log = Some(tokio::time::Instant::now());
                }
            }
            pause = !full;
        }
    })
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_full_jitter() {
        assert_eq!(backoff_ceiling(1), Duration::from_secs(5));
        assert_eq!(backoff_ceiling(2), Duration::from_secs(10));
        assert_eq!(backoff_ceiling(5), Duration::from_secs(80));
        assert_eq!(backoff_ceiling(9), MAX_BACKOFF);
        assert_eq!(backoff_ceiling(1_000), MAX_BACKOFF);
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..40 {
            let draws: Vec<Duration> = (0..200).map(|_| backoff(attempt, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d >= MIN_BACKOFF));
            assert!(draws.iter().all(|d| *d <= backoff_ceiling(attempt)));
            // Jittered: the draws spread over the range instead of all landing on the ceiling.
            if backoff_ceiling(attempt) > Duration::from_secs(10) {
                let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
                assert!(distinct.len() > 100, "attempt {attempt}: {distinct:?}");
            }
        }
    }

    #[test]
    fn a_batch_of_sends_fits_in_a_lease() {
        let batch = super::super::ses::SEND_TIMEOUT * BATCH as u32;
        assert!(chrono::Duration::from_std(batch).unwrap_or(LEASE) * 2 <= LEASE);
    }
}
