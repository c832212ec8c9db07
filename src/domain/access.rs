//! AccessService rules: what a member may do in the account (the role's row of the permission
//! matrix) and on each DAM resource.

use super::roles::{Level, MediaAccess, Permission, Role};

/// The caller's account-wide rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyPermissions {
    pub role: Role,
    /// Sorted by name.
    pub permissions: Vec<Permission>,
    pub media: MediaAccess,
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
