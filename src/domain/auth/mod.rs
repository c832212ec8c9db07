//! Authentication: the types of logins, sessions, email-code challenges, account selections,
//! invitations and password resets, and the rules of each flow, one module per flow:
//!
//! - `login`: the login throttle, the first factor and what follows it, personal MFA;
//! - `challenge`: email codes, their checks and resends;
//! - `session`: sessions, refresh tokens and account selections;
//! - `links`: password-reset and invitation links.

pub mod challenge;
pub mod links;
pub mod login;
pub mod session;

use chrono::{DateTime, Utc};

use super::accounts::Account;
use super::error::{DomainError, reason};
use super::roles::Role;
use super::users::{Member, Membership};

pub use challenge::{
    CODE_ATTEMPTS, CODE_RESENDS, CODE_TTL, Challenge, EmailChallenge, RESEND_INTERVAL,
};
pub use links::{PasswordReset, RESET_INTERVAL, RESET_TTL};
pub use login::{
    Attempt, BUSY_WAIT, FAILURE_WINDOW, FREE_ATTEMPTS, FirstFactor, IN_FLIGHT_EXPIRY, MAX_LOCK,
    NextStep, PasswordLogin, checks_allowed, lock_after,
};
pub use session::{
    NewSession, PendingSelection, RefreshRefusal, RefreshToken, SELECTION_TTL, Session,
    SessionRefusal, SessionStanding, session_refusal,
};

/// Where a request came from, recorded on the session.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// A member able to log in to one account, with the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMembership {
    pub membership: Membership,
    pub account: Account,
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

pub fn session_revoked() -> DomainError {
    DomainError::unauthenticated(
        reason::SESSION_REVOKED,
        "the session has ended; log in again",
    )
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Accounts, people and memberships for the rules' tests.

    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::ActiveMembership;
    use crate::domain::accounts::Account;
    use crate::domain::roles::Role;
    use crate::domain::users::{Membership, MembershipStatus, Person};

    pub fn person(mfa_enabled: bool) -> Person {
        let email = crate::domain::validate::email("ada@example.com").unwrap();
        Person {
            mfa_enabled,
            ..Person::new(&email, "Ada", Utc::now())
        }
    }

    pub fn account(enforce_mfa: bool) -> Account {
        Account {
            enforce_mfa,
            ..Account::new("Acme".into(), 10, 10, Utc::now())
        }
    }

    pub fn active(person: &Person, account: Account, now: DateTime<Utc>) -> ActiveMembership {
        ActiveMembership {
            membership: Membership {
                account_id: account.id,
                user_id: person.id,
                email_key: person.email_key.clone(),
                role: Role::Developer,
                status: MembershipStatus::Active,
                invited_by: None,
                accepted_at: Some(now),
                last_login_at: None,
                version: 1,
                created_at: now,
                updated_at: now,
            },
            account,
        }
    }

    pub fn id() -> Uuid {
        Uuid::now_v7()
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
}
