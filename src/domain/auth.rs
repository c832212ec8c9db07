//! Authentication: the types of sessions, email-code challenges, account selections, invitations
//! and password resets, and the numbers of their rules.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::accounts::Account;
use super::error::{DomainError, reason};
use super::roles::Role;
use super::users::{Member, Membership, Person};

/// An email code is valid 10 minutes.
pub const CODE_TTL: Duration = Duration::minutes(10);
/// Wrong codes before a challenge dies, and resends per challenge.
pub const CODE_ATTEMPTS: i32 = 5;
pub const CODE_RESENDS: i32 = 5;
/// At most one code email per 30 seconds.
pub const RESEND_INTERVAL: Duration = Duration::seconds(30);
/// An account selection must be made within 10 minutes.
pub const SELECTION_TTL: Duration = Duration::minutes(10);
/// Reset links work 1 hour; one email per person per minute.
pub const RESET_TTL: Duration = Duration::hours(1);
pub const RESET_INTERVAL: Duration = Duration::minutes(1);

/// Failed logins allowed in a window before attempts must wait.
pub const FREE_ATTEMPTS: i32 = 5;
/// Failures older than this are forgotten.
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);
/// The longest wait between attempts.
pub const MAX_LOCK: Duration = Duration::minutes(15);

/// How long a person must wait after `failures` failures in the window (0 while under the limit):
/// 30 s at the fifth, doubling with each further failure, at most 15 minutes.
pub fn lock_after(failures: i32) -> Duration {
    if failures < FREE_ATTEMPTS {
        return Duration::zero();
    }
    let doublings = Ord::min(failures - FREE_ATTEMPTS, 10) as u32;
    Ord::min(Duration::seconds(30) * 2i32.pow(doublings), MAX_LOCK)
}

/// Where a request came from, recorded on the session.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// One login of a person into one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub account_id: Uuid,
    /// How the person authenticated (`pwd`, `otp`, `email`, `google`).
    pub amr: Vec<String>,
    /// The email code was passed (or the login method relies on the provider's MFA).
    pub mfa_passed: bool,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    /// Not revoked and not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }

    /// Started with a password (which the account's MFA enforcement applies to).
    pub fn by_password(&self) -> bool {
        self.amr.iter().any(|m| m == "pwd")
    }
}

/// What a new session records.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub amr: Vec<String>,
    pub mfa_passed: bool,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    Reused,
    Revoked,
    Expired,
}

/// A member able to log in to one account, with the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMembership {
    pub membership: Membership,
    pub account: Account,
}

/// The first step of a password login.
#[derive(Debug)]
pub struct PasswordLogin {
    pub person: Person,
    pub accounts: Vec<ActiveMembership>,
    /// How long the person must wait, when this attempt was refused (not counted).
    pub wait: Option<Duration>,
}

/// A pending email-code challenge as stored: its id and code as hashes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChallenge {
    pub id_hash: String,
    pub user_id: Uuid,
    pub account_id: Option<Uuid>,
    pub code_hash: String,
    pub code_expires_at: DateTime<Utc>,
    pub attempts_left: i32,
    pub resends_left: i32,
    pub last_sent_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
}

/// A finished first factor waiting for an account choice, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSelection {
    pub user_id: Uuid,
    pub amr: Vec<String>,
    pub mfa_passed: bool,
}

/// A password reset link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// An established session's tokens.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub session: Session,
    pub role: Role,
}

/// A pending email-code challenge as shown to the client.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub code_expires_at: DateTime<Utc>,
    pub masked_email: String,
    pub resend_at: DateTime<Utc>,
    pub resends_left: i32,
    pub attempts_left: i32,
}

impl Challenge {
    /// The client's view of a stored challenge whose id is `id`.
    pub fn view(id: String, row: &EmailChallenge, email: &str) -> Self {
        Self {
            id,
            code_expires_at: row.code_expires_at,
            masked_email: mask_email(email),
            resend_at: row.last_sent_at + RESEND_INTERVAL,
            resends_left: row.resends_left,
            attempts_left: row.attempts_left,
        }
    }
}

/// A finished authentication waiting for an account choice.
#[derive(Debug, Clone)]
pub struct Selection {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub accounts: Vec<ActiveMembership>,
}

#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Tokens(IssuedSession),
    Challenge(Challenge),
    Selection(Selection),
}

/// What an invitation link offers.
#[derive(Debug, Clone)]
pub struct InvitationView {
    pub member: Member,
    pub account_name: String,
    pub expires_at: DateTime<Utc>,
}

/// What a client presents to log in with Google.
#[derive(Debug, Clone)]
pub enum GoogleCredential {
    /// An authorization code (PKCE) that the service exchanges for an ID token.
    Code {
        code: String,
        code_verifier: String,
        redirect_uri: String,
        nonce: String,
    },
    /// An ID token the client obtained itself.
    IdToken { id_token: String, nonce: String },
}

/// `j***@e***.com`: enough to recognise the address, not to learn it.
pub fn mask_email(email: &str) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    format!("{}***@{}***.{}", first(local), first(host), tld)
}

pub fn invalid_credentials() -> DomainError {
    DomainError::unauthenticated(
        reason::INVALID_CREDENTIALS,
        "the email or password is not correct",
    )
}

pub fn throttled(wait: Duration) -> DomainError {
    DomainError::ResourceExhausted {
        reason: reason::LOGIN_THROTTLED,
        message: "too many failed attempts; wait before trying again".to_owned(),
        retry_after: wait.to_std().ok(),
    }
}

pub fn challenge_expired() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::MFA_CHALLENGE_EXPIRED,
        message: "this code is no longer valid; log in again".to_owned(),
    }
}

pub fn session_revoked() -> DomainError {
    DomainError::unauthenticated(
        reason::SESSION_REVOKED,
        "the session has ended; log in again",
    )
}

pub fn invitation_invalid() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::INVITATION_INVALID,
        message: "this invitation link is not valid; it may have been used or replaced".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("jane.doe@example.com"), "j***@e***.com");
        assert_eq!(mask_email("a@b.co.uk"), "a***@b***.uk");
    }

    #[test]
    fn waits_grow_to_fifteen_minutes() {
        // (failures in the window, wait)
        let table = [
            (0, Duration::zero()),
            (4, Duration::zero()),
            (5, Duration::seconds(30)),
            (6, Duration::minutes(1)),
            (9, Duration::minutes(8)),
            (10, Duration::minutes(15)),
            (40, Duration::minutes(15)),
        ];
        for (failures, wait) in table {
            assert_eq!(lock_after(failures), wait, "{failures}");
        }
    }
}
