//! The audit log's rows: appending events (in the change's unit of work, or as their own
//! statement) with their place in the chainer's queue, listing them, linking the queued ones
//! into their chains, reading and purging a chain, and the leases that let one replica at a time
//! run a job. Events are never updated: a link is a row of its own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, SubQueryStatement},
};
use uuid::Uuid;

use super::entities::{audit_chain, audit_event, audit_link, audit_pending, lease};
use super::pagination::keyset_after;
use super::{Store, Tx};
use crate::domain::audit::{
    ActorKind, Category, ChainHead, Change, Event, EventActor, GENESIS, Hash, Link, Origin, Queued,
    Target, digest,
};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::page::After;

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored hash, or a hash no event has when the text was tampered with (verification then
/// reports the link as broken instead of failing).
fn unhex(text: &str) -> Hash {
    let mut hash = [0xff; 32];
    if text.len() == 64 {
        for (i, byte) in hash.iter_mut().enumerate() {
            match u8::from_str_radix(&text[2 * i..2 * i + 2], 16) {
                Ok(b) => *byte = b,
                Err(_) => return [0xff; 32],
            }
        }
    }
    hash
}

fn corrupt(what: &str) -> DomainError {
    DomainError::internal(anyhow::anyhow!(
        "a stored audit event has an unknown {what}"
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredChange {
    field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

fn model(event: &Event) -> audit_event::ActiveModel {
    let (target_type, target_id, target_display) = match &event.target {
        Some(t) => (t.kind.clone(), t.id.clone(), t.display.clone()),
        None => (String::new(), String::new(), String::new()),
    };
    let changes: Vec<StoredChange> = event
        .changes
        .iter()
        .map(|c| StoredChange {
            field: c.field.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
        })
        .collect();
    audit_event::ActiveModel {
        account_id: Set(event.account_id),
        id: Set(event.id),
        category: Set(event.category.number()),
        action: Set(event.action.clone()),
        actor_type: Set(event.actor.kind.number()),
        actor_id: Set(event.actor.id.clone()),
        actor_display: Set(event.actor.display.clone()),
        target_type: Set(target_type),
        target_id: Set(target_id),
        target_display: Set(target_display),
        ip_address: Set(event.origin.ip_address.clone()),
        user_agent: Set(event.origin.user_agent.clone()),
        request_id: Set(event.origin.request_id.clone()),
        metadata: Set(serde_json::to_string(&event.metadata).unwrap_or_else(|_| "{}".into())),
        changes: Set(serde_json::to_string(&changes).unwrap_or_else(|_| "[]".into())),
        time: Set(event.time),
        source: Set(event.source.clone()),
    }
}

/// An event as stored.
fn event_of(row: audit_event::Model) -> DomainResult<Event> {
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&row.metadata).map_err(|_| corrupt("metadata"))?;
    let changes: Vec<StoredChange> =
        serde_json::from_str(&row.changes).map_err(|_| corrupt("change list"))?;
    let event = Event {
        id: row.id,
        account_id: row.account_id,
        category: Category::from_number(row.category).ok_or_else(|| corrupt("category"))?,
        action: row.action,
        actor: EventActor {
            kind: ActorKind::from_number(row.actor_type).ok_or_else(|| corrupt("actor type"))?,
            id: row.actor_id,
            display: row.actor_display,
        },
        target: (!row.target_type.is_empty()).then_some(Target {
            kind: row.target_type,
            id: row.target_id,
            display: row.target_display,
        }),
        origin: Origin {
            request_id: row.request_id,
            ip_address: row.ip_address,
            user_agent: row.user_agent,
        },
        metadata,
        changes: changes
            .into_iter()
            .map(|c| Change {
                field: c.field,
                before: c.before,
                after: c.after,
            })
            .collect(),
        time: row.time,
        source: row.source,
    };
    Ok(event)
}

/// The writes that append `events`: the events, and their places in the chainer's queue. Run
/// in one unit of work (or as CTEs of one statement): an event is never left out of the queue.
pub fn append_writes(events: &[Event]) -> Vec<InsertStatement> {
    if events.is_empty() {
        return Vec::new();
    }
    let pending = events.iter().map(|event| audit_pending::ActiveModel {
        account_id: Set(event.account_id),
        event_id: Set(event.id),
        digest: Set(hex(&digest(event))),
    });
    vec![
        sea_orm::Insert::many(events.iter().map(model)).into_query(),
        sea_orm::Insert::many(pending).into_query(),
    ]
}

/// What a list of events is filtered by (all combine with AND).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub account_id: Uuid,
    /// The categories to include (never empty when listing).
    pub categories: Vec<Category>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub target_type: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// The most ids in one `IN (...)` list, and the most links in one insert.
const CHUNK: usize = 1000;

/// Runs `writes` on `conn`: one statement on PostgreSQL, in order on SQLite.
async fn run_writes(conn: &impl ConnectionTrait, writes: Vec<InsertStatement>) -> DomainResult<()> {
    let backend = conn.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres {
        let writes = writes.into_iter().map(SubQueryStatement::from).collect();
        conn.execute_raw(super::combined(backend, writes)).await?;
    } else {
        for write in &writes {
            conn.execute_raw(backend.build(write)).await?;
        }
    }
    Ok(())
}

impl Tx {
    /// Appends events in this unit of work; the chainer is woken once it commits.
    pub async fn append_audit(&self, events: &[Event]) -> DomainResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        run_writes(self.conn(), append_writes(events)).await?;
        self.audit_appended();
        Ok(())
    }
}

/// The events of `account_id` with these ids, by id.
async fn events_by_id(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    ids: &[Uuid],
) -> DomainResult<BTreeMap<Uuid, Event>> {
    let mut found = BTreeMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        for row in rows {
            let event = event_of(row)?;
            found.insert(event.id, event);
        }
    }
    Ok(found)
}

/// The account's chain head, locked for the unit of work (created at the genesis if missing).
async fn lock_head(conn: &DatabaseTransaction, account_id: Uuid) -> DomainResult<ChainHead> {
    audit_chain::Entity::insert(audit_chain::ActiveModel {
        account_id: Set(account_id),
        seq: Set(0),
        hash: Set(hex(&GENESIS)),
        floor_seq: Set(0),
        floor_hash: Set(hex(&GENESIS)),
    })
    .on_conflict(
        OnConflict::column(audit_chain::Column::AccountId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    audit_chain::Entity::find_by_id(account_id)
        .lock_exclusive()
        .one(conn)
        .await?
        .map(head_of)
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("an audit chain head vanished")))
}

fn link_of(row: audit_link::Model) -> Link {
    Link {
        seq: row.seq,
        event_id: row.event_id,
        prev_hash: unhex(&row.prev_hash),
        hash: unhex(&row.hash),
    }
}

impl Store {
    /// Appends events on their own (events that record no other change).
    pub async fn append_audit(&self, events: &[Event]) -> DomainResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.begin().await?;
        tx.append_audit(events).await?;
        tx.commit().await
    }

    /// Events newest first (time, then id), after `after` (a time in microseconds and an id).
    pub async fn audit_events(
        &self,
        filter: &EventFilter,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<Event>> {
        use audit_event::Column as C;
        let categories: Vec<i16> = filter.categories.iter().map(|c| c.number()).collect();
        let mut query = audit_event::Entity::find()
            .filter(C::AccountId.eq(filter.account_id))
            .filter(C::Category.is_in(categories));
        if let Some(actor_id) = &filter.actor_id {
            query = query.filter(C::ActorId.eq(actor_id.as_str()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(C::Action.eq(action.as_str()));
        }
        if let Some(target_id) = &filter.target_id {
            query = query.filter(C::TargetId.eq(target_id.as_str()));
        }
        if let Some(target_type) = &filter.target_type {
            query = query.filter(C::TargetType.eq(target_type.as_str()));
        }
        if let Some(start) = filter.start_time {
            query = query.filter(C::Time.gte(start));
        }
        if let Some(end) = filter.end_time {
            query = query.filter(C::Time.lt(end));
        }
        if let Some(after) = after {
            let time = after
                .key
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| DomainError::internal(anyhow::anyhow!("a page key is no time")))?;
            query = query.filter(keyset_after(C::Time, C::Id, time, after.id, true));
        }
        query
            .order_by_desc(C::Time)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(event_of)
            .collect()
    }

    /// Accounts with events still to link (at most `limit`).
    pub async fn unchained_accounts(&self, limit: u64) -> DomainResult<Vec<Uuid>> {
        Ok(audit_pending::Entity::find()
            .select_only()
            .column(audit_pending::Column::AccountId)
            .distinct()
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(self.connection())
            .await?)
    }

    /// Links up to `limit` of the account's queued events (those after event id `after`, when
    /// given) after its head, in id order, from the digests they were queued with (the events
    /// are not read), and moves the head on; returns how many it linked and the last one's id. The head row is locked for the unit of
    /// work, so two chainers (two replicas) take turns and never fork the chain; only chainers
    /// and retention take that lock, never a request.
    pub async fn chain_events(
        &self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> DomainResult<(usize, Option<Uuid>)> {
        let tx = self.begin().await?;
        let conn = tx.conn();
        let head = lock_head(conn, account_id).await?;
        let mut query =
            audit_pending::Entity::find().filter(audit_pending::Column::AccountId.eq(account_id));
        if let Some(after) = after {
            query = query.filter(audit_pending::Column::EventId.gt(after));
        }
        let queued: Vec<Queued> = query
            .order_by_asc(audit_pending::Column::EventId)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(|row| Queued {
                event_id: row.event_id,
                digest: unhex(&row.digest),
            })
            .collect();
        let Some(last) = queued.last().map(|q| q.event_id) else {
            return Ok((0, None));
        };
        let (links, new_head) = crate::domain::audit::chain(head, &queued);
        for chunk in links.chunks(CHUNK) {
            audit_link::Entity::insert_many(chunk.iter().map(|link| audit_link::ActiveModel {
                account_id: Set(account_id),
                seq: Set(link.seq),
                event_id: Set(link.event_id),
                prev_hash: Set(hex(&link.prev_hash)),
                hash: Set(hex(&link.hash)),
            }))
            .exec_without_returning(conn)
            .await?;
        }
        for chunk in queued.chunks(CHUNK) {
            audit_pending::Entity::delete_many()
                .filter(audit_pending::Column::AccountId.eq(account_id))
                .filter(audit_pending::Column::EventId.is_in(chunk.iter().map(|q| q.event_id)))
                .exec(conn)
                .await?;
        }
        audit_chain::Entity::update_many()
            .col_expr(audit_chain::Column::Seq, Expr::value(new_head.seq))
            .col_expr(audit_chain::Column::Hash, Expr::value(hex(&new_head.hash)))
            .filter(audit_chain::Column::AccountId.eq(account_id))
            .exec(conn)
            .await?;
        tx.commit().await?;
        Ok((queued.len(), Some(last)))
    }

    /// The accounts that have a chain, in id order, after `after`.
    pub async fn audit_chains(&self, after: Option<Uuid>, limit: u64) -> DomainResult<Vec<Uuid>> {
        let mut query = audit_chain::Entity::find()
            .select_only()
            .column(audit_chain::Column::AccountId)
            .order_by_asc(audit_chain::Column::AccountId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(audit_chain::Column::AccountId.gt(after));
        }
        Ok(query.into_tuple::<Uuid>().all(self.connection()).await?)
    }

    /// An account's chain head (none before its first event is linked).
    pub async fn chain_head(&self, account_id: Uuid) -> DomainResult<Option<ChainHead>> {
        Ok(audit_chain::Entity::find_by_id(account_id)
            .one(self.connection())
            .await?
            .map(head_of))
    }

    /// Links of an account after position `after` and up to `through`, in position order, each
    /// with its event (`None` when the event is gone).
    pub async fn chained_events(
        &self,
        account_id: Uuid,
        (after, through): (i64, i64),
        limit: u64,
    ) -> DomainResult<Vec<(Link, Option<Event>)>> {
        let links: Vec<Link> = audit_link::Entity::find()
            .filter(audit_link::Column::AccountId.eq(account_id))
            .filter(audit_link::Column::Seq.gt(after))
            .filter(audit_link::Column::Seq.lte(through))
            .order_by_asc(audit_link::Column::Seq)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(link_of)
            .collect();
        let ids: Vec<Uuid> = links.iter().map(|link| link.event_id).collect();
        let mut events = events_by_id(self.connection(), account_id, &ids).await?;
        Ok(links
            .into_iter()
            .map(|link| {
                let event = events.remove(&link.event_id);
                (link, event)
            })
            .collect())
    }

    /// How many of an account's events are not linked yet.
    pub async fn unchained_count(&self, account_id: Uuid) -> DomainResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(audit_pending::Entity::find()
            .filter(audit_pending::Column::AccountId.eq(account_id))
            .count(self.connection())
            .await?)
    }

    /// Deletes, under the chain's lock, the account's oldest linked events (at most `limit`)
    /// up to the first one at or after `cutoff`, with their links, and raises the chain's floor to
    /// the last one deleted; returns how many events it deleted.
    pub async fn purge_audit(
        &self,
        account_id: Uuid,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> DomainResult<u64> {
        let tx = self.begin().await?;
        let conn = tx.conn();
        // No head: nothing of this account was ever linked (and none is made here).
        let Some(head) = audit_chain::Entity::find_by_id(account_id)
            .lock_exclusive()
            .one(conn)
            .await?
            .map(head_of)
        else {
            return Ok(0);
        };
        let links: Vec<Link> = audit_link::Entity::find()
            .filter(audit_link::Column::AccountId.eq(account_id))
            .filter(audit_link::Column::Seq.gt(head.floor_seq))
            .order_by_asc(audit_link::Column::Seq)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(link_of)
            .collect();
        let ids: Vec<Uuid> = links.iter().map(|link| link.event_id).collect();
        let events = events_by_id(conn, account_id, &ids).await?;
        // A link whose event is gone stops the purge there: verification reports it.
        let times: Vec<(i64, DateTime<Utc>)> = links
            .iter()
            .map_while(|link| events.get(&link.event_id).map(|e| (link.seq, e.time)))
            .collect();
        let Some(through) = crate::domain::audit::purge_through(head.floor_seq, &times, cutoff)
        else {
            return Ok(0);
        };
        let gone: Vec<&Link> = links.iter().filter(|link| link.seq <= through).collect();
        let floor_hash = gone.last().map(|link| hex(&link.hash)).unwrap_or_default();
        let mut deleted = 0;
        for chunk in gone.chunks(CHUNK) {
            deleted += audit_event::Entity::delete_many()
                .filter(audit_event::Column::AccountId.eq(account_id))
                .filter(audit_event::Column::Id.is_in(chunk.iter().map(|link| link.event_id)))
                .exec(conn)
                .await?
                .rows_affected;
        }
        audit_link::Entity::delete_many()
            .filter(audit_link::Column::AccountId.eq(account_id))
            .filter(audit_link::Column::Seq.lte(through))
            .exec(conn)
            .await?;
        audit_chain::Entity::update_many()
            .col_expr(audit_chain::Column::FloorSeq, Expr::value(through))
            .col_expr(audit_chain::Column::FloorHash, Expr::value(floor_hash))
            .filter(audit_chain::Column::AccountId.eq(account_id))
            .exec(conn)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Takes (or keeps) the lease `name` for `holder` until `until`, unless another holder's
    /// lease is still running at `now`. True when `holder` has it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let conn = self.connection();
        lease::Entity::insert(lease::ActiveModel {
            name: Set(name.to_owned()),
            holder: Set(holder),
            expires_at: Set(until),
        })
        .on_conflict(
            OnConflict::column(lease::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        let taken = lease::Entity::update_many()
            .col_expr(lease::Column::Holder, Expr::value(holder))
            .col_expr(lease::Column::ExpiresAt, Expr::value(until))
            .filter(lease::Column::Name.eq(name))
            .filter(
                lease::Column::Holder
                    .eq(holder)
                    .or(lease::Column::ExpiresAt.lt(now)),
            )
            .exec(conn)
            .await?
            .rows_affected;
        Ok(taken == 1)
    }
}

fn head_of(row: audit_chain::Model) -> ChainHead {
    ChainHead {
        seq: row.seq,
        hash: unhex(&row.hash),
        floor_seq: row.floor_seq,
        floor_hash: unhex(&row.floor_hash),
    }
}
