//! Proto <-> domain conversions shared by the services.

use chrono::{DateTime, Utc};
use prost_types::{FieldMask, Timestamp};

use crate::domain::error::Violations;
use crate::domain::roles::Role;
use crate::domain::users::UserEtag;
use crate::domain::validate;
use crate::proto;
use crate::store::accounts::status;
use crate::store::entities::{account, membership, user};
use crate::store::users::Member;

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

pub fn status_to_proto(stored: &str) -> proto::MembershipStatus {
    match stored {
        status::INVITED => proto::MembershipStatus::Invited,
        status::ACTIVE => proto::MembershipStatus::Active,
        status::DISABLED => proto::MembershipStatus::Disabled,
        _ => proto::MembershipStatus::Unspecified,
    }
}

pub fn account(model: &account::Model) -> proto::Account {
    proto::Account {
        id: model.id.to_string(),
        name: model.name.clone(),
        settings: Some(proto::AccountSettings {
            enforce_mfa: model.enforce_mfa,
        }),
        limits: Some(proto::AccountLimits {
            max_users: model.max_users,
            max_groups: model.max_groups,
        }),
        user_count: model.user_count,
        group_count: model.group_count,
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        etag: validate::etag_of(model.version),
        sso_enabled: false,
    }
}

/// A person as a member of one account.
pub fn user(
    person: &user::Model,
    membership: &membership::Model,
    enforce_mfa: bool,
) -> proto::User {
    proto::User {
        id: person.id.to_string(),
        account_id: membership.account_id.to_string(),
        email: person.email.clone(),
        display_name: person.display_name.clone(),
        role: Role::parse(&membership.role).map_or(proto::Role::Unspecified, role_to_proto) as i32,
        status: status_to_proto(&membership.status) as i32,
        mfa_enabled: person.mfa_enabled,
        mfa_enforced: enforce_mfa,
        has_password: person.password_hash.is_some(),
        create_time: Some(timestamp(membership.created_at)),
        update_time: Some(timestamp(membership.updated_at.max(person.updated_at))),
        last_login_time: membership.last_login_at.map(timestamp),
        // Person and membership change independently; either change moves the etag.
        etag: UserEtag {
            membership: membership.version,
            person: person.version,
        }
        .to_string(),
        invitation_expire_time: None,
    }
}

/// A member as the API shows it.
pub fn member(member: &Member) -> proto::User {
    proto::User {
        invitation_expire_time: member
            .invitation_expires_at
            .filter(|_| member.membership.status == status::INVITED)
            .map(timestamp),
        ..user(&member.person, &member.membership, member.enforce_mfa)
    }
}

/// A membership status named in a request filter: unspecified means any.
pub fn status_filter(value: i32) -> Result<Option<&'static str>, String> {
    match proto::MembershipStatus::try_from(value) {
        Ok(proto::MembershipStatus::Unspecified) => Ok(None),
        Ok(proto::MembershipStatus::Invited) => Ok(Some(status::INVITED)),
        Ok(proto::MembershipStatus::Active) => Ok(Some(status::ACTIVE)),
        Ok(proto::MembershipStatus::Disabled) => Ok(Some(status::DISABLED)),
        Err(_) => Err(format!("{value} is not a known status")),
    }
}

/// The paths of a required `update_mask`, each checked against `allowed` (`*` means all of them).
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
        if path == "*" {
            out.extend(allowed.iter().map(|p| p.to_string()));
        } else if allowed.contains(&path.as_str()) {
            out.push(path.clone());
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
