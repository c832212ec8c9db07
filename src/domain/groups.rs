//! Groups: named sets of an account's users, used as share subjects. At most `max_groups` per
//! account; names are unique ignoring case.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::accounts::Account;
use super::error::{DomainError, DomainResult, FieldViolation, reason};

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The most user ids one AddGroupMembers / RemoveGroupMembers call takes.
pub const MAX_MEMBERS_PER_CALL: usize = 1000;

/// A checked group name and its key (lower-cased), under which it is unique in the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName {
    name: String,
    key: String,
}

impl GroupName {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A group name: trimmed, 1 to 64 ASCII letters, digits and spaces. Inner runs of spaces are
/// kept as given (the contract says so), so `A  B` and `A B` are two names.
pub fn name(value: &str) -> Result<GroupName, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
        return Err("may contain only ASCII letters, digits and spaces".to_owned());
    }
    if value.len() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok(GroupName {
        name: value.to_owned(),
        key: value.to_ascii_lowercase(),
    })
}

/// A description: free text of at most 1024 characters; line breaks and tabs are the only
/// control characters allowed.
pub fn description(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if value
        .chars()
        .any(|c| super::validate::is_hidden_format(c) && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(
            "must not contain control or bidirectional formatting characters other than line \
             breaks and tabs"
                .to_owned(),
        );
    }
    Ok(value.to_owned())
}

/// The key a name prefix is compared with, or `None` when no name can start with it (it holds
/// a character no name has).
pub fn prefix_key(prefix: &str) -> Option<String> {
    let key = prefix.to_ascii_lowercase();
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ')
        .then_some(key)
}

/// A group with its number of members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub account_id: Uuid,
    pub id: Uuid,
    pub name: String,
    /// Lower-cased name: unique per account.
    pub name_key: String,
    pub description: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub member_count: i64,
}

/// `CreateGroup`, checked.
#[derive(Debug, Clone)]
pub struct CreateGroup {
    pub account_id: Uuid,
    pub name: GroupName,
    pub description: String,
    pub request_id: Option<String>,
}

/// A change to a group; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub name: Option<GroupName>,
    pub description: Option<String>,
}

/// A new group in the locked `account`. A taken name is the more useful answer than a full
/// account, so the name is checked before the cap.
pub fn create(
    account: &Account,
    name: &GroupName,
    description: &str,
    name_taken: bool,
    now: DateTime<Utc>,
) -> DomainResult<Group> {
    if name_taken {
        return Err(name_taken_error());
    }
    if account.group_count >= account.max_groups {
        return Err(limit_reached(account.max_groups));
    }
    Ok(Group {
        account_id: account.id,
        id: Uuid::now_v7(),
        name: name.name().to_owned(),
        name_key: name.key().to_owned(),
        description: description.to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
        member_count: 0,
    })
}

/// Fails with `ETAG_MISMATCH` unless `expected` is absent or is the group's version.
pub fn check_etag(group: &Group, expected: Option<i64>) -> DomainResult<()> {
    match expected {
        Some(version) if version != group.version => Err(DomainError::etag_mismatch("group")),
        _ => Ok(()),
    }
}

/// Adding `user_ids` (in request order) when only `members` are users of the account: all or
/// nothing, with a violation `user_ids[i]` at each position of an id that is not.
pub fn check_members(user_ids: &[Uuid], members: &HashSet<Uuid>) -> DomainResult<()> {
    let violations: Vec<FieldViolation> = user_ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !members.contains(id))
        .map(|(i, _)| FieldViolation {
            field: format!("user_ids[{i}]"),
            description: "is not a user of this account".to_owned(),
        })
        .collect();
    if violations.is_empty() {
        return Ok(());
    }
    Err(DomainError::InvalidArgument {
        reason: reason::INVALID_ARGUMENT,
        violations,
    })
}

pub fn group_not_found() -> DomainError {
    DomainError::not_found(reason::GROUP_NOT_FOUND, "group")
}

pub fn name_taken_error() -> DomainError {
    DomainError::AlreadyExists {
        reason: reason::GROUP_NAME_TAKEN,
        message:
            "the account already has a group with this name (names are compared ignoring case)"
                .to_owned(),
    }
}

pub fn limit_reached(max_groups: i32) -> DomainError {
    DomainError::ResourceExhausted {
        reason: reason::GROUP_LIMIT_REACHED,
        message: format!(
            "the account has reached its limit of {max_groups} groups; delete a group, or ask \
             support to raise the limit"
        ),
        retry_after: None,
    }
    .with_metadata("max_groups", max_groups.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_ascii_and_keyed_ignoring_case() {
        let checked = name("  Marketing  Team ").unwrap();
        assert_eq!(
            (checked.name(), checked.key()),
            ("Marketing  Team", "marketing  team")
        );
        assert_eq!(name(&"a".repeat(64)).unwrap().name().len(), 64);
        for bad in ["", "   ", "Sales-Team!", "Équipe", "tab\there", "a_b"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(name(&"a".repeat(65)).is_err());
        // Trimming happens before the length check.
        assert!(name(&format!("  {}  ", "a".repeat(64))).is_ok());
    }

    #[test]
    fn descriptions_are_free_text_up_to_1024_characters() {
        assert!(description("").is_ok());
        assert!(description("Line one\nline two, with ünïcode").is_ok());
        assert!(description(&"é".repeat(1024)).is_ok());
        assert!(description(&"é".repeat(1025)).is_err());
        assert!(description("bell\u{0007}").is_err());
        assert!(description("cost \u{202E}001$").is_err());
    }

    #[test]
    fn prefixes_match_names_ignoring_case() {
        assert_eq!(prefix_key("Sal").as_deref(), Some("sal"));
        assert_eq!(prefix_key(""), Some(String::new()));
        assert_eq!(prefix_key("Sales-"), None);
    }

    fn account(group_count: i32, max_groups: i32) -> Account {
        Account {
            group_count,
            ..Account::new("Acme".into(), 10, max_groups, Utc::now())
        }
    }

    #[test]
    fn a_taken_name_is_reported_before_a_full_account() {
        let sales = name("Sales").unwrap();
        let now = Utc::now();
        // (groups, cap, name taken, expected reason)
        let table = [
            (0, 5, false, None),
            (4, 5, false, None),
            (5, 5, false, Some(reason::GROUP_LIMIT_REACHED)),
            (5, 5, true, Some(reason::GROUP_NAME_TAKEN)),
            (0, 5, true, Some(reason::GROUP_NAME_TAKEN)),
            (0, 0, false, Some(reason::GROUP_LIMIT_REACHED)),
        ];
        for (count, cap, taken, expected) in table {
            let result = create(&account(count, cap), &sales, "", taken, now);
            let got = match &result {
                Ok(group) => {
                    assert_eq!((group.name_key.as_str(), group.version), ("sales", 1));
                    None
                }
                Err(DomainError::WithMetadata { error, .. }) => match **error {
                    DomainError::ResourceExhausted { reason, .. } => Some(reason),
                    _ => panic!("{error:?}"),
                },
                Err(DomainError::AlreadyExists { reason, .. }) => Some(*reason),
                Err(other) => panic!("{other:?}"),
            };
            assert_eq!(got, expected, "{count}/{cap} taken={taken}");
        }
    }

    #[test]
    fn strangers_are_reported_at_each_position() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let members: HashSet<Uuid> = [a].into();
        assert!(check_members(&[a, a], &members).is_ok());
        let Err(DomainError::InvalidArgument { violations, .. }) =
            check_members(&[b, a, b], &members)
        else {
            panic!("expected violations");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["user_ids[0]", "user_ids[2]"]);
    }
}
