//! The audit log's use cases: listing an account's events, recording the DAM's, the chainer that
//! links appended events into each account's hash chain, retention, and verification.
//!
//! Every use case that changes something appends its event in its own unit of work, through
//! `event`, which stamps the draft with the request's origin (request id, client address, user
//! agent). The transport sets the origin once per request (`with_origin`), as it resolves the
//! caller; work outside a request (start-up, background jobs) has an empty origin.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::idempotent;
use crate::clock::SharedClock;
use crate::domain::actor::{Actor, Callers, Requirement, Scope};
use crate::domain::audit::{self as rules, Category, ChainCheck, Draft, Event, Origin};
use crate::domain::error::{DomainError, DomainResult, Violations, reason};
use crate::domain::page::{After, ListQuery, Page, PageTokens};
use crate::domain::roles::Permission;
use crate::store::Store;
use crate::store::audit::EventFilter;
use crate::store::idempotency::Idempotency;

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Runs `work` (a request's handling) with `origin` as the origin of the events it appends.
pub async fn with_origin<F: Future>(origin: Origin, work: F) -> F::Output {
    ORIGIN.scope(origin, work).await
}

/// The origin of the request being handled (empty outside one).
pub fn origin() -> Origin {
    ORIGIN.try_with(Origin::clone).unwrap_or_default()
}

/// `draft` as an event of `account_id` at `now`, from the current request.
pub fn event(draft: Draft, account_id: Uuid, now: DateTime<Utc>) -> Event {
    draft.into_event(account_id, &origin(), now)
}

/// Listing the log: people with `audit.view`, services with `audit.read` (or operators).
const VIEW_AUDIT: Requirement = Requirement {
    permission: Some(Permission::AuditView),
    scope: Scope::AuditRead,
};

/// `draft` as one event in each of `accounts` (in the service's own chain when there are none):
/// an event about a person rather than one account, such as a failed login.
pub fn events_for(accounts: &[Uuid], now: DateTime<Utc>, draft: Draft) -> Vec<Event> {
    if accounts.is_empty() {
        return vec![event(draft, rules::SERVICE_CHAIN, now)];
    }
    accounts
        .iter()
        .map(|account_id| event(draft.clone(), *account_id, now))
        .collect()
}

/// Appends `drafts` as events of `account_id` in the unit of work `tx`.
pub async fn append(
    tx: &crate::store::Tx,
    account_id: Uuid,
    now: DateTime<Utc>,
    drafts: impl IntoIterator<Item = Draft>,
) -> DomainResult<()> {
    let events: Vec<Event> = drafts
        .into_iter()
        .map(|draft| event(draft, account_id, now))
        .collect();
    tx.append_audit(&events).await
}

/// How many events one pass of the chainer links per account.
const CHAIN_BATCH: u64 = 5_000;
/// How often a chainer looks for other replicas' events when its own writes do not wake it.
pub const CHAIN_EVERY: Duration = Duration::from_secs(1);
/// How long the chainer waits after a write wakes it, so one pass links many events.
const CHAIN_GATHER: Duration = Duration::from_millis(200);
/// How often retention runs, and how long its lease lasts.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);
const PURGE_LEASE: Duration = Duration::from_secs(600);
const PURGE_BATCH: u64 = 10_000;

/// An event the DAM records, checked.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub action: String,
    pub actor: rules::EventActor,
    pub target: Option<rules::Target>,
    pub ip_address: String,
    pub user_agent: String,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub changes: Vec<rules::Change>,
    /// Unset means now.
    pub time: Option<DateTime<Utc>>,
}

/// What ListAuditEvents asks for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub account_id: Uuid,
    pub category: Option<Category>,
    pub actor_id: String,
    pub action: String,
    pub target_id: String,
    pub target_type: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Audit {
    store: Store,
    clock: SharedClock,
    pages: PageTokens,
}

fn event_position(event: &Event) -> After {
    After {
        key: event.time.timestamp_micros().to_string(),
        id: event.id,
    }
}

/// Ids of a batch: consecutive UUIDv7 values from one time-ordered base, so a retried batch
/// answers the same ids from its first one.
fn batch_ids(first: Uuid, count: usize) -> Vec<Uuid> {
    let base = first.as_u128();
    (0..count as u128)
        .map(|i| Uuid::from_u128(base + i))
        .collect()
}

impl Audit {
    pub fn new(store: Store, clock: SharedClock, pages: PageTokens) -> Self {
        Self {
            store,
            clock,
            pages,
        }
    }

    /// The account's events, newest first, limited to the categories the caller may see.
    pub async fn list(
        &self,
        actor: &Actor,
        query: EventQuery,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Event>> {
        actor.authorize(query.account_id, VIEW_AUDIT)?;
        let visible: Vec<Category> = match actor {
            Actor::Person(person) => rules::visible_to(person.role).to_vec(),
            _ => Category::ALL.to_vec(),
        };
        let categories = match query.category {
            None => visible,
            Some(category) if visible.contains(&category) => vec![category],
            Some(_) => {
                return Err(DomainError::permission_denied(
                    reason::PERMISSION_MISSING,
                    "your role cannot see this category of events",
                ));
            }
        };
        if let (Some(start), Some(end)) = (query.start_time, query.end_time)
            && start > end
        {
            return Err(DomainError::invalid(
                "start_time",
                "must not be after end_time",
            ));
        }
        let micros = |t: Option<DateTime<Utc>>| {
            t.map_or(String::new(), |t| t.timestamp_micros().to_string())
        };
        let category_key = categories
            .iter()
            .map(|c| c.number().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let list = ListQuery::new(
            "ListAuditEvents",
            &[
                &query.account_id.to_string(),
                &category_key,
                &query.actor_id,
                &query.action,
                &query.target_id,
                &query.target_type,
                &micros(query.start_time),
                &micros(query.end_time),
            ],
        );
        let after = self.pages.decode(&list, page_token)?;
        let some = |s: String| (!s.is_empty()).then_some(s);
        let filter = EventFilter {
            account_id: query.account_id,
            categories,
            actor_id: some(query.actor_id),
            action: some(query.action),
            target_id: some(query.target_id),
            target_type: some(query.target_type),
            start_time: query.start_time,
            end_time: query.end_time,
        };
        let rows = self
            .store
            .audit_events(&filter, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&list, rows, page_size, event_position))
    }

    /// Appends the DAM's batch of one account, all or nothing; a retry with the same
    /// `request_id` answers the same ids without appending again.
    pub async fn record(
        &self,
        actor: &Actor,
        account_id: Uuid,
        events: Vec<Recorded>,
        request_id: Option<String>,
    ) -> DomainResult<Vec<Uuid>> {
        // The gate admitted only such callers; the use case holds to it on its own too.
        actor.admitted_by(Callers::Services(&[Scope::AuditWrite]))?;
        let Actor::Service(service) = actor else {
            return Err(DomainError::internal(anyhow::anyhow!(
                "a service was admitted"
            )));
        };
        let now = self.clock.now();
        let count = events.len();
        let key = request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("RecordAuditEvents/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: fingerprint(account_id, &events),
        });
        // A retry answers the ids of the first request, from its first one.
        let replay = |first: Uuid| async move { Ok(batch_ids(first, count)) };
        idempotent(&self.store, key.as_ref(), now, replay, async {
            let first = Uuid::from_u128(Uuid::now_v7().as_u128() & !0x3ff);
            let ids = batch_ids(first, count);
            let mut stored = Vec::with_capacity(count);
            let mut v = Violations::new();
            for (i, (event, id)) in events.into_iter().zip(&ids).enumerate() {
                let Some(time) = v.check_at(
                    || format!("events[{i}].time"),
                    rules::recorded_time(event.time, now),
                ) else {
                    continue;
                };
                stored.push(Event {
                    id: *id,
                    account_id,
                    category: Category::MediaLibrary,
                    action: event.action,
                    actor: event.actor,
                    target: event.target,
                    origin: Origin {
                        ip_address: event.ip_address,
                        user_agent: event.user_agent,
                        request_id: request_id.clone().unwrap_or_default(),
                    },
                    metadata: event.metadata,
                    changes: event.changes,
                    time,
                    source: service.name.clone(),
                });
            }
            v.finish()?;
            if self.store.account(account_id).await?.is_none() {
                return Err(crate::domain::accounts::account_not_found());
            }
            let tx = self.store.begin().await?;
            if let Some(key) = &key {
                tx.record_request(key, &first.to_string(), now).await?;
            }
            tx.append_audit(&stored).await?;
            tx.commit().await?;
            Ok(ids)
        })
        .await
    }
}

/// The content of a batch, for `REQUEST_ID_REUSED`: the same id with other events is refused.
fn fingerprint(account_id: Uuid, events: &[Recorded]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(account_id.as_bytes());
    for event in events {
        // Each event's canonical hash, with what the server sets left out.
        let canonical = Event {
            id: Uuid::nil(),
            account_id,
            category: Category::MediaLibrary,
            action: event.action.clone(),
            actor: event.actor.clone(),
            target: event.target.clone(),
            origin: Origin {
                request_id: String::new(),
                ip_address: event.ip_address.clone(),
                user_agent: event.user_agent.clone(),
            },
            metadata: event.metadata.clone(),
            changes: event.changes.clone(),
            time: event.time.unwrap_or_default(),
            source: String::new(),
        };
        h.update([u8::from(event.time.is_some())]);
        h.update(rules::digest(&canonical));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where each account's queue was linked up to (its last linked event id), and when it was last
/// read from the start. A pass reads the queue from the watermark, past the entries it deleted
/// (an index keeps those until a vacuum); it reads from the start when nothing is queued after the
/// watermark, and at least every `FULL_SCAN_EVERY`, so an event committed late with an earlier id
/// waits no longer than that even while writes keep coming.
#[derive(Debug, Default)]
pub struct Watermarks(std::collections::HashMap<Uuid, (Uuid, std::time::Instant)>);

const FULL_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Links every account's queued events until none is left; returns how many it linked.
pub async fn chain_pending(store: &Store) -> DomainResult<usize> {
    chain_pending_from(store, &mut Watermarks::default()).await
}

/// `chain_pending`, reading each account's queue from its watermark.
pub async fn chain_pending_from(store: &Store, marks: &mut Watermarks) -> DomainResult<usize> {
    let mut total = 0;
    loop {
        let accounts = store.unchained_accounts(100).await?;
        if accounts.is_empty() {
            return Ok(total);
        }
        for account_id in accounts {
            let known = marks.0.get(&account_id).copied();
            let from = known
                .filter(|(_, full)| full.elapsed() < FULL_SCAN_EVERY)
                .map(|(mark, _)| mark);
            let (mut linked, mut last) = store.chain_events(account_id, from, CHAIN_BATCH).await?;
            let mut full = from.is_none();
            if linked == 0 && from.is_some() {
                (linked, last) = store.chain_events(account_id, None, CHAIN_BATCH).await?;
                full = true;
            }
            // Drain the account's queue from there before asking which accounts have one again.
            let mut batch = linked;
            while batch as u64 == CHAIN_BATCH {
                let Some(after) = last else { break };
                let (more, more_last) = store
                    .chain_events(account_id, Some(after), CHAIN_BATCH)
                    .await?;
                (batch, last) = (more, more_last.or(last));
                linked += more;
            }
            let now = std::time::Instant::now();
            let (mark, full_at) = known.unwrap_or((Uuid::nil(), now));
            let mark = last.map_or(mark, |last| mark.max(last));
            marks
                .0
                .insert(account_id, (mark, if full { now } else { full_at }));
            total += linked;
        }
    }
}

/// The chainer of this replica: runs when one of its writes appended events, and every
/// `CHAIN_EVERY` for the other replicas', until `stop` turns true.
pub fn spawn_chainer(store: Store, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut marks = Watermarks::default();
        loop {
            if let Err(error) = chain_pending_from(&store, &mut marks).await {
                tracing::warn!(error = %error, "chaining audit events failed; retrying");
            }
            tokio::select! {
                // A short wait gathers the events of the writes around this one into one pass.
                () = store.audit_appended() => tokio::time::sleep(CHAIN_GATHER).await,
                () = tokio::time::sleep(CHAIN_EVERY) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        // What was appended before the stop is chained before leaving.
                        let _ = chain_pending_from(&store, &mut marks).await;
                        break;
                    }
                }
            }
        }
    })
}

/// One retention pass, if this replica holds the lease: deletes every account's chained events
/// older than `retention`, keeping each chain's floor. Returns how many it deleted.
pub async fn purge_expired(
    store: &Store,
    clock: &SharedClock,
    retention: Duration,
    holder: Uuid,
) -> DomainResult<u64> {
    let now = clock.now();
    let lease = chrono::Duration::from_std(PURGE_LEASE).unwrap_or_default();
    if !store
        .take_lease("audit.retention", holder, now, now + lease)
        .await?
    {
        return Ok(0);
    }
    let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut deleted = 0;
    let mut after = None;
    loop {
        let accounts = store.audit_chains(after, 500).await?;
        let Some(last) = accounts.last().copied() else {
            return Ok(deleted);
        };
        for account_id in accounts {
            loop {
                let n = store.purge_audit(account_id, cutoff, PURGE_BATCH).await?;
                deleted += n;
                if n < PURGE_BATCH {
                    break;
                }
            }
        }
        after = Some(last);
    }
}

/// Retention on this replica: a pass every `PURGE_EVERY` (one replica at a time, by lease).
pub fn spawn_retention(
    store: Store,
    clock: SharedClock,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let holder = Uuid::now_v7();
    tokio::spawn(async move {
        loop {
            match purge_expired(&store, &clock, retention, holder).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "expired audit events deleted"),
                Err(error) => tracing::warn!(error = %error, "audit retention pass failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(PURGE_EVERY) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
    })
}

/// What verifying one chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub account_id: Uuid,
    /// Events checked (from the floor to the head).
    pub checked: u64,
    /// Positions retention deleted (the floor).
    pub purged_through: i64,
    /// Events appended but not chained yet (not covered by this check).
    pub unchained: u64,
    pub result: Result<(), rules::Break>,
}

/// Verifies one account's chain from its floor to its head.
pub async fn verify_chain(store: &Store, account_id: Uuid) -> DomainResult<ChainReport> {
    let head = store.chain_head(account_id).await?.unwrap_or_default();
    let unchained = store.unchained_count(account_id).await?;
    let mut check = ChainCheck::new(account_id, &head);
    let mut after = head.floor_seq;
    let report = |checked, result| ChainReport {
        account_id,
        checked,
        purged_through: head.floor_seq,
        unchained,
        result,
    };
    loop {
        // Up to the head read above: a chainer may link more meanwhile.
        let page = store
            .chained_events(account_id, (after, head.seq), 1000)
            .await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.seq;
        for (link, event) in &page {
            if let Err(broken) = check.next(link, event.as_ref()) {
                return Ok(report(0, Err(broken)));
            }
        }
    }
    Ok(match check.finish(&head) {
        Ok(checked) => report(checked, Ok(())),
        Err(broken) => report(0, Err(broken)),
    })
}

/// Verifies `account_id`'s chain, or every chain.
pub async fn verify(store: &Store, account_id: Option<Uuid>) -> DomainResult<Vec<ChainReport>> {
    if let Some(account_id) = account_id {
        return Ok(vec![verify_chain(store, account_id).await?]);
    }
    let mut reports = Vec::new();
    let mut after = None;
    loop {
        let accounts = store.audit_chains(after, 500).await?;
        let Some(last) = accounts.last().copied() else {
            return Ok(reports);
        };
        for account_id in accounts {
            reports.push(verify_chain(store, account_id).await?);
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_has_consecutive_ids_from_its_first() {
        let first = Uuid::from_u128(Uuid::now_v7().as_u128() & !0x3ff);
        let ids = batch_ids(first, 500);
        assert_eq!(ids[0], first);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }
}
