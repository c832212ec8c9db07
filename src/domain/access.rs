//! AccessService rules: what a member may do in the account (the role's row of the permission
//! matrix) and, later, on each DAM resource.

use uuid::Uuid;

use crate::store::Store;

use super::actor::Actor;
use super::error::{DomainError, DomainResult, reason};
use super::roles::{Level, MediaAccess, Permission, Role};
use super::users::user_not_found;

/// The caller's account-wide rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyPermissions {
    pub role: Role,
    /// Sorted by name.
    pub permissions: Vec<Permission>,
    pub media: MediaAccess,
}

#[derive(Clone)]
pub struct Access {
    store: Store,
}

impl Access {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The caller's role (as stored now, not as in the token) and what it grants.
    pub async fn my_permissions(
        &self,
        actor: &Actor,
        account_id: Uuid,
    ) -> DomainResult<MyPermissions> {
        let person = match actor {
            Actor::Person(person) => person,
            Actor::Anonymous => {
                return Err(DomainError::unauthenticated(
                    reason::CREDENTIALS_MISSING,
                    "credentials are required",
                ));
            }
            Actor::Service(_) => {
                return Err(DomainError::permission_denied(
                    reason::PERMISSION_MISSING,
                    "permissions belong to a person: use a person's access token",
                ));
            }
        };
        if person.account_id != account_id {
            return Err(DomainError::permission_denied(
                reason::ACCOUNT_MISMATCH,
                "the access token is for another account",
            ));
        }
        let member = self
            .store
            .require_member(account_id, person.user_id)
            .await?;
        let role = member.role().ok_or_else(user_not_found)?;
        Ok(permissions_of(role))
    }
}

/// The role's row of the matrix, permissions sorted by name.
pub fn permissions_of(role: Role) -> MyPermissions {
    let mut permissions = role.permissions().to_vec();
    permissions.sort_by_key(|p| p.as_str());
    MyPermissions {
        role,
        permissions,
        media: role.media_access(),
    }
}

/// The account-wide media level a role gives (`None` for Restricted: per share).
pub fn media_level(access: MediaAccess) -> Level {
    match access {
        MediaAccess::All(level) => level,
        MediaAccess::PerShare => Level::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_come_sorted_from_the_matrix() {
        let finance = permissions_of(Role::Finance);
        let names: Vec<_> = finance.permissions.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["billing.manage", "billing.view", "usage.view"]);
        assert_eq!(media_level(finance.media), Level::None);
        assert_eq!(
            permissions_of(Role::AccountAdministrator).permissions.len(),
            8
        );
        assert_eq!(
            permissions_of(Role::MediaLibraryRestricted).media,
            MediaAccess::PerShare
        );
    }
}
