//! The audit log: what an event is, who may see which, the rules for events the DAM records, and
//! the hash chain that makes each account's log tamper-evident.
//!
//! The chain lives in `chain`, the rules for the events the DAM records in `recorded`.
//!
//! Every event belongs to one account's chain (the service's own events, such as a failed login
//! for an address no person has, to the chain of the nil account). An event is appended in the
//! unit of work of the change it records, unchained; the chainer then gives it the next position
//! (`seq`) of its account, the hash of its predecessor and its own hash,
//! `SHA-256(prev_hash | seq | canonical event)`. Retention deletes a prefix of a chain and keeps
//! the last deleted position and hash as the chain's floor, so what remains still verifies.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
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
    pub const ACCOUNT_SSO_SETTINGS_CHANGED: &str = "account.sso_settings_changed";

    pub const USER_INVITED: &str = "user.invited";
    /// Created by a single sign-on login.
    pub const USER_PROVISIONED: &str = "user.provisioned";
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

mod chain;
mod recorded;

pub use chain::*;
pub use recorded::*;

#[cfg(test)]
mod tests {
    use super::*;

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
}
