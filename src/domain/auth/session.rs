//! Sessions, their rotating refresh tokens, and account selections (a finished first factor
//! waiting for the person to pick an account).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{FirstFactor, session_revoked};
use crate::domain::accounts::Account;
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::MembershipStatus;

/// An account selection must be made within 10 minutes.
pub const SELECTION_TTL: Duration = Duration::minutes(10);

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
    /// A new session, started at `now` for `ttl`.
    pub fn open(new: NewSession, now: DateTime<Utc>, ttl: Duration) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id: new.user_id,
            account_id: new.account_id,
            amr: new.amr,
            mfa_passed: new.mfa_passed,
            user_agent: new.user_agent,
            ip_address: new.ip_address,
            created_at: now,
            last_used_at: now,
            expires_at: now + ttl,
            revoked_at: None,
        }
    }

    /// Not revoked and not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }

    /// Started with a password (which the account's MFA enforcement applies to).
    pub fn by_password(&self) -> bool {
        by_password(&self.amr)
    }

    /// Whether `user_id` may revoke this session: their own, and live.
    pub fn revocable_by(&self, user_id: Uuid, now: DateTime<Utc>) -> bool {
        self.user_id == user_id && self.is_live(now)
    }
}

/// Where the session of an access token stands, as the token check reads it in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStanding {
    /// Revoked, expired, or no session of the token's person in the token's account.
    Ended,
    /// Live, with the status of the person's membership of the session's account (`None` when
    /// there is none).
    Live(Option<MembershipStatus>),
}

/// Why an access token's session does not admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// Revoked, expired, or no session of the token's person in the token's account.
    Ended,
    /// The session is live but its person is not an ACTIVE member of the account (invited,
    /// disabled, or removed meanwhile).
    MemberNotActive,
}

/// The one rule for an access token's session, whether its person presents it or a service
/// forwards it to `ValidateToken`: the session must be live (a logout, revocation or password
/// change takes effect at once, not when the token expires) and its member ACTIVE.
pub fn session_refusal(standing: SessionStanding) -> Option<SessionRefusal> {
    match standing {
        SessionStanding::Ended => Some(SessionRefusal::Ended),
        SessionStanding::Live(Some(MembershipStatus::Active)) => None,
        SessionStanding::Live(_) => Some(SessionRefusal::MemberNotActive),
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

/// A refresh token as stored (under its hash): the session it renews, and when it was spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    /// Presented a second time: someone else holds a copy, so the session ends.
    Reused,
    Revoked,
    Expired,
}

impl From<RefreshRefusal> for DomainError {
    fn from(refusal: RefreshRefusal) -> Self {
        match refusal {
            RefreshRefusal::Unknown | RefreshRefusal::Expired => DomainError::unauthenticated(
                reason::REFRESH_TOKEN_INVALID,
                "the refresh token is not valid",
            ),
            RefreshRefusal::Reused => DomainError::unauthenticated(
                reason::REFRESH_TOKEN_REUSED,
                "this refresh token was already used; the session has been ended",
            ),
            RefreshRefusal::Revoked => session_revoked(),
        }
    }
}

/// Why `token` of `session` may not be spent at `now`, if it may not: the session was revoked,
/// the token was spent before (`Reused`), or the session has expired, in that order.
pub fn refresh_refusal(
    token: &RefreshToken,
    session: &Session,
    now: DateTime<Utc>,
) -> Option<RefreshRefusal> {
    if session.revoked_at.is_some() {
        Some(RefreshRefusal::Revoked)
    } else if token.used_at.is_some() {
        Some(RefreshRefusal::Reused)
    } else if session.expires_at <= now {
        Some(RefreshRefusal::Expired)
    } else {
        None
    }
}

/// Refuses a refresh of a password session that never passed the email code in an account that
/// has enforced MFA since the login.
pub fn check_refresh_mfa(session: &Session, account: &Account) -> DomainResult<()> {
    if code_missing(&session.amr, session.mfa_passed, account) {
        return Err(mfa_required(
            "the account now requires the email code; log in again",
        ));
    }
    Ok(())
}

/// A finished first factor waiting for an account choice, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSelection {
    pub user_id: Uuid,
    pub amr: Vec<String>,
    pub mfa_passed: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
}

impl PendingSelection {
    /// The choice offered to `user_id` at `now` after `factor`, open for `SELECTION_TTL`.
    pub fn offer(user_id: Uuid, factor: FirstFactor, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            amr: factor.amr(),
            mfa_passed: factor.mfa_passed(),
            created_at: now,
            expires_at: now + SELECTION_TTL,
            consumed_at: None,
        }
    }
}

/// Refuses a selection that was made already or has expired (`ACCOUNT_SELECTION_EXPIRED`).
pub fn check_selection(selection: &PendingSelection, now: DateTime<Utc>) -> DomainResult<()> {
    if selection.consumed_at.is_some() || selection.expires_at <= now {
        return Err(selection_expired());
    }
    Ok(())
}

/// Refuses to choose an account that enforces MFA after a password alone.
pub fn check_selection_mfa(selection: &PendingSelection, account: &Account) -> DomainResult<()> {
    if code_missing(&selection.amr, selection.mfa_passed, account) {
        return Err(mfa_required(
            "this account requires the email code; log in again",
        ));
    }
    Ok(())
}

pub fn selection_expired() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::ACCOUNT_SELECTION_EXPIRED,
        message: "this account selection is no longer valid; log in again".to_owned(),
    }
}

fn by_password(amr: &[String]) -> bool {
    amr.iter().any(|m| m == "pwd")
}

/// The account enforces MFA and a password login has not passed the email code.
fn code_missing(amr: &[String], mfa_passed: bool, account: &Account) -> bool {
    account.enforce_mfa && by_password(amr) && !mfa_passed
}

fn mfa_required(message: &str) -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::MFA_REQUIRED,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{account, id};
    use super::*;

    fn session(factor: FirstFactor, now: DateTime<Utc>) -> Session {
        Session::open(
            NewSession {
                user_id: id(),
                account_id: id(),
                amr: factor.amr(),
                mfa_passed: factor.mfa_passed(),
                user_agent: None,
                ip_address: None,
            },
            now,
            Duration::days(30),
        )
    }

    #[test]
    fn sessions_open_live_and_end() {
        let now = Utc::now();
        let s = session(FirstFactor::Password, now);
        assert_eq!((s.created_at, s.last_used_at), (now, now));
        assert_eq!(s.expires_at, now + Duration::days(30));
        assert!(s.is_live(now) && s.by_password());
        assert!(!s.is_live(s.expires_at));
        assert!(s.revocable_by(s.user_id, now));
        assert!(!s.revocable_by(id(), now));
        let revoked = Session {
            revoked_at: Some(now),
            ..s
        };
        assert!(!revoked.is_live(now) && !revoked.revocable_by(revoked.user_id, now));
    }

    #[test]
    fn tokens_need_a_live_session_of_an_active_member() {
        use MembershipStatus::*;
        use SessionStanding::*;
        // (standing, refusal)
        let table = [
            (Ended, Some(SessionRefusal::Ended)),
            (Live(Some(Active)), None),
            (Live(Some(Invited)), Some(SessionRefusal::MemberNotActive)),
            (Live(Some(Disabled)), Some(SessionRefusal::MemberNotActive)),
            (Live(None), Some(SessionRefusal::MemberNotActive)),
        ];
        for (standing, refusal) in table {
            assert_eq!(session_refusal(standing), refusal, "{standing:?}");
        }
    }

    #[test]
    fn refresh_tokens_are_refused_in_order() {
        let now = Utc::now();
        let live = session(FirstFactor::Password, now);
        let revoked = Session {
            revoked_at: Some(now),
            ..live.clone()
        };
        let expired = Session {
            expires_at: now,
            ..live.clone()
        };
        let fresh = RefreshToken {
            session_id: live.id,
            created_at: now,
            used_at: None,
        };
        let spent = RefreshToken {
            used_at: Some(now),
            ..fresh.clone()
        };
        use RefreshRefusal::*;
        // (token, session, refusal)
        let table = [
            (&fresh, &live, None),
            (&spent, &live, Some(Reused)),
            (&fresh, &expired, Some(Expired)),
            // A revoked session says so first; a reused token of an expired session ends it.
            (&spent, &revoked, Some(Revoked)),
            (&spent, &expired, Some(Reused)),
            (&fresh, &revoked, Some(Revoked)),
        ];
        for (n, (token, session, refusal)) in table.into_iter().enumerate() {
            assert_eq!(refresh_refusal(token, session, now), refusal, "row {n}");
        }
    }

    #[test]
    fn refusals_name_their_reasons() {
        use RefreshRefusal::*;
        for (refusal, expected) in [
            (Unknown, reason::REFRESH_TOKEN_INVALID),
            (Expired, reason::REFRESH_TOKEN_INVALID),
            (Reused, reason::REFRESH_TOKEN_REUSED),
            (Revoked, reason::SESSION_REVOKED),
        ] {
            match DomainError::from(refusal) {
                DomainError::Unauthenticated { reason, .. } => assert_eq!(reason, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn enforced_mfa_refuses_password_sessions_without_the_code() {
        use FirstFactor::*;
        let now = Utc::now();
        // (factor, the account enforces MFA, allowed)
        let table = [
            (Password, false, true),
            (Password, true, false),
            (PasswordAndCode, true, true),
            (InvitationLink, true, true),
            (Google, true, true),
        ];
        for (factor, enforce, allowed) in table {
            let account = account(enforce);
            let s = session(factor, now);
            assert_eq!(
                check_refresh_mfa(&s, &account).is_ok(),
                allowed,
                "{factor:?}"
            );
            let selection = PendingSelection::offer(s.user_id, factor, now);
            assert_eq!(
                check_selection_mfa(&selection, &account).is_ok(),
                allowed,
                "{factor:?}"
            );
        }
    }

    #[test]
    fn a_selection_is_made_once_within_ten_minutes() {
        let now = Utc::now();
        let pending = PendingSelection::offer(id(), FirstFactor::Google, now);
        assert_eq!(pending.expires_at, now + SELECTION_TTL);
        let made = PendingSelection {
            consumed_at: Some(now),
            ..pending.clone()
        };
        // (selection, when, valid)
        let table = [
            (&pending, now, true),
            (&pending, now + SELECTION_TTL - Duration::seconds(1), true),
            (&pending, now + SELECTION_TTL, false),
            (&made, now, false),
        ];
        for (n, (selection, when, valid)) in table.into_iter().enumerate() {
            assert_eq!(check_selection(selection, when).is_ok(), valid, "row {n}");
        }
    }
}
