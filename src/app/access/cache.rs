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
//! (a delta, applied in order), or a reload when the log no longer reaches back that far.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::memory::AccountAccess;
use crate::domain::error::{DomainError, DomainResult};
use crate::store::Store;
use crate::store::access_changes::FeedEvent;
use crate::store::shares::AccessSink;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            guard: self
                .entry
                .data
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }
}

/// The access data of the accounts in use on this replica.
pub struct AccessCache {
    store: Store,
    staleness: Duration,
    budget: usize,
    epoch: Instant,
    feed: Mutex<FeedState>,
    accounts: Mutex<HashMap<Uuid, Arc<Entry>>>,
}

impl AccessCache {
    /// `staleness` zero turns the cache off: every check catches up first.
    pub fn new(store: Store, staleness: Duration, budget: usize) -> Arc<Self> {
        let epoch = Instant::now();
        // Without a feed (SQLite) this process makes every change and hears it as it commits.
        let in_process = !store.has_feed();
        let cache = Arc::new(Self {
            store: store.clone(),
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
        store.on_access_change(Arc::new(move |account_id, revision| {
            if let Some(cache) = weak.upgrade() {
                cache.announce(account_id, revision);
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

    fn is_fresh(&self, entry: &Entry, at_least: Option<i64>, now: Instant) -> bool {
        let data = entry
            .data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(data) = data.as_ref() else {
            return false;
        };
        let needed = at_least
            .unwrap_or(i64::MIN)
            .max(entry.announced.load(Ordering::Acquire));
        if data.revision < needed {
            return false;
        }
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

    fn entry(&self, account_id: Uuid) -> Arc<Entry> {
        lock(&self.accounts)
            .entry(account_id)
            .or_insert_with(|| {
                Arc::new(Entry {
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
        if !self.is_fresh(&entry, at_least, now) {
            let _one_at_a_time = entry.sync.lock().await;
            if !self.is_fresh(&entry, at_least, Instant::now())
                && !self.catch_up(account_id, &entry).await?
            {
                lock(&self.accounts).remove(&account_id);
                return Ok(None);
            }
        }
        Ok(Some(Fresh { entry }))
    }

    /// Brings the entry up to date; false when the account does not exist.
    async fn catch_up(&self, account_id: Uuid, entry: &Entry) -> DomainResult<bool> {
        let started = Instant::now();
        let held = entry
            .data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|data| data.revision);
        let caught_up = match held {
            Some(revision) => {
                let changes = self
                    .store
                    .access_changes_since(account_id, revision)
                    .await?;
                let reaches = changes
                    .first()
                    .is_none_or(|(first, _)| *first == revision + 1);
                if reaches {
                    let mut data = entry
                        .data
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(data) = data.as_mut() {
                        for (revision, list) in &changes {
                            for change in list {
                                data.apply(change);
                            }
                            data.revision = *revision;
                        }
                    }
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        if !caught_up {
            let Some(loaded) = self.load(account_id).await? else {
                return Ok(false);
            };
            *entry
                .data
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loaded);
        }
        entry
            .verified
            .store(self.since_epoch(started), Ordering::Release);
        let bytes = entry
            .data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, AccountAccess::bytes);
        entry.bytes.store(bytes as u64, Ordering::Relaxed);
        self.evict(account_id);
        Ok(true)
    }

    /// Reads the whole account, one query per table.
    async fn load(&self, account_id: Uuid) -> DomainResult<Option<AccountAccess>> {
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
                },
            )
            .await?;
        let Some(revision) = revision else {
            return Ok(None);
        };
        let mut data = data
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
