//! The replica's access data: per account in use, loaded on first use, kept fresh by the
//! change feed, bounded by a memory budget (least recently used accounts go first).
//!
//! Freshness. An account's data is at some revision, and was last confirmed current at
//! `verified` (when the catch-up query that confirmed it started). A check may use it when:
//! - it is at least at the revision the check's consistency token names, and at least at every
//!   revision the feed has announced for the account; and
//! - it is no older than the staleness bound: confirmed within the bound, or the feed has
//!   been listening without a gap since before that confirmation and has heard, within the
//!   bound, a tick that proves every earlier change was delivered.
//!
//! Otherwise the check first catches up: one query for the change log after the revision held
//! (a delta, applied in order), or a reload when the log no longer reaches back that far; and,
//! when the data was too old rather than behind a revision, one more for the sessions of the
//! account that ended meanwhile.
//!
//! Session ends ride the same feed: the access tokens of an ended session are refused from
//! memory, at once on the replica that ended it and within the bound on the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::memory::AccountAccess;
use crate::clock::SharedClock;
use crate::domain::auth::SessionStanding;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sharing::AccessView;
use crate::store::access_changes::FeedEvent;
use crate::store::shares::AccessSink;
use crate::store::{Committed, Store};

/// Clocks of replicas and the database disagree a little: session ends are read back with this
/// overlap, and kept this much longer than an access token lives.
const CLOCK_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

// A poisoned lock still holds consistent data here: each change to it is one assignment or one
// applied change.
/// `identity.access.cache.reads` (by `result`: `hit`, `caught_up` from the change log, `loaded`
/// whole) and `identity.access.cache.evictions`, from the global meter provider (a no-op without
/// OTLP).
struct Metrics {
    reads: opentelemetry::metrics::Counter<u64>,
    evictions: opentelemetry::metrics::Counter<u64>,
}

fn metrics() -> &'static Metrics {
    static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("identity");
        Metrics {
            reads: meter
                .u64_counter("identity.access.cache.reads")
                .with_description(
                    "Reads of an account's access data: from memory (hit), after a catch-up \
                     from the change log (caught_up), or after a whole load (loaded)",
                )
                .build(),
            evictions: meter
                .u64_counter("identity.access.cache.evictions")
                .with_description("Accounts dropped from memory for the budget")
                .build(),
        }
    })
}

fn count_read(result: &'static str) {
    metrics()
        .reads
        .add(1, &[opentelemetry::KeyValue::new("result", result)]);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// What the feed has proven, shared by every account.
#[derive(Debug)]
struct FeedState {
    /// Since when the feed has listened without a gap; `None` while it is down.
    listening_since: Option<Instant>,
    /// The send time of the newest tick heard: every change committed before it was heard.
    heard_up_to: Option<Instant>,
}

/// One account's entry.
struct Entry {
    /// Session ends were read up to this time (the start of the read, by the service's clock).
    sessions_read: Mutex<DateTime<Utc>>,
    data: RwLock<Option<AccountAccess>>,
    /// One load or catch-up at a time.
    sync: tokio::sync::Mutex<()>,
    /// When the data was last confirmed current (nanoseconds since the cache's epoch).
    verified: AtomicU64,
    /// The newest revision the feed or a local commit announced.
    announced: AtomicI64,
    /// Last use (nanoseconds since the cache's epoch), for eviction.
    used: AtomicU64,
    /// The data's size estimate when last measured.
    bytes: AtomicU64,
}

/// A read of one account's data, fresh enough for the check that asked.
pub struct Snapshot<'a> {
    guard: RwLockReadGuard<'a, Option<AccountAccess>>,
}

impl Snapshot<'_> {
    pub fn data(&self) -> &AccountAccess {
        // The entry is loaded before a snapshot is handed out.
        self.guard.as_ref().unwrap_or(&EMPTY)
    }
}

static EMPTY: std::sync::LazyLock<AccountAccess> = std::sync::LazyLock::new(AccountAccess::default);

/// Holds a fresh entry alive while its snapshot is read.
pub struct Fresh {
    entry: Arc<Entry>,
}

impl Fresh {
    pub fn read(&self) -> Snapshot<'_> {
        Snapshot {
            guard: read(&self.entry.data),
        }
    }
}

/// The access data of the accounts in use on this replica.
pub struct AccessCache {
    store: Store,
    clock: SharedClock,
    /// How long an access token lives: a session's end matters that long.
    token_ttl: chrono::Duration,
    staleness: Duration,
    budget: usize,
    epoch: Instant,
    feed: Mutex<FeedState>,
    accounts: Mutex<HashMap<Uuid, Arc<Entry>>>,
}

impl AccessCache {
    /// `staleness` zero turns the cache off: every check catches up first.
    pub fn new(
        store: Store,
        clock: SharedClock,
        token_ttl: Duration,
        staleness: Duration,
        budget: usize,
    ) -> Arc<Self> {
        let epoch = Instant::now();
        // Without a feed (SQLite) this process makes every change and hears it as it commits.
        let in_process = !store.has_feed();
        let cache = Arc::new(Self {
            store: store.clone(),
            clock,
            token_ttl: chrono::Duration::from_std(token_ttl).unwrap_or(chrono::Duration::MAX),
            staleness,
            budget,
            epoch,
            feed: Mutex::new(FeedState {
                listening_since: in_process.then_some(epoch),
                heard_up_to: None,
            }),
            accounts: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&cache);
        store.on_access_change(Arc::new(move |committed| {
            let Some(cache) = weak.upgrade() else {
                return;
            };
            match committed {
                Committed::Revision {
                    account_id,
                    revision,
                } => cache.announce(account_id, revision),
                Committed::SessionsEnded(ended) => {
                    for (account_id, session_id) in ended {
                        cache.end_sessions(*account_id, std::slice::from_ref(session_id));
                    }
                }
            }
        }));
        cache
    }

    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Tells the cache what the feed heard.
    pub fn hear(&self, event: FeedEvent) {
        match event {
            FeedEvent::Changed {
                account_id,
                revision,
            } => self.announce(account_id, revision),
            FeedEvent::Heard { sent } => {
                let mut feed = lock(&self.feed);
                if feed.listening_since.is_none() {
                    // Listening again: changes from now on are heard; earlier ones may be lost,
                    // so data confirmed before now must be confirmed again.
                    feed.listening_since = Some(Instant::now());
                }
                feed.heard_up_to = Some(feed.heard_up_to.map_or(sent, |at| at.max(sent)));
            }
            FeedEvent::SessionsEnded {
                account_id,
                sessions,
            } => self.end_sessions(account_id, &sessions),
            FeedEvent::Lost => {
                let mut feed = lock(&self.feed);
                feed.listening_since = None;
                feed.heard_up_to = None;
            }
        }
    }

    /// A change reached `revision`: data below it is not used again.
    pub fn announce(&self, account_id: Uuid, revision: i64) {
        if let Some(entry) = lock(&self.accounts).get(&account_id) {
            entry.announced.fetch_max(revision, Ordering::AcqRel);
        }
    }

    /// Notes ended sessions in the account's data, when it is held.
    fn end_sessions(&self, account_id: Uuid, sessions: &[Uuid]) {
        let Some(entry) = lock(&self.accounts).get(&account_id).cloned() else {
            return;
        };
        let now = self.clock.now();
        let mut data = write(&entry.data);
        if let Some(data) = data.as_mut() {
            for session_id in sessions {
                data.end_session(*session_id, now);
            }
            data.forget_sessions_ended_before(now - self.token_ttl - CLOCK_MARGIN);
        }
    }

    /// Where the session of an access token of `user_id` in `account_id` stands, from memory
    /// within the staleness bound: ended, or live with the member's status.
    pub async fn session_standing(
        &self,
        session_id: Uuid,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<SessionStanding> {
        let Some(fresh) = self.fresh(account_id, None).await? else {
            return Ok(SessionStanding::Ended);
        };
        let snapshot = fresh.read();
        let data = snapshot.data();
        if data.session_ended(session_id) {
            return Ok(SessionStanding::Ended);
        }
        Ok(SessionStanding::Live(
            data.member(user_id).map(|(_, status)| status),
        ))
    }

    /// Whether the data is recent enough (within the bound, or proven by the feed); the revision
    /// is judged apart.
    fn is_recent(&self, entry: &Entry, now: Instant) -> bool {
        if self.staleness.is_zero() {
            return false;
        }
        let verified = entry.verified.load(Ordering::Acquire);
        let now_ns = self.since_epoch(now);
        let bound = self.staleness.as_nanos() as u64;
        if now_ns.saturating_sub(verified) <= bound {
            return true;
        }
        let feed = lock(&self.feed);
        match (feed.listening_since, feed.heard_up_to) {
            // In process: every change is announced as it commits.
            (Some(_), None) if !self.store.has_feed() => true,
            (Some(since), Some(heard)) => {
                self.since_epoch(since) <= verified
                    && now_ns.saturating_sub(self.since_epoch(heard)) <= bound
            }
            _ => false,
        }
    }

    /// Whether the data holds at least revision `at_least` and every announced one.
    fn is_current(&self, entry: &Entry, at_least: Option<i64>) -> bool {
        let data = read(&entry.data);
        let Some(data) = data.as_ref() else {
            return false;
        };
        let needed = at_least
            .unwrap_or(i64::MIN)
            .max(entry.announced.load(Ordering::Acquire));
        data.revision >= needed
    }

    fn entry(&self, account_id: Uuid) -> Arc<Entry> {
        lock(&self.accounts)
            .entry(account_id)
            .or_insert_with(|| {
                Arc::new(Entry {
                    sessions_read: Mutex::new(DateTime::<Utc>::MIN_UTC),
                    data: RwLock::new(None),
                    sync: tokio::sync::Mutex::new(()),
                    verified: AtomicU64::new(0),
                    announced: AtomicI64::new(i64::MIN),
                    used: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The account's data, at least at revision `at_least` and within the staleness bound;
    /// `None` when the account does not exist.
    pub async fn fresh(
        &self,
        account_id: Uuid,
        at_least: Option<i64>,
    ) -> DomainResult<Option<Fresh>> {
        let entry = self.entry(account_id);
        let now = Instant::now();
        entry.used.store(self.since_epoch(now), Ordering::Relaxed);
        if !(self.is_current(&entry, at_least) && self.is_recent(&entry, now)) {
            let _one_at_a_time = entry.sync.lock().await;
            let recent = self.is_recent(&entry, Instant::now());
            let usable = recent && self.is_current(&entry, at_least);
            if !usable && !self.catch_up(account_id, &entry, !recent).await? {
                lock(&self.accounts).remove(&account_id);
                return Ok(None);
            }
            if usable {
                count_read("hit");
            }
        } else {
            count_read("hit");
        }
        Ok(Some(Fresh { entry }))
    }

    /// Brings the entry up to date; false when the account does not exist. `confirm`: the
    /// data was too old, so session ends are read too and the data counts as confirmed now.
    async fn catch_up(&self, account_id: Uuid, entry: &Entry, confirm: bool) -> DomainResult<bool> {
        let started = Instant::now();
        let started_at = self.clock.now();
        let held = read(&entry.data).as_ref().map(|data| data.revision);
        let caught_up = match held {
            Some(revision) => {
                let changes = self
                    .store
                    .access_changes_since(account_id, revision)
                    .await?;
                let reaches = changes
                    .first()
                    .is_none_or(|(first, _)| *first == revision + 1);
                let ended = if reaches && confirm {
                    let since = *lock(&entry.sessions_read) - CLOCK_MARGIN;
                    self.store.sessions_ended_since(account_id, since).await?
                } else {
                    Vec::new()
                };
                if reaches {
                    let mut data = write(&entry.data);
                    if let Some(data) = data.as_mut() {
                        for (revision, list) in &changes {
                            for change in list {
                                data.apply(change);
                            }
                            data.revision = *revision;
                        }
                        for (session_id, at) in ended {
                            data.end_session(session_id, at);
                        }
                        data.forget_sessions_ended_before(
                            started_at - self.token_ttl - CLOCK_MARGIN,
                        );
                    }
                }
                reaches
            }
            None => false,
        };
        if caught_up {
            count_read("caught_up");
        } else {
            let Some(loaded) = self.load(account_id, started_at).await? else {
                return Ok(false);
            };
            *write(&entry.data) = Some(loaded);
            count_read("loaded");
        }
        if confirm || !caught_up {
            *lock(&entry.sessions_read) = started_at;
            entry
                .verified
                .store(self.since_epoch(started), Ordering::Release);
        }
        let bytes = read(&entry.data).as_ref().map_or(0, AccountAccess::bytes);
        entry.bytes.store(bytes as u64, Ordering::Relaxed);
        self.evict(account_id);
        Ok(true)
    }

    /// Reads the whole account, one query per table.
    async fn load(
        &self,
        account_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<AccountAccess>> {
        let data = Mutex::new(AccountAccess::new(0));
        let revision = self
            .store
            .load_access(
                account_id,
                AccessSink {
                    member: &mut |user, role, status| lock(&data).set_member(user, role, status),
                    group_member: &mut |group, user| lock(&data).add_to_group(group, user),
                    share: &mut |kind, id, subject, level| {
                        lock(&data).set_share(kind, id, subject, level)
                    },
                    session_ended: &mut |session_id, at| lock(&data).end_session(session_id, at),
                    ended_since: now - self.token_ttl - CLOCK_MARGIN,
                },
            )
            .await?;
        let Some(revision) = revision else {
            return Ok(None);
        };
        let mut data = data.into_inner().unwrap_or_else(PoisonError::into_inner);
        data.revision = revision;
        Ok(Some(data))
    }

    /// Drops least recently used accounts (never `keep`) until the estimate fits the budget.
    fn evict(&self, keep: Uuid) {
        let mut accounts = lock(&self.accounts);
        let mut total: u64 = accounts
            .values()
            .map(|e| e.bytes.load(Ordering::Relaxed))
            .sum();
        while total > self.budget as u64 {
            let victim = accounts
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
                .map(|(id, e)| (*id, e.bytes.load(Ordering::Relaxed)));
            let Some((id, bytes)) = victim else {
                break;
            };
            accounts.remove(&id);
            total -= bytes;
            metrics().evictions.add(1, &[]);
            tracing::info!(account_id = %id, bytes, "access data evicted for the memory budget");
        }
    }

    /// How many accounts are held, for tests and metrics.
    pub fn accounts_held(&self) -> usize {
        lock(&self.accounts).len()
    }
}

/// An account the cache could not find.
pub fn no_account() -> DomainError {
    DomainError::not_found(crate::domain::error::reason::ACCOUNT_NOT_FOUND, "account")
}

impl crate::auth::authenticator::Sessions for AccessCache {
    fn standing(
        &self,
        session_id: Uuid,
        account_id: Uuid,
        user_id: Uuid,
    ) -> futures::future::BoxFuture<'_, DomainResult<SessionStanding>> {
        Box::pin(self.session_standing(session_id, account_id, user_id))
    }
}
