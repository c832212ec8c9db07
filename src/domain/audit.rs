//! The audit log: what an event is, who may see which, the rules for events the DAM records, and
//! the hash chain that makes each account's log tamper-evident.
//!
//! Every event belongs to one account's chain (the service's own events, such as a failed login
//! for an address no person has, to the chain of the nil account). An event is appended in the
//! unit of work of the change it records, unchained; the chainer then gives it the next position
//! (`seq`) of its account, the hash of its predecessor and its own hash,
//! `SHA-256(prev_hash | seq | canonical event)`. Retention deletes a prefix of a chain and keeps
//! the last deleted position and hash as the chain's floor, so what remains still verifies.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::actor::Actor;
use super::roles::{Permission, Role};

/// A link's hash.
pub type Hash = [u8; 32];

/// The hash before an account's first event.
pub const GENESIS: Hash = [0; 32];

/// The chain of events that belong to no account (a failed login for an unknown address).
pub const SERVICE_CHAIN: Uuid = Uuid::nil();

/// The `source` of the events this service writes.
pub const OWN_SOURCE: &str = "identity";

/// The most events one RecordAuditEvents call appends.
pub const MAX_BATCH: usize = 500;
pub const MAX_METADATA_ENTRIES: usize = 32;
pub const MAX_METADATA_VALUE_CHARS: usize = 1024;
pub const MAX_CHANGES: usize = 32;
pub const MAX_LABEL_CHARS: usize = 256;
pub const MAX_USER_AGENT_CHARS: usize = 512;
/// How far in the future and the past a recorded event's time may be.
pub const MAX_FUTURE: Duration = Duration::minutes(5);
pub const MAX_PAST: Duration = Duration::days(7);

/// Category of an event (the API's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Account = 1,
    UserManagement = 2,
    Authentication = 3,
    Access = 4,
    MediaLibrary = 5,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Account,
        Category::UserManagement,
        Category::Authentication,
        Category::Access,
        Category::MediaLibrary,
    ];

    pub fn number(self) -> i16 {
        self as i16
    }

    pub fn from_number(n: i16) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.number() == n)
    }
}

/// Kind of actor (the API's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User = 1,
    Service = 2,
    System = 3,
    Anonymous = 4,
}

impl ActorKind {
    pub fn number(self) -> i16 {
        self as i16
    }

    pub fn from_number(n: i16) -> Option<ActorKind> {
        [
            ActorKind::User,
            ActorKind::Service,
            ActorKind::System,
            ActorKind::Anonymous,
        ]
        .into_iter()
        .find(|k| k.number() == n)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventActor {
    pub kind: ActorKind,
    /// Person id or service name; empty for the system and anonymous callers.
    pub id: String,
    /// Email or service name at the time.
    pub display: String,
}

impl EventActor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: String::new(),
            display: String::new(),
        }
    }

    pub fn anonymous() -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: String::new(),
            display: String::new(),
        }
    }

    /// A person, by id and email.
    pub fn person(id: Uuid, email: &str) -> Self {
        Self {
            kind: ActorKind::User,
            id: id.to_string(),
            display: email.to_owned(),
        }
    }

    /// The caller of a request.
    pub fn of(actor: &Actor) -> Self {
        match actor {
            Actor::Anonymous => Self::anonymous(),
            Actor::Service(service) => Self {
                kind: ActorKind::Service,
                id: service.name.clone(),
                display: service.name.clone(),
            },
            Actor::Person(person) => Self {
                kind: ActorKind::User,
                id: person.user_id.to_string(),
                display: clip(&person.email, MAX_LABEL_CHARS),
            },
        }
    }
}

/// What it was done to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lowercase kind: account, user, group, share, session, file...
    pub kind: String,
    pub id: String,
    pub display: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString, display: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_string(),
            display: clip(display, MAX_LABEL_CHARS),
        }
    }
}

/// One changed field: its value before and after (`None` where it had or has none). Never a
/// secret or a hash: a password change is an event without the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    pub fn new(field: &str, before: Option<impl ToString>, after: Option<impl ToString>) -> Self {
        Self {
            field: field.to_owned(),
            before: before.map(|v| v.to_string()),
            after: after.map(|v| v.to_string()),
        }
    }

    /// The change of a field from `before` to `after`, or nothing when they are equal.
    pub fn of<T: ToString + PartialEq>(field: &str, before: T, after: T) -> Option<Self> {
        (before != after).then(|| Self::new(field, Some(before), Some(after)))
    }
}

/// Where a request came from: the transport's knowledge, attached to every event it causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The caller's `x-request-id`, or one the service made.
    pub request_id: String,
    /// The client's address (IPv4 or IPv6 text form); empty when unknown.
    pub ip_address: String,
    /// The client's User-Agent, at most 512 characters; empty when unknown.
    pub user_agent: String,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    pub account_id: Uuid,
    pub category: Category,
    pub action: String,
    pub actor: EventActor,
    pub target: Option<Target>,
    pub origin: Origin,
    pub metadata: BTreeMap<String, String>,
    pub changes: Vec<Change>,
    /// Whole microseconds (what both databases keep).
    pub time: DateTime<Utc>,
    pub source: String,
}

/// What an event of this service says, before the use case's unit of work gives it its origin,
/// account and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub action: &'static str,
    pub actor: EventActor,
    pub target: Option<Target>,
    pub changes: Vec<Change>,
    pub metadata: BTreeMap<String, String>,
}

impl Draft {
    pub fn new(action: &'static str, actor: EventActor) -> Self {
        Self {
            action,
            actor,
            target: None,
            changes: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    pub fn by(action: &'static str, actor: &Actor) -> Self {
        Self::new(action, EventActor::of(actor))
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn changes(mut self, changes: impl IntoIterator<Item = Change>) -> Self {
        self.changes.extend(changes);
        self
    }

    pub fn meta(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    /// The event, as this service writes it.
    pub fn into_event(self, account_id: Uuid, origin: &Origin, now: DateTime<Utc>) -> Event {
        Event {
            id: Uuid::now_v7(),
            account_id,
            category: category_of(self.action),
            action: self.action.to_owned(),
            actor: self.actor,
            target: self.target,
            origin: origin.clone(),
            metadata: self.metadata,
            changes: self.changes,
            time: whole_micros(now),
            source: OWN_SOURCE.to_owned(),
        }
    }
}

/// The actions this service records, by category. The DAM's actions are its own.
pub mod action {
    pub const ACCOUNT_CREATED: &str = "account.created";
    pub const ACCOUNT_SETTINGS_CHANGED: &str = "account.settings_changed";
    pub const ACCOUNT_LIMITS_CHANGED: &str = "account.limits_changed";

    pub const USER_INVITED: &str = "user.invited";
    pub const USER_ROLE_CHANGED: &str = "user.role_changed";
    pub const USER_UPDATED: &str = "user.updated";
    pub const USER_DISABLED: &str = "user.disabled";
    pub const USER_ENABLED: &str = "user.enabled";
    pub const USER_REMOVED: &str = "user.removed";
    pub const USER_INVITATION_RESENT: &str = "user.invitation_resent";
    pub const USER_INVITATION_ACCEPTED: &str = "user.invitation_accepted";
    pub const USER_PROFILE_UPDATED: &str = "user.profile_updated";
    pub const GROUP_CREATED: &str = "group.created";
    pub const GROUP_UPDATED: &str = "group.updated";
    pub const GROUP_DELETED: &str = "group.deleted";
    pub const GROUP_MEMBERS_ADDED: &str = "group.members_added";
    pub const GROUP_MEMBERS_REMOVED: &str = "group.members_removed";

    pub const LOGIN_SUCCEEDED: &str = "auth.login_succeeded";
    pub const LOGIN_FAILED: &str = "auth.login_failed";
    pub const LOGIN_THROTTLED: &str = "auth.login_throttled";
    pub const MFA_CODE_PASSED: &str = "auth.mfa_code_passed";
    pub const MFA_CODE_FAILED: &str = "auth.mfa_code_failed";
    pub const MFA_ENABLED: &str = "auth.mfa_enabled";
    pub const MFA_DISABLED: &str = "auth.mfa_disabled";
    pub const PASSWORD_CHANGED: &str = "auth.password_changed";
    pub const PASSWORD_RESET: &str = "auth.password_reset";
    pub const SESSION_REVOKED: &str = "auth.session_revoked";

    pub const SHARE_CREATED: &str = "share.created";
    pub const SHARE_CHANGED: &str = "share.changed";
    pub const SHARE_REVOKED: &str = "share.revoked";
}

/// The category of one of this service's actions, by its prefix.
pub fn category_of(action: &str) -> Category {
    match action.split_once('.').map_or(action, |(prefix, _)| prefix) {
        "account" | "sso" => Category::Account,
        "user" | "group" => Category::UserManagement,
        "auth" => Category::Authentication,
        "share" => Category::Access,
        _ => Category::MediaLibrary,
    }
}

/// The categories a person of `role` sees: administrators all, other holders of `audit.view`
/// the Media Library only, everyone else none.
pub fn visible_to(role: Role) -> &'static [Category] {
    if role == Role::AccountAdministrator {
        &Category::ALL
    } else if role.has(Permission::AuditView) {
        &[Category::MediaLibrary]
    } else {
        &[]
    }
}

/// `time` to whole microseconds, as both databases store it.
pub fn whole_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// At most `max` characters of `text`.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

// Rules for the events the DAM records.

/// A dotted lowercase verb: 1 to 128 characters of `[a-z0-9_.]`.
pub fn action_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.len() > 128
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err("must be 1 to 128 characters of [a-z0-9_.], e.g. \"file.deleted\"".to_owned());
    }
    Ok(value.to_owned())
}

/// A target type or metadata key: 1 to 64 characters of `[a-z0-9_]`.
pub fn key_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 64 {
        return Err("must be 1 to 64 characters of [a-z0-9_]".to_owned());
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("must be 1 to 64 characters of [a-z0-9_]".to_owned());
    }
    Ok(value.to_owned())
}

/// A label of at most 256 characters.
pub fn label(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("must be at most {MAX_LABEL_CHARS} characters"));
    }
    Ok(value.to_owned())
}

/// An IP address in text form, or empty.
pub fn ip_address(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    value
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| "must be an IPv4 or IPv6 address".to_owned())
}

/// A recorded event's time: unset means `now`; at most 5 minutes ahead and 7 days back.
pub fn recorded_time(
    value: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let time = value.unwrap_or(now);
    if time > now + MAX_FUTURE {
        return Err("must be at most 5 minutes in the future".to_owned());
    }
    if time < now - MAX_PAST {
        return Err("must be at most 7 days in the past".to_owned());
    }
    Ok(whole_micros(time))
}

/// Metadata: at most 32 entries, keys of `[a-z0-9_]`, values of at most 1,024 characters. Each
/// problem is `(key or "", description)`.
pub fn metadata_problems(metadata: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if metadata.len() > MAX_METADATA_ENTRIES {
        problems.push((
            String::new(),
            format!("must have at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (key, value) in metadata {
        if let Err(description) = key_name(key) {
            problems.push((key.clone(), format!("key {description}")));
        } else if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            problems.push((
                key.clone(),
                format!("must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    problems
}

// The chain.

/// Where a chain stands: its last position and hash, and the floor retention left (the last
/// deleted position and its hash; 0 and `GENESIS` before any deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Hash,
    pub floor_seq: i64,
    pub floor_hash: Hash,
}

impl ChainHead {
    pub fn new() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
            floor_seq: 0,
            floor_hash: GENESIS,
        }
    }
}

impl Default for ChainHead {
    fn default() -> Self {
        Self::new()
    }
}

/// An event's place in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub event_id: Uuid,
    pub prev_hash: Hash,
    pub hash: Hash,
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn optional(hasher: &mut Sha256, value: Option<&str>) {
    match value {
        None => hasher.update([0]),
        Some(value) => {
            hasher.update([1]);
            field(hasher, value.as_bytes());
        }
    }
}

/// The digest of an event's content: every field, length-prefixed, in a fixed order, so no two
/// different events share an encoding. Computed when the event is written, and again by
/// verification from what is stored.
pub fn digest(event: &Event) -> Hash {
    let mut h = Sha256::new();
    h.update(b"identity.audit.event.v1");
    h.update(event.id.as_bytes());
    h.update(event.account_id.as_bytes());
    h.update(event.category.number().to_be_bytes());
    field(&mut h, event.action.as_bytes());
    h.update(event.actor.kind.number().to_be_bytes());
    field(&mut h, event.actor.id.as_bytes());
    field(&mut h, event.actor.display.as_bytes());
    match &event.target {
        None => h.update([0]),
        Some(target) => {
            h.update([1]);
            field(&mut h, target.kind.as_bytes());
            field(&mut h, target.id.as_bytes());
            field(&mut h, target.display.as_bytes());
        }
    }
    field(&mut h, event.origin.request_id.as_bytes());
    field(&mut h, event.origin.ip_address.as_bytes());
    field(&mut h, event.origin.user_agent.as_bytes());
    h.update((event.metadata.len() as u64).to_be_bytes());
    for (key, value) in &event.metadata {
        field(&mut h, key.as_bytes());
        field(&mut h, value.as_bytes());
    }
    h.update((event.changes.len() as u64).to_be_bytes());
    for change in &event.changes {
        field(&mut h, change.field.as_bytes());
        optional(&mut h, change.before.as_deref());
        optional(&mut h, change.after.as_deref());
    }
    h.update(event.time.timestamp_micros().to_be_bytes());
    field(&mut h, event.source.as_bytes());
    h.finalize().into()
}

/// The hash of the link at position `seq` after `prev` to the event `event_id` with `digest`.
pub fn link_hash(prev: &Hash, seq: i64, event_id: Uuid, digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(b"identity.audit.link.v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(event_id.as_bytes());
    h.update(digest);
    h.finalize().into()
}

/// An event waiting for its link: its id and the digest of its content when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub event_id: Uuid,
    pub digest: Hash,
}

/// Chains `queued` events (in the order given) after `head`; returns their links and the new head.
pub fn chain(head: ChainHead, queued: &[Queued]) -> (Vec<Link>, ChainHead) {
    let mut head = head;
    let links = queued
        .iter()
        .map(|queued| {
            let seq = head.seq + 1;
            let hash = link_hash(&head.hash, seq, queued.event_id, &queued.digest);
            let link = Link {
                seq,
                event_id: queued.event_id,
                prev_hash: head.hash,
                hash,
            };
            head.seq = seq;
            head.hash = hash;
            link
        })
        .collect();
    (links, head)
}

/// The first thing wrong in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub account_id: Uuid,
    /// The position where the chain breaks.
    pub seq: i64,
    /// The event found there, if any.
    pub event_id: Option<Uuid>,
    pub problem: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "account {} breaks at position {}",
            self.account_id, self.seq
        )?;
        if let Some(id) = self.event_id {
            write!(f, " (event {id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Checks a chain event by event, in position order, from its floor.
#[derive(Debug)]
pub struct ChainCheck {
    account_id: Uuid,
    seq: i64,
    hash: Hash,
    checked: u64,
}

impl ChainCheck {
    pub fn new(account_id: Uuid, head: &ChainHead) -> Self {
        Self {
            account_id,
            seq: head.floor_seq,
            hash: head.floor_hash,
            checked: 0,
        }
    }

    fn broken(&self, seq: i64, event_id: Option<Uuid>, problem: impl Into<String>) -> Break {
        Break {
            account_id: self.account_id,
            seq,
            event_id,
            problem: problem.into(),
        }
    }

    /// The next link, with the event it names (`None`: the event is gone).
    pub fn next(&mut self, link: &Link, event: Option<&Event>) -> Result<(), Break> {
        let expected = self.seq + 1;
        if link.seq != expected {
            return Err(self.broken(
                expected,
                None,
                format!(
                    "position {expected} is missing (the next event found is at {})",
                    link.seq
                ),
            ));
        }
        let Some(event) = event.filter(|event| event.id == link.event_id) else {
            return Err(self.broken(
                link.seq,
                Some(link.event_id),
                "the event is missing (deleted)",
            ));
        };
        if link.prev_hash != self.hash {
            return Err(self.broken(
                link.seq,
                Some(event.id),
                "its predecessor's hash does not match the predecessor",
            ));
        }
        if link_hash(&self.hash, link.seq, event.id, &digest(event)) != link.hash {
            return Err(self.broken(
                link.seq,
                Some(event.id),
                "its content does not match its hash (edited)",
            ));
        }
        self.seq = link.seq;
        self.hash = link.hash;
        self.checked += 1;
        Ok(())
    }

    /// After the last event: the chain must end where its head says. Returns how many events
    /// were checked.
    pub fn finish(self, head: &ChainHead) -> Result<u64, Break> {
        if self.seq != head.seq {
            return Err(self.broken(
                self.seq + 1,
                None,
                format!(
                    "the chain ends at position {} but its head is at {}",
                    self.seq, head.seq
                ),
            ));
        }
        if self.hash != head.hash {
            return Err(self.broken(
                self.seq,
                None,
                "the last event's hash does not match the chain's head",
            ));
        }
        Ok(self.checked)
    }
}

/// The last position retention may delete, from the next links after the floor in position order
/// with their events' times: the end of the run of events older than `cutoff` at the start (a
/// newer event stops it, so what is kept is always a whole suffix of the chain).
pub fn purge_through(
    floor_seq: i64,
    next: &[(i64, DateTime<Utc>)],
    cutoff: DateTime<Utc>,
) -> Option<i64> {
    let through = next
        .iter()
        .take_while(|(_, time)| *time < cutoff)
        .last()
        .map(|(seq, _)| *seq)?;
    (through > floor_seq).then_some(through)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        Draft::new(action::GROUP_CREATED, EventActor::system())
            .target(Target::new("group", n, "Editors"))
            .changes([Change::new("name", None::<String>, Some("Editors"))])
            .meta("n", n)
            .into_event(
                Uuid::from_u128(7),
                &Origin::default(),
                DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap_or_default(),
            )
    }

    fn queued(events: &[Event]) -> Vec<Queued> {
        events
            .iter()
            .map(|event| Queued {
                event_id: event.id,
                digest: digest(event),
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_and_any_edit_or_removal_breaks_it() {
        let account = Uuid::from_u128(7);
        let events: Vec<Event> = (0..5).map(event).collect();
        let (links, head) = chain(ChainHead::new(), &queued(&events));
        let verify = |events: &[(Event, Link)]| {
            let mut check = ChainCheck::new(account, &ChainHead::new());
            for (event, link) in events {
                check.next(link, Some(event))?;
            }
            check.finish(&head)
        };
        let pairs: Vec<(Event, Link)> = events.iter().cloned().zip(links.clone()).collect();
        assert_eq!(verify(&pairs), Ok(5));

        let mut edited = pairs.clone();
        edited[2].0.action = "group.deleted".to_owned();
        let broken = verify(&edited).unwrap_err();
        assert_eq!((broken.seq, broken.event_id), (3, Some(events[2].id)));

        let mut removed = pairs.clone();
        removed.remove(1);
        assert_eq!(verify(&removed).unwrap_err().seq, 2);

        let mut gone = ChainCheck::new(account, &ChainHead::new());
        gone.next(&pairs[0].1, Some(&pairs[0].0)).unwrap();
        let missing = gone.next(&pairs[1].1, None).unwrap_err();
        assert_eq!((missing.seq, missing.event_id), (2, Some(events[1].id)));

        let mut tail = pairs.clone();
        tail.pop();
        assert_eq!(verify(&tail).unwrap_err().seq, 5);

        // A rewritten event with a recomputed hash still fails at its successor.
        let mut forged = pairs;
        forged[1].0.actor.display = "someone else".to_owned();
        forged[1].1.hash = link_hash(
            &forged[1].1.prev_hash,
            2,
            forged[1].0.id,
            &digest(&forged[1].0),
        );
        assert_eq!(verify(&forged).unwrap_err().seq, 3);
    }

    #[test]
    fn a_purged_prefix_leaves_a_chain_that_verifies_from_its_floor() {
        let account = Uuid::from_u128(7);
        let events: Vec<Event> = (0..6).map(event).collect();
        let (links, mut head) = chain(ChainHead::new(), &queued(&events));
        let times: Vec<(i64, DateTime<Utc>)> = links
            .iter()
            .zip(&events)
            .map(|(link, event)| (link.seq, event.time))
            .collect();
        let cutoff = events[3].time;
        let through = purge_through(0, &times, cutoff).unwrap_or_default();
        assert_eq!(through, 3);
        head.floor_seq = through;
        head.floor_hash = links[2].hash;
        let mut check = ChainCheck::new(account, &head);
        for (event, link) in events.iter().zip(&links).skip(3) {
            check.next(link, Some(event)).unwrap();
        }
        assert_eq!(check.finish(&head), Ok(3));
        assert_eq!(purge_through(3, &times[3..], cutoff), None);
        let later = events[5].time + Duration::seconds(1);
        assert_eq!(purge_through(3, &times[3..], later), Some(6));
        // A newer event early in the chain keeps everything after it.
        let mut mixed = times.clone();
        mixed[1].1 = later;
        assert_eq!(purge_through(0, &mixed, cutoff), Some(1));
    }

    #[test]
    fn every_field_is_in_the_hash() {
        let base = event(1);
        let hash = digest(&base);
        type Edit = Box<dyn Fn(&mut Event)>;
        let variants: Vec<Edit> = vec![
            Box::new(|e| e.origin.ip_address = "10.0.0.1".to_owned()),
            Box::new(|e| e.origin.user_agent = "x".to_owned()),
            Box::new(|e| e.origin.request_id = "r".to_owned()),
            Box::new(|e| e.target = None),
            Box::new(|e| e.changes[0].before = Some(String::new())),
            Box::new(|e| {
                e.metadata.insert("m".to_owned(), String::new());
            }),
            Box::new(|e| e.time += Duration::microseconds(1)),
            Box::new(|e| e.source = "dam".to_owned()),
            Box::new(|e| e.category = Category::MediaLibrary),
        ];
        for change in variants {
            let mut edited = base.clone();
            change(&mut edited);
            assert_ne!(digest(&edited), hash, "{edited:?}");
        }
        let link = link_hash(&GENESIS, 1, base.id, &hash);
        assert_ne!(link_hash(&GENESIS, 2, base.id, &hash), link);
        assert_ne!(link_hash(&link, 1, base.id, &hash), link);
    }

    #[test]
    fn categories_follow_the_action_and_roles_see_theirs() {
        assert_eq!(
            category_of(action::USER_ROLE_CHANGED),
            Category::UserManagement
        );
        assert_eq!(category_of(action::LOGIN_FAILED), Category::Authentication);
        assert_eq!(category_of(action::SHARE_REVOKED), Category::Access);
        assert_eq!(
            category_of(action::ACCOUNT_LIMITS_CHANGED),
            Category::Account
        );
        assert_eq!(visible_to(Role::AccountAdministrator).len(), 5);
        assert_eq!(
            visible_to(Role::MediaLibraryViewOnly),
            &[Category::MediaLibrary]
        );
        assert!(visible_to(Role::Finance).is_empty());
    }

    #[test]
    fn recorded_fields_are_checked() {
        assert!(action_name("file.deleted").is_ok());
        assert!(action_name("File.Deleted").is_err());
        assert!(action_name("").is_err());
        assert!(key_name("file").is_ok());
        assert!(key_name("a.b").is_err());
        assert_eq!(ip_address("::1"), Ok("::1".to_owned()));
        assert!(ip_address("1.2.3").is_err());
        let now = Utc::now();
        assert!(recorded_time(Some(now + Duration::minutes(6)), now).is_err());
        assert!(recorded_time(Some(now - Duration::days(8)), now).is_err());
        assert!(recorded_time(None, now).is_ok());
        assert_eq!(clip("héllo", 2), "hé");
    }
}
