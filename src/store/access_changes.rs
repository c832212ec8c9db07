//! The access revision and its change log, and the feed that tells replicas of new revisions.
//!
//! Each write that can change an access decision moves its account's revision on (under the
//! account row's lock, so revisions follow commit order), records what it changed under that
//! revision, and on PostgreSQL sends `NOTIFY identity_access '<account>:<revision>'`, delivered
//! to every listening replica when the transaction commits. The feed also sends itself a tick
//! now and then: PostgreSQL delivers notifications in commit order, so hearing a tick sent at
//! `t` means every change committed before `t` has been heard.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, QueryFilter, QueryOrder,
    Statement,
    sea_query::{Expr, ExprTrait, Query},
    sqlx::postgres::PgListener,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::entities::{access_change, account};
use super::{Store, Tx, lock};
use crate::domain::access_changes::AccessChange;
use crate::domain::error::{DomainError, DomainResult};

/// The PostgreSQL channel of access revisions.
const CHANNEL: &str = "identity_access";

/// Session ids per notification: the payload stays well under PostgreSQL's 8,000 bytes.
const SESSIONS_PER_NOTIFICATION: usize = 100;

/// `NOTIFY` on the access channel with `payload` (PostgreSQL).
fn notify(payload: String) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    )
}

/// What the feed hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The account's access data changed up to this revision.
    Changed { account_id: Uuid, revision: i64 },
    /// These sessions of the account ended.
    SessionsEnded {
        account_id: Uuid,
        sessions: Vec<Uuid>,
    },
    /// Every change committed before `sent` has been heard.
    Heard { sent: Instant },
    /// The listening connection was lost: changes may have been missed until the next `Heard`.
    Lost,
}

/// Who hears the feed.
pub type OnFeedEvent = Arc<dyn Fn(FeedEvent) + Send + Sync>;

impl Tx {
    /// Moves the account's access revision on, records `changes` under the new revision and,
    /// on PostgreSQL, notifies the replicas at commit. Returns the revision: the write's
    /// consistency token.
    pub async fn record_access_change(
        &self,
        account_id: Uuid,
        changes: &[AccessChange],
        now: DateTime<Utc>,
    ) -> DomainResult<i64> {
        let backend = self.conn().get_database_backend();
        let bump = Query::update()
            .table(account::Entity)
            .value(
                account::Column::AccessRevision,
                Expr::col(account::Column::AccessRevision).add(1),
            )
            .and_where(account::Column::Id.eq(account_id))
            .returning_col(account::Column::AccessRevision)
            .to_owned();
        let row = self
            .conn()
            .query_one_raw(backend.build(&bump))
            .await?
            // The caller holds the account's lock: it cannot have gone.
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("the locked account vanished")))?;
        let revision: i64 = row.try_get("", account::Column::AccessRevision.as_str())?;
        let text = serde_json::to_string(changes).map_err(DomainError::internal)?;
        access_change::Entity::insert(access_change::ActiveModel {
            account_id: Set(account_id),
            revision: Set(revision),
            changes: Set(text),
            created_at: Set(now),
        })
        .exec_without_returning(self.conn())
        .await?;
        if backend == DbBackend::Postgres {
            self.conn()
                .execute_raw(notify(format!("{account_id}:{revision}")))
                .await?;
        }
        lock(&self.revisions).push((account_id, revision));
        Ok(revision)
    }
}

impl Store {
    /// The changes recorded after `revision`, oldest first, with their revisions.
    pub async fn access_changes_since(
        &self,
        account_id: Uuid,
        revision: i64,
    ) -> DomainResult<Vec<(i64, Vec<AccessChange>)>> {
        let rows = access_change::Entity::find()
            .filter(access_change::Column::AccountId.eq(account_id))
            .filter(access_change::Column::Revision.gt(revision))
            .order_by_asc(access_change::Column::Revision)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                serde_json::from_str(&row.changes)
                    .map(|changes| (row.revision, changes))
                    .map_err(DomainError::internal)
            })
            .collect()
    }

    /// Deletes change-log entries recorded before `before`; returns how many.
    pub async fn prune_access_changes(&self, before: DateTime<Utc>) -> DomainResult<u64> {
        Ok(access_change::Entity::delete_many()
            .filter(access_change::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// True when replicas can hear each other's changes (PostgreSQL). On SQLite the database
    /// belongs to one process, which hears its own changes as it commits them.
    pub fn has_feed(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Listens to the access feed until `stop` turns true, telling `on` what it hears, with a
    /// tick every `tick`. A lost connection is told as `Lost` and re-established with back-off.
    pub fn listen(
        &self,
        tick: Duration,
        on: OnFeedEvent,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move { store.listen_until(tick, on, stop).await })
    }

    async fn listen_until(&self, tick: Duration, on: OnFeedEvent, mut stop: watch::Receiver<bool>) {
        let Some(url) = self.feed_url.clone() else {
            return;
        };
        let nonce = Uuid::new_v4().simple().to_string();
        let sent: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
        let ticker = {
            let (store, nonce, sent, mut stop) =
                (self.clone(), nonce.clone(), sent.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seq = 0u64;
                let mut every = tokio::time::interval(tick);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.changed() => break,
                    }
                    seq += 1;
                    {
                        let mut sent = lock(&sent);
                        sent.push_back((seq, Instant::now()));
                        // Ticks lost with a connection are never heard; keep the list short.
                        while sent.len() > 64 {
                            sent.pop_front();
                        }
                    }
                    let tick = notify(format!("t:{nonce}:{seq}"));
                    if let Err(error) = store.db.execute_raw(tick).await {
                        tracing::debug!(error = %error, "access feed tick not sent");
                    }
                }
            })
        };
        let mut backoff = Duration::from_millis(100);
        'connect: loop {
            // A connection of its own, outside the pool: listening never takes one from requests.
            let mut listener = match PgListener::connect(&url).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(error = %error, "access feed: cannot connect; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break 'connect,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(error) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %error, "access feed: LISTEN failed; retrying");
                continue;
            }
            backoff = Duration::from_millis(100);
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    _ = stop.changed() => break 'connect,
                };
                match received {
                    Ok(Some(notification)) => {
                        if let Some(event) = parse(notification.payload(), &nonce, &sent) {
                            on(event);
                        }
                    }
                    // The connection dropped: what was sent meanwhile is lost.
                    Ok(None) | Err(_) => {
                        tracing::warn!("access feed: connection lost; reconnecting");
                        on(FeedEvent::Lost);
                        continue 'connect;
                    }
                }
            }
        }
        ticker.abort();
    }
}

/// On PostgreSQL, notifies the replicas (at commit, inside a transaction) that these sessions
/// (account, session) ended: `x:<account>:<session>,<session>...`.
pub(super) async fn notify_sessions_ended(
    conn: &impl ConnectionTrait,
    ended: &[(Uuid, Uuid)],
) -> DomainResult<()> {
    let backend = conn.get_database_backend();
    if backend != DbBackend::Postgres || ended.is_empty() {
        return Ok(());
    }
    let mut by_account: std::collections::BTreeMap<Uuid, Vec<Uuid>> = Default::default();
    for (account_id, session_id) in ended {
        by_account.entry(*account_id).or_default().push(*session_id);
    }
    for (account_id, sessions) in by_account {
        for chunk in sessions.chunks(SESSIONS_PER_NOTIFICATION) {
            let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            conn.execute_raw(notify(format!("x:{account_id}:{}", ids.join(","))))
                .await?;
        }
    }
    Ok(())
}

/// The event of a notification's payload: a change, or one of this replica's own ticks.
fn parse(payload: &str, nonce: &str, sent: &Mutex<VecDeque<(u64, Instant)>>) -> Option<FeedEvent> {
    if let Some(tick) = payload.strip_prefix("t:") {
        let (from, seq) = tick.split_once(':')?;
        if from != nonce {
            return None;
        }
        let seq: u64 = seq.parse().ok()?;
        let mut sent = lock(sent);
        let at = sent.iter().find(|(s, _)| *s == seq).map(|(_, at)| *at)?;
        sent.retain(|(s, _)| *s > seq);
        return Some(FeedEvent::Heard { sent: at });
    }
    if let Some(ended) = payload.strip_prefix("x:") {
        let (account, sessions) = ended.split_once(':')?;
        return Some(FeedEvent::SessionsEnded {
            account_id: Uuid::parse_str(account).ok()?,
            sessions: sessions
                .split(',')
                .map(Uuid::parse_str)
                .collect::<Result<_, _>>()
                .ok()?,
        });
    }
    let (account, revision) = payload.split_once(':')?;
    Some(FeedEvent::Changed {
        account_id: Uuid::parse_str(account).ok()?,
        revision: revision.parse().ok()?,
    })
}
