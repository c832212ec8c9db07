//! People and their memberships: the types of UserService and the rules of user management
//! (the user cap, the last administrator, invitations and their resends).

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::accounts::Account;
use super::error::{DomainError, DomainResult, reason};
use super::roles::Role;
use super::validate::EmailAddress;

/// Invitation links work for 7 days.
pub const INVITATION_TTL: Duration = Duration::days(7);
/// At most one invitation email per user per minute.
pub const RESEND_INTERVAL: Duration = Duration::minutes(1);

/// Where a member stands in an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipStatus {
    /// Added, not yet accepted: cannot log in to the account.
    Invited,
    Active,
    /// Cannot log in; keeps their place (and counts against the cap).
    Disabled,
}

impl MembershipStatus {
    /// The log and filter name.
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipStatus::Invited => "invited",
            MembershipStatus::Active => "active",
            MembershipStatus::Disabled => "disabled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            MembershipStatus::Invited,
            MembershipStatus::Active,
            MembershipStatus::Disabled,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// An argon2id PHC string. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A person: one login identity across accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    /// As the person gave it.
    pub email: String,
    /// Lower-cased: unique across the service.
    pub email_key: String,
    pub display_name: String,
    /// `None` until an invitation is accepted (or for people who only log in with Google).
    pub password_hash: Option<PasswordHash>,
    pub mfa_enabled: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Person {
    /// A person seen for the first time, called `display_name`.
    pub fn new(email: &EmailAddress, display_name: &str, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            email: email.address().to_owned(),
            email_key: email.key().to_owned(),
            display_name: display_name.to_owned(),
            password_hash: None,
            mfa_enabled: false,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }
}

/// A person inside an account, with one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub account_id: Uuid,
    pub user_id: Uuid,
    /// The person's lower-cased email (immutable), for listing in email order.
    pub email_key: String,
    pub role: Role,
    pub status: MembershipStatus,
    pub invited_by: Option<Uuid>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A person as a member of one account, as UserService shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub person: Person,
    pub membership: Membership,
    /// When the pending invitation's link stops working (invited members only).
    pub invitation_expires_at: Option<DateTime<Utc>>,
    /// The account enforces MFA.
    pub enforce_mfa: bool,
}

impl Member {
    pub fn etag(&self) -> UserEtag {
        UserEtag {
            membership: self.membership.version,
            person: self.person.version,
        }
    }

    pub fn role(&self) -> Role {
        self.membership.role
    }

    pub fn status(&self) -> MembershipStatus {
        self.membership.status
    }
}

/// A pending invitation: the link's token is kept as a hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: String,
    pub invited_by: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Who sends an invitation, as its email names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inviter {
    pub user_id: Option<Uuid>,
    pub name: String,
}

/// A user's etag: the versions of the membership and of the person (whose name is shared by
/// all their accounts), so a change of either is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEtag {
    pub membership: i64,
    pub person: i64,
}

impl UserEtag {
    pub fn parse(value: &str) -> Result<Option<UserEtag>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        let bad = || "is not an etag returned by this service".to_owned();
        let (membership, person) = value.split_once('.').ok_or_else(bad)?;
        Ok(Some(UserEtag {
            membership: membership.parse().map_err(|_| bad())?,
            person: person.parse().map_err(|_| bad())?,
        }))
    }

    /// Fails with `ETAG_MISMATCH` unless `expected` is absent or is `current`.
    pub fn check(expected: Option<UserEtag>, current: UserEtag) -> DomainResult<()> {
        match expected {
            Some(expected) if expected != current => Err(DomainError::etag_mismatch("user")),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for UserEtag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.membership, self.person)
    }
}

/// `CreateUser`, checked.
#[derive(Debug, Clone)]
pub struct CreateUser {
    pub account_id: Uuid,
    pub email: EmailAddress,
    /// `None`: a new person is called by the local part of their address.
    pub display_name: Option<String>,
    pub role: Role,
    pub request_id: Option<String>,
}

/// Filters of `ListUsers`; they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
    pub status: Option<MembershipStatus>,
    /// Lower-cased.
    pub email_prefix: Option<String>,
    pub group_id: Option<Uuid>,
}

/// What `UpdateUser` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct MemberChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
}

/// The administrators of an account by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminCounts {
    pub active: usize,
    pub invited: usize,
}

/// The name a person gets when none is given: the local part of their address.
pub fn default_display_name(email: &EmailAddress) -> String {
    email
        .address()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A new (invited) membership of `person` in the locked `account`, or `USER_LIMIT_REACHED` when
/// the account is at its cap (invited and disabled members count).
pub fn admit(
    account: &Account,
    person: &Person,
    role: Role,
    invited_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> DomainResult<Membership> {
    if account.user_count >= account.max_users {
        return Err(user_limit_reached(account.max_users));
    }
    Ok(Membership {
        account_id: account.id,
        user_id: person.id,
        email_key: person.email_key.clone(),
        role,
        status: MembershipStatus::Invited,
        invited_by,
        accepted_at: None,
        last_login_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

/// The invitation of `person` to `account`, with the hash of the link's token; its link works
/// for `INVITATION_TTL`.
pub fn invitation(
    account_id: Uuid,
    person_id: Uuid,
    token_hash: String,
    invited_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Invitation {
    Invitation {
        account_id,
        user_id: person_id,
        token_hash,
        invited_by,
        expires_at: now + INVITATION_TTL,
        created_at: now,
    }
}

/// Whether an administrator with status `target` may stop being one (deleted, demoted,
/// disabled). The account must keep an active administrator; while it has none yet (a new account
/// whose first administrator has not accepted), it must keep an invited one.
pub fn check_admin_remains(target: MembershipStatus, counts: AdminCounts) -> DomainResult<()> {
    let (active_left, invited_left) = match target {
        MembershipStatus::Active => (counts.active.saturating_sub(1), counts.invited),
        MembershipStatus::Invited => (counts.active, counts.invited.saturating_sub(1)),
        MembershipStatus::Disabled => return Ok(()),
    };
    let removes_last_active = target == MembershipStatus::Active && active_left == 0;
    let removes_last_invited = counts.active == 0 && invited_left == 0;
    if removes_last_active || removes_last_invited {
        return Err(DomainError::FailedPrecondition {
            reason: reason::LAST_ADMINISTRATOR,
            message: "the account must keep an administrator: make another user an Account Administrator first".to_owned(),
        });
    }
    Ok(())
}

/// Whether taking `member` out of the administrators needs the last-administrator check.
pub fn leaves_administrators(member: &Member) -> bool {
    member.role() == Role::AccountAdministrator
}

/// The status a member gets from DisableUser (`disable`) or EnableUser: enabling gives back
/// ACTIVE to a member who had accepted, INVITED to one who had not; a member who is not disabled
/// keeps their status.
pub fn enabled_status(member: &Membership, disable: bool) -> MembershipStatus {
    match (disable, member.status) {
        (true, _) => MembershipStatus::Disabled,
        (false, MembershipStatus::Disabled) if member.accepted_at.is_some() => {
            MembershipStatus::Active
        }
        (false, MembershipStatus::Disabled) => MembershipStatus::Invited,
        (false, current) => current,
    }
}

/// Refuses a resend unless the member is invited, and within a minute of the previous
/// invitation.
pub fn check_resend(
    member: &Member,
    previous: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    if member.status() != MembershipStatus::Invited {
        return Err(not_invited());
    }
    match previous {
        Some(previous) => check_resend_interval(previous, now),
        None => Ok(()),
    }
}

/// Refuses a resend within a minute of the previous invitation.
pub fn check_resend_interval(previous: DateTime<Utc>, now: DateTime<Utc>) -> DomainResult<()> {
    let next = previous + RESEND_INTERVAL;
    if now < next {
        return Err(DomainError::ResourceExhausted {
            reason: reason::INVITATION_RESEND_TOO_SOON,
            message: "an invitation was sent less than a minute ago; retry later".to_owned(),
            retry_after: (next - now).to_std().ok(),
        });
    }
    Ok(())
}

pub fn user_limit_reached(max_users: i32) -> DomainError {
    DomainError::ResourceExhausted {
        reason: reason::USER_LIMIT_REACHED,
        message: format!(
            "the account has reached its plan's limit of {max_users} users (invited users count); contact support to raise it"
        ),
        retry_after: None,
    }
    .with_metadata("max_users", max_users.to_string())
}

pub fn user_not_found() -> DomainError {
    DomainError::not_found(reason::USER_NOT_FOUND, "user")
}

pub fn already_member() -> DomainError {
    DomainError::AlreadyExists {
        reason: reason::USER_ALREADY_MEMBER,
        message: "a user with this email is already in the account".to_owned(),
    }
}

pub fn not_invited() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::USER_NOT_INVITED,
        message: "the user has already accepted (or is disabled); there is no invitation to resend"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn counts(active: usize, invited: usize) -> AdminCounts {
        AdminCounts { active, invited }
    }

    #[test]
    fn the_last_administrator_stays() {
        use MembershipStatus::*;
        // (status of the administrator leaving, active, invited, allowed)
        let table = [
            (Active, 1, 0, false),
            (Active, 1, 3, false),
            (Active, 2, 0, true),
            // Invited administrators may go while an active one remains.
            (Invited, 1, 1, true),
            // A new account keeps its only (invited) administrator.
            (Invited, 0, 1, false),
            (Invited, 0, 2, true),
            (Disabled, 0, 0, true),
        ];
        for (status, active, invited, allowed) in table {
            let result = check_admin_remains(status, counts(active, invited));
            assert_eq!(result.is_ok(), allowed, "{status:?} {active} {invited}");
        }
    }

    fn account(user_count: i32, max_users: i32) -> Account {
        let now = Utc::now();
        Account {
            user_count,
            max_users,
            ..Account::new("Acme".into(), max_users, 5, now)
        }
    }

    fn person() -> Person {
        let email = super::super::validate::email("Ada@Example.com").unwrap();
        Person::new(&email, "Ada", Utc::now())
    }

    #[test]
    fn members_are_admitted_under_the_cap() {
        let now = Utc::now();
        let person = person();
        let membership = admit(&account(2, 3), &person, Role::Developer, None, now).unwrap();
        assert_eq!(membership.status, MembershipStatus::Invited);
        assert_eq!(membership.email_key, "ada@example.com");
        assert_eq!(membership.version, 1);
        let full = admit(&account(3, 3), &person, Role::Developer, None, now).unwrap_err();
        assert!(matches!(
            full,
            DomainError::WithMetadata { ref error, .. }
                if matches!(**error, DomainError::ResourceExhausted { reason: reason::USER_LIMIT_REACHED, .. })
        ));
    }

    #[test]
    fn enabling_restores_what_the_member_had() {
        let now = Utc::now();
        let mut m = admit(&account(0, 3), &person(), Role::Finance, None, now).unwrap();
        use MembershipStatus::*;
        assert_eq!(enabled_status(&m, true), Disabled);
        m.status = Disabled;
        assert_eq!(enabled_status(&m, false), Invited);
        m.accepted_at = Some(now);
        assert_eq!(enabled_status(&m, false), Active);
        m.status = Active;
        assert_eq!(enabled_status(&m, false), Active);
    }

    #[test]
    fn etags_round_trip() {
        let etag = UserEtag {
            membership: 3,
            person: 7,
        };
        assert_eq!(UserEtag::parse(&etag.to_string()).unwrap(), Some(etag));
        assert_eq!(UserEtag::parse("").unwrap(), None);
        assert!(UserEtag::parse("3").is_err());
        assert!(UserEtag::parse("a.b").is_err());
        assert!(UserEtag::check(None, etag).is_ok());
        assert!(UserEtag::check(Some(etag), etag).is_ok());
        assert!(
            UserEtag::check(
                Some(UserEtag {
                    membership: 3,
                    person: 8
                }),
                etag
            )
            .is_err()
        );
    }

    #[test]
    fn resends_wait_a_minute() {
        let then = Utc::now();
        let err = check_resend_interval(then, then + Duration::seconds(20)).unwrap_err();
        match err {
            DomainError::ResourceExhausted { retry_after, .. } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(40)))
            }
            other => panic!("{other:?}"),
        }
        assert!(check_resend_interval(then, then + Duration::seconds(60)).is_ok());
    }

    #[test]
    fn password_hashes_never_print() {
        let hash = PasswordHash::new("$argon2id$v=19$secret");
        assert!(!format!("{hash:?}").contains("secret"));
    }
}
