//! Accounts: the customer of the platform, its settings and its caps per plan.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::{DomainError, DomainResult, Violations, reason};
use super::validate::EmailAddress;

/// The largest caps support may set.
pub const MAX_USERS_CAP: i32 = 1_000_000;
pub const MAX_GROUPS_CAP: i32 = 100_000;

/// An account. Its row is the lock of every cap and counter of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub enforce_mfa: bool,
    pub max_users: i32,
    pub max_groups: i32,
    /// Memberships, invited and disabled ones included.
    pub user_count: i32,
    pub group_count: i32,
    /// Moved on by every write that can change an access decision.
    pub access_revision: i64,
    /// Moved on by every change of the account's own fields; the etag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Account {
    /// A new, empty account.
    pub fn new(name: String, max_users: i32, max_groups: i32, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            name,
            enforce_mfa: false,
            max_users,
            max_groups,
            user_count: 0,
            group_count: 0,
            access_revision: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// `CreateAccount`, checked. Limits left out take the service's defaults.
#[derive(Debug, Clone)]
pub struct CreateAccount {
    pub name: String,
    pub admin_email: EmailAddress,
    pub admin_display_name: String,
    pub max_users: Option<i32>,
    pub max_groups: Option<i32>,
    pub request_id: Option<String>,
}

/// A change to the account's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub enforce_mfa: Option<bool>,
    pub max_users: Option<i32>,
    pub max_groups: Option<i32>,
}

/// Checks a cap given by support; `field` names it in the violation.
pub fn check_limit(violations: &mut Violations, field: &str, value: i32, min: i32, max: i32) {
    if !(min..=max).contains(&value) {
        violations.add(field, format!("must be between {min} and {max}"));
    }
}

/// Fails with `ETAG_MISMATCH` unless `expected` is absent or is the account's version.
pub fn check_etag(account: &Account, expected: Option<i64>) -> DomainResult<()> {
    match expected {
        Some(version) if version != account.version => Err(DomainError::etag_mismatch("account")),
        _ => Ok(()),
    }
}

pub fn account_not_found() -> DomainError {
    DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account")
}

/// The account, or `ACCOUNT_NOT_FOUND`.
pub fn found(account: Option<Account>) -> DomainResult<Account> {
    account.ok_or_else(account_not_found)
}

/// A stable digest of a request's content, to tell a retry from a different request.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_within_their_range() {
        let mut v = Violations::new();
        check_limit(&mut v, "max_users", 0, 1, MAX_USERS_CAP);
        check_limit(&mut v, "max_groups", 0, 0, MAX_GROUPS_CAP);
        check_limit(&mut v, "max_groups", MAX_GROUPS_CAP + 1, 0, MAX_GROUPS_CAP);
        let Err(DomainError::InvalidArgument { violations, .. }) = v.finish() else {
            panic!("expected violations");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["max_users", "max_groups"]);
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a"]), fingerprint(&["a"]));
    }
}
