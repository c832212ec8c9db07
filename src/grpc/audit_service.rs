//! `identity.v1.AuditService`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::app::audit::{Audit, EventQuery, Recorded};
use crate::clock::SharedClock;
use crate::domain::audit::{self as rules, ActorKind, Category, Change, Event, EventActor, Target};
use crate::domain::error::Violations;
use crate::domain::validate;
use crate::proto::{self, audit_service_server::AuditService};

use super::authn::actor;
use super::convert::{self, timestamp};

pub struct AuditApi {
    audit: Audit,
    clock: SharedClock,
}

impl AuditApi {
    pub fn new(app: &App) -> Self {
        Self {
            audit: app.audit.clone(),
            clock: app.clock.clone(),
        }
    }
}

pub fn category_to_proto(category: Category) -> proto::AuditCategory {
    match category {
        Category::Account => proto::AuditCategory::Account,
        Category::UserManagement => proto::AuditCategory::UserManagement,
        Category::Authentication => proto::AuditCategory::Authentication,
        Category::Access => proto::AuditCategory::Access,
        Category::MediaLibrary => proto::AuditCategory::MediaLibrary,
    }
}

fn actor_kind_to_proto(kind: ActorKind) -> proto::ActorType {
    match kind {
        ActorKind::User => proto::ActorType::User,
        ActorKind::Service => proto::ActorType::Service,
        ActorKind::System => proto::ActorType::System,
        ActorKind::Anonymous => proto::ActorType::Anonymous,
    }
}

pub fn event(event: &Event) -> proto::AuditEvent {
    proto::AuditEvent {
        id: event.id.to_string(),
        account_id: event.account_id.to_string(),
        category: category_to_proto(event.category) as i32,
        action: event.action.clone(),
        actor: Some(proto::AuditActor {
            r#type: actor_kind_to_proto(event.actor.kind) as i32,
            id: event.actor.id.clone(),
            display: event.actor.display.clone(),
        }),
        target: event.target.as_ref().map(|t| proto::AuditTarget {
            r#type: t.kind.clone(),
            id: t.id.clone(),
            display: t.display.clone(),
        }),
        ip_address: event.origin.ip_address.clone(),
        user_agent: event.origin.user_agent.clone(),
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        time: Some(timestamp(event.time)),
        source: event.source.clone(),
        changes: event
            .changes
            .iter()
            .map(|c| proto::AuditChange {
                field: c.field.clone(),
                before: c.before.clone(),
                after: c.after.clone(),
            })
            .collect(),
        request_id: event.origin.request_id.clone(),
    }
}

/// A time of the API, or a description of what is wrong with it.
fn time_of(value: &Timestamp) -> Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(value.nanos).map_err(|_| "must be a valid timestamp".to_owned())?;
    DateTime::from_timestamp(value.seconds, nanos)
        .ok_or_else(|| "must be a valid timestamp".to_owned())
}

fn category_filter(value: i32) -> Result<Option<Category>, String> {
    match proto::AuditCategory::try_from(value) {
        Ok(proto::AuditCategory::Unspecified) => Ok(None),
        Ok(category) => Ok(Category::from_number(category as i16)),
        Err(_) => Err("must be an AuditCategory".to_owned()),
    }
}

/// One recorded event, checked; every problem is a violation `events[i].<field>`.
/// `now` bounds the events' times (at most 5 minutes ahead, 7 days back).
fn recorded(
    v: &mut Violations,
    i: usize,
    e: proto::AuditEvent,
    now: DateTime<Utc>,
) -> Option<Recorded> {
    let at = |field: &str| format!("events[{i}].{field}");
    if e.category != proto::AuditCategory::MediaLibrary as i32 {
        v.add(
            at("category"),
            "must be AUDIT_CATEGORY_MEDIA_LIBRARY: the other categories are written by the identity service",
        );
    }
    let action = v.check_at(|| at("action"), rules::action_name(&e.action));
    let actor = match e.actor {
        None => {
            v.add(at("actor"), "is required");
            None
        }
        Some(actor) => {
            let kind = match proto::ActorType::try_from(actor.r#type) {
                Ok(proto::ActorType::User) => Some(ActorKind::User),
                Ok(proto::ActorType::Service) => Some(ActorKind::Service),
                Ok(proto::ActorType::System) => Some(ActorKind::System),
                Ok(proto::ActorType::Anonymous) => Some(ActorKind::Anonymous),
                _ => {
                    v.add(
                        at("actor.type"),
                        "is required: USER, SERVICE, SYSTEM or ANONYMOUS",
                    );
                    None
                }
            };
            if matches!(kind, Some(ActorKind::User | ActorKind::Service)) && actor.id.is_empty() {
                v.add(at("actor.id"), "is required for a user or service actor");
            }
            let id = v.check_at(|| at("actor.id"), rules::label(&actor.id));
            let display = v.check_at(|| at("actor.display"), rules::label(&actor.display));
            match (kind, id, display) {
                (Some(kind), Some(id), Some(display)) => Some(EventActor { kind, id, display }),
                _ => None,
            }
        }
    };
    let target = match e.target {
        None => Some(None),
        Some(target) => {
            let kind = v.check_at(|| at("target.type"), rules::key_name(&target.r#type));
            let id = v.check_at(|| at("target.id"), rules::label(&target.id));
            let display = v.check_at(|| at("target.display"), rules::label(&target.display));
            match (kind, id, display) {
                (Some(kind), Some(id), Some(display)) => Some(Some(Target { kind, id, display })),
                _ => None,
            }
        }
    };
    let ip_address = v.check_at(|| at("ip_address"), rules::ip_address(&e.ip_address));
    let metadata: std::collections::BTreeMap<String, String> = e.metadata.into_iter().collect();
    for (key, problem) in rules::metadata_problems(&metadata) {
        if key.is_empty() {
            v.add(at("metadata"), problem);
        } else {
            v.add(at(&format!("metadata[{key}]")), problem);
        }
    }
    if e.changes.len() > rules::MAX_CHANGES {
        v.add(
            at("changes"),
            format!("must have at most {} entries", rules::MAX_CHANGES),
        );
    }
    let mut changes = Vec::with_capacity(e.changes.len());
    for (j, change) in e.changes.into_iter().enumerate() {
        let field = at(&format!("changes[{j}]"));
        if change.field.is_empty()
            || change.field.len() > 128
            || !change
                .field
                .split('.')
                .all(|part| rules::key_name(part).is_ok())
        {
            v.add(
                format!("{field}.field"),
                "must be a dotted path of [a-z0-9_] names",
            );
        }
        for (name, value) in [("before", &change.before), ("after", &change.after)] {
            if value
                .as_ref()
                .is_some_and(|value| value.chars().count() > rules::MAX_METADATA_VALUE_CHARS)
            {
                v.add(
                    format!("{field}.{name}"),
                    format!(
                        "must be at most {} characters",
                        rules::MAX_METADATA_VALUE_CHARS
                    ),
                );
            }
        }
        changes.push(Change {
            field: change.field,
            before: change.before,
            after: change.after,
        });
    }
    let time = match &e.time {
        None => Some(None),
        Some(time) => v
            .check_at(
                || at("time"),
                time_of(time).and_then(|t| rules::recorded_time(Some(t), now)),
            )
            .map(Some),
    };
    if !v.is_empty() {
        return None;
    }
    Some(Recorded {
        action: action?,
        actor: actor?,
        target: target?,
        ip_address: ip_address?,
        user_agent: rules::clip(&e.user_agent, rules::MAX_USER_AGENT_CHARS),
        metadata,
        changes,
        time: time?,
    })
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let size = convert::page_size(&mut v, req.page_size);
        let category = v.check("category", category_filter(req.category));
        let start_time = match &req.start_time {
            None => Some(None),
            Some(t) => v.check("start_time", time_of(t)).map(Some),
        };
        let end_time = match &req.end_time {
            None => Some(None),
            Some(t) => v.check("end_time", time_of(t)).map(Some),
        };
        let (account_id, size, category, start_time, end_time) =
            v.values((account_id, size, category, start_time, end_time))?;
        let query = EventQuery {
            account_id,
            category,
            actor_id: req.actor_id,
            action: req.action,
            target_id: req.target_id,
            target_type: req.target_type,
            start_time,
            end_time,
        };
        let page = self
            .audit
            .list(&actor, query, size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            events: page.items.iter().map(event).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn record_audit_events(
        &self,
        request: Request<proto::RecordAuditEventsRequest>,
    ) -> Result<Response<proto::RecordAuditEventsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        if req.events.is_empty() || req.events.len() > rules::MAX_BATCH {
            v.add(
                "events",
                format!(
                    "has {} events; 1 to {} per call",
                    req.events.len(),
                    rules::MAX_BATCH
                ),
            );
        }
        let mut events = Vec::with_capacity(req.events.len().min(rules::MAX_BATCH));
        if req.events.len() <= rules::MAX_BATCH {
            let now = self.clock.now();
            for (i, e) in req.events.into_iter().enumerate() {
                if let Some(event) = recorded(&mut v, i, e, now) {
                    events.push(event);
                }
            }
        }
        let (account_id, request_id) = v.values((account_id, request_id))?;
        let ids = self
            .audit
            .record(&actor, account_id, events, request_id)
            .await?;
        Ok(Response::new(proto::RecordAuditEventsResponse {
            event_ids: ids.iter().map(ToString::to_string).collect(),
        }))
    }
}
