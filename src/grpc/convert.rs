//! Proto <-> domain conversions shared by the services.

use chrono::{DateTime, Utc};
use prost_types::{FieldMask, Timestamp};

use crate::domain::accounts::Account;
use crate::domain::error::Violations;
use crate::domain::groups::Group;
use crate::domain::roles::Role;
use crate::domain::users::{Member, MembershipStatus};
use crate::domain::validate;
use crate::proto;

pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn role_to_proto(role: Role) -> proto::Role {
    match role {
        Role::AccountAdministrator => proto::Role::AccountAdministrator,
        Role::Developer => proto::Role::Developer,
        Role::MediaLibraryFullAccess => proto::Role::MediaLibraryFullAccess,
        Role::MediaLibraryViewOnly => proto::Role::MediaLibraryViewOnly,
        Role::MediaLibraryRestricted => proto::Role::MediaLibraryRestricted,
        Role::Finance => proto::Role::Finance,
    }
}

/// A role named in a request: unspecified and unknown values are refused.
pub fn role_from_proto(value: i32) -> Result<Role, String> {
    match proto::Role::try_from(value) {
        Ok(proto::Role::AccountAdministrator) => Ok(Role::AccountAdministrator),
        Ok(proto::Role::Developer) => Ok(Role::Developer),
        Ok(proto::Role::MediaLibraryFullAccess) => Ok(Role::MediaLibraryFullAccess),
        Ok(proto::Role::MediaLibraryViewOnly) => Ok(Role::MediaLibraryViewOnly),
        Ok(proto::Role::MediaLibraryRestricted) => Ok(Role::MediaLibraryRestricted),
        Ok(proto::Role::Finance) => Ok(Role::Finance),
        Ok(proto::Role::Unspecified) => Err("is required".to_owned()),
        Err(_) => Err(format!("{value} is not a known role")),
    }
}

pub fn status_to_proto(status: MembershipStatus) -> proto::MembershipStatus {
    match status {
        MembershipStatus::Invited => proto::MembershipStatus::Invited,
        MembershipStatus::Active => proto::MembershipStatus::Active,
        MembershipStatus::Disabled => proto::MembershipStatus::Disabled,
    }
}

/// A membership status named in a request filter: unspecified means any.
pub fn status_filter(value: i32) -> Result<Option<MembershipStatus>, String> {
    match proto::MembershipStatus::try_from(value) {
        Ok(proto::MembershipStatus::Unspecified) => Ok(None),
        Ok(proto::MembershipStatus::Invited) => Ok(Some(MembershipStatus::Invited)),
        Ok(proto::MembershipStatus::Active) => Ok(Some(MembershipStatus::Active)),
        Ok(proto::MembershipStatus::Disabled) => Ok(Some(MembershipStatus::Disabled)),
        Err(_) => Err(format!("{value} is not a known status")),
    }
}

pub fn account(account: &Account) -> proto::Account {
    proto::Account {
        id: account.id.to_string(),
        name: account.name.clone(),
        settings: Some(proto::AccountSettings {
            enforce_mfa: account.enforce_mfa,
        }),
        limits: Some(proto::AccountLimits {
            max_users: account.max_users,
            max_groups: account.max_groups,
        }),
        user_count: account.user_count,
        group_count: account.group_count,
        create_time: Some(timestamp(account.created_at)),
        update_time: Some(timestamp(account.updated_at)),
        etag: validate::etag_of(account.version),
        sso_enabled: false,
    }
}

/// A member as the API shows them. Person and membership change independently; either change
/// moves the etag.
pub fn member(member: &Member) -> proto::User {
    let (person, membership) = (&member.person, &member.membership);
    proto::User {
        id: person.id.to_string(),
        account_id: membership.account_id.to_string(),
        email: person.email.clone(),
        display_name: person.display_name.clone(),
        role: role_to_proto(membership.role) as i32,
        status: status_to_proto(membership.status) as i32,
        mfa_enabled: person.mfa_enabled,
        mfa_enforced: member.enforce_mfa,
        has_password: person.has_password(),
        create_time: Some(timestamp(membership.created_at)),
        update_time: Some(timestamp(membership.updated_at.max(person.updated_at))),
        last_login_time: membership.last_login_at.map(timestamp),
        etag: member.etag().to_string(),
        invitation_expire_time: member.invitation_expires_at.map(timestamp),
    }
}

/// A group as the API shows it.
pub fn group(group: &Group) -> proto::Group {
    proto::Group {
        id: group.id.to_string(),
        account_id: group.account_id.to_string(),
        name: group.name.clone(),
        description: group.description.clone(),
        member_count: i32::try_from(group.member_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(group.created_at)),
        update_time: Some(timestamp(group.updated_at)),
        etag: validate::etag_of(group.version),
    }
}

/// `page_size` as the contract defines it (0: the default; above the maximum: capped).
pub fn page_size(v: &mut Violations, requested: i32) -> Option<u64> {
    v.check("page_size", crate::domain::page::page_size(requested))
}

/// A mask path as the proto names the field: `enforceMfa`, the JSON spelling a client may have
/// sent in binary, is `enforce_mfa`.
fn snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The paths of a required `update_mask`, each checked against `allowed` (`*` means all of them);
/// a path may be spelled as the proto names the field (`enforce_mfa`) or in lowerCamelCase
/// (`enforceMfa`).
pub fn mask_paths(
    violations: &mut Violations,
    mask: Option<&FieldMask>,
    allowed: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        violations.add(
            "update_mask",
            format!("is required; allowed paths: {}", allowed.join(", ")),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for path in paths {
        let field = snake_case(path);
        if path == "*" {
            out.extend(allowed.iter().map(|p| p.to_string()));
        } else if allowed.contains(&field.as_str()) {
            out.push(field);
        } else {
            violations.add(
                "update_mask",
                format!(
                    "{path:?} cannot be updated; allowed paths: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_paths_are_read_in_either_spelling() {
        let mask = FieldMask {
            paths: vec!["enforceMfa".into(), "display_name".into()],
        };
        let mut v = Violations::new();
        let paths = mask_paths(&mut v, Some(&mask), &["display_name", "enforce_mfa"]);
        assert!(v.is_empty());
        assert_eq!(paths, ["display_name", "enforce_mfa"]);
        let mask = FieldMask {
            paths: vec!["enforce-mfa".into()],
        };
        let mut v = Violations::new();
        assert!(mask_paths(&mut v, Some(&mask), &["enforce_mfa"]).is_empty());
        assert!(!v.is_empty());
    }
}
