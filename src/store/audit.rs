//! The audit log's rows: appending events (in the change's unit of work, or as their own
//! statement), listing them, chaining what is unchained, verifying and purging a chain, and the
//! leases that let one replica at a time run a job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Statement, Value,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict},
};
use uuid::Uuid;

use super::entities::{audit_chain, audit_event, lease};
use super::pagination::keyset_after;
use super::{Store, Tx};
use crate::domain::audit::{
    ActorKind, Category, ChainHead, Change, Event, EventActor, GENESIS, Hash, Link, Origin, Target,
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
        seq: Set(None),
        prev_hash: Set(None),
        hash: Set(None),
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

/// An event as stored, with its link once chained.
fn event_of(row: audit_event::Model) -> DomainResult<(Event, Option<Link>)> {
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&row.metadata).map_err(|_| corrupt("metadata"))?;
    let changes: Vec<StoredChange> =
        serde_json::from_str(&row.changes).map_err(|_| corrupt("change list"))?;
    let link = match (row.seq, &row.prev_hash, &row.hash) {
        (Some(seq), Some(prev), Some(hash)) => Some(Link {
            seq,
            prev_hash: unhex(prev),
            hash: unhex(hash),
        }),
        (Some(seq), _, _) => Some(Link {
            seq,
            prev_hash: [0xff; 32],
            hash: [0xff; 32],
        }),
        _ => None,
    };
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
    Ok((event, link))
}

/// The statement that appends `events` (unchained), for a unit of work or a one-statement write.
pub fn append_statement(events: &[Event]) -> Option<InsertStatement> {
    if events.is_empty() {
        return None;
    }
    Some(sea_orm::Insert::many(events.iter().map(model)).into_query())
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

/// How many rows one statement of the chainer updates.
const CHAIN_CHUNK: usize = 500;

impl Tx {
    /// Appends events in this unit of work; the chainer is woken once it commits.
    pub async fn append_audit(&self, events: &[Event]) -> DomainResult<()> {
        let Some(insert) = append_statement(events) else {
            return Ok(());
        };
        let backend = self.conn().get_database_backend();
        self.conn().execute_raw(backend.build(&insert)).await?;
        self.audit_appended();
        Ok(())
    }
}

impl Store {
    /// Appends events as one statement of their own (events that record no other change).
    pub async fn append_audit(&self, events: &[Event]) -> DomainResult<()> {
        let Some(insert) = append_statement(events) else {
            return Ok(());
        };
        self.connection()
            .execute_raw(self.backend().build(&insert))
            .await?;
        self.wake_chainer();
        Ok(())
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
            let micros: i64 = after
                .key
                .parse()
                .map_err(|_| DomainError::internal(anyhow::anyhow!("a page key is no time")))?;
            let time = DateTime::from_timestamp_micros(micros)
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
            .map(|row| event_of(row).map(|(event, _)| event))
            .collect()
    }

    /// Accounts with events still to chain (at most `limit`).
    pub async fn unchained_accounts(&self, limit: u64) -> DomainResult<Vec<Uuid>> {
        let rows = audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::AccountId)
            .filter(audit_event::Column::Seq.is_null())
            .distinct()
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(self.connection())
            .await?;
        Ok(rows)
    }

    /// Chains up to `limit` of the account's unchained events after its head, in id order, and
    /// moves the head on; returns how many it chained. The head row is locked for the unit of
    /// work, so two chainers (two replicas) take turns and never fork the chain; only chainers
    /// and retention take that lock, never a request.
    pub async fn chain_events(&self, account_id: Uuid, limit: u64) -> DomainResult<usize> {
        let tx = self.begin().await?;
        let conn = tx.conn();
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
        let Some(head) = audit_chain::Entity::find_by_id(account_id)
            .lock_exclusive()
            .one(conn)
            .await?
        else {
            return Ok(0);
        };
        let head = head_of(head);
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.is_null())
            .order_by_asc(audit_event::Column::Id)
            .limit(limit)
            .all(conn)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events = rows
            .into_iter()
            .map(|row| event_of(row).map(|(event, _)| event))
            .collect::<DomainResult<Vec<Event>>>()?;
        let (links, new_head) = crate::domain::audit::chain(head, &events);
        let backend = conn.get_database_backend();
        for (events, links) in events.chunks(CHAIN_CHUNK).zip(links.chunks(CHAIN_CHUNK)) {
            conn.execute_raw(link_statement(backend, account_id, events, links))
                .await?;
        }
        audit_chain::Entity::update_many()
            .col_expr(audit_chain::Column::Seq, Expr::value(new_head.seq))
            .col_expr(audit_chain::Column::Hash, Expr::value(hex(&new_head.hash)))
            .filter(audit_chain::Column::AccountId.eq(account_id))
            .exec(conn)
            .await?;
        tx.commit().await?;
        Ok(events.len())
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

    /// An account's chain head (none before its first event is chained).
    pub async fn chain_head(&self, account_id: Uuid) -> DomainResult<Option<ChainHead>> {
        Ok(audit_chain::Entity::find_by_id(account_id)
            .one(self.connection())
            .await?
            .map(head_of))
    }

    /// Chained events of an account after position `after`, in position order.
    pub async fn chained_events(
        &self,
        account_id: Uuid,
        after: i64,
        limit: u64,
    ) -> DomainResult<Vec<(Event, Link)>> {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.gt(after))
            .order_by_asc(audit_event::Column::Seq)
            .limit(limit)
            .all(self.connection())
            .await?;
        let mut chained = Vec::with_capacity(rows.len());
        for row in rows {
            if let (event, Some(link)) = event_of(row)? {
                chained.push((event, link));
            }
        }
        Ok(chained)
    }

    /// How many of an account's events are not chained yet.
    pub async fn unchained_count(&self, account_id: Uuid) -> DomainResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.is_null())
            .count(self.connection())
            .await?)
    }

    /// Deletes, under the chain's lock, the account's oldest chained events up to the first one
    /// at or after `cutoff` (at most `limit` per call), and raises the chain's floor to the last
    /// one deleted; returns how many it deleted.
    pub async fn purge_audit(
        &self,
        account_id: Uuid,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> DomainResult<u64> {
        let tx = self.begin().await?;
        let conn = tx.conn();
        let Some(head) = audit_chain::Entity::find_by_id(account_id)
            .lock_exclusive()
            .one(conn)
            .await?
        else {
            return Ok(0);
        };
        let head = head_of(head);
        let first_kept: Option<Option<i64>> = audit_event::Entity::find()
            .select_only()
            .column_as(audit_event::Column::Seq.min(), "seq")
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.gt(head.floor_seq))
            .filter(audit_event::Column::Time.gte(cutoff))
            .into_tuple()
            .one(conn)
            .await?;
        let Some(through) = crate::domain::audit::purge_through(&head, first_kept.flatten())
            .map(|through| std::cmp::min(through, head.floor_seq + limit))
        else {
            return Ok(0);
        };
        let Some(last) = audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.eq(through))
            .one(conn)
            .await?
        else {
            // The position is missing: the chain is broken, and verification says where.
            return Err(DomainError::internal(anyhow::anyhow!(
                "audit chain of account {account_id} has no event at position {through}"
            )));
        };
        let floor_hash = last.hash.unwrap_or_default();
        let deleted = audit_event::Entity::delete_many()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.lte(through))
            .exec(conn)
            .await?
            .rows_affected;
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

/// One statement setting the links of `events`:
/// `WITH v(id, seq, prev_hash, hash) AS (VALUES ...) UPDATE audit_events SET ... FROM v`.
fn link_statement(
    backend: DbBackend,
    account_id: Uuid,
    events: &[Event],
    links: &[Link],
) -> Statement {
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * 4 + 1);
    let mut n = 0;
    let mut placeholder = || {
        n += 1;
        match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        }
    };
    let mut rows = Vec::with_capacity(events.len());
    for (event, link) in events.iter().zip(links) {
        rows.push(format!(
            "({}, {}, {}, {})",
            placeholder(),
            placeholder(),
            placeholder(),
            placeholder()
        ));
        values.push(event.id.into());
        values.push(link.seq.into());
        values.push(hex(&link.prev_hash).into());
        values.push(hex(&link.hash).into());
    }
    let account = placeholder();
    values.push(account_id.into());
    let sql = format!(
        "WITH v(id, seq, prev_hash, hash) AS (VALUES {}) \
         UPDATE audit_events SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash \
         FROM v WHERE audit_events.account_id = {account} AND audit_events.id = v.id",
        rows.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, values)
}
