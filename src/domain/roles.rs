//! The six predefined roles and what each may do: the permission matrix of the product, in one place.

use std::fmt;

/// A member's role in one account. Exactly one per membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    AccountAdministrator,
    Developer,
    MediaLibraryFullAccess,
    MediaLibraryViewOnly,
    MediaLibraryRestricted,
    Finance,
}

/// An account-wide permission. The strings are part of the API and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    UsersManage,
    SettingsView,
    SettingsManage,
    UsageView,
    BillingView,
    BillingManage,
    AuditView,
    AuditManage,
}

/// A level on a media resource, ordered `None < View < Contribute < Manage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    None,
    View,
    Contribute,
    Manage,
}

/// What a role gives on every media resource of the account, before any share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaAccess {
    /// The same level on every resource.
    All(Level),
    /// Only what shares (and ownership) give.
    PerShare,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::AccountAdministrator,
        Role::Developer,
        Role::MediaLibraryFullAccess,
        Role::MediaLibraryViewOnly,
        Role::MediaLibraryRestricted,
        Role::Finance,
    ];

    /// The storage and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::AccountAdministrator => "account_administrator",
            Role::Developer => "developer",
            Role::MediaLibraryFullAccess => "media_library_full_access",
            Role::MediaLibraryViewOnly => "media_library_view_only",
            Role::MediaLibraryRestricted => "media_library_restricted",
            Role::Finance => "finance",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }

    /// The role's row of the permission matrix.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::AccountAdministrator => &[
                UsersManage,
                SettingsView,
                SettingsManage,
                UsageView,
                BillingView,
                BillingManage,
                AuditView,
                AuditManage,
            ],
            Role::Developer => &[
                SettingsView,
                SettingsManage,
                UsageView,
                AuditView,
                AuditManage,
            ],
            Role::MediaLibraryFullAccess => &[AuditView, AuditManage],
            Role::MediaLibraryViewOnly => &[AuditView],
            Role::MediaLibraryRestricted => &[],
            Role::Finance => &[UsageView, BillingView, BillingManage],
        }
    }

    pub fn has(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    pub fn media_access(self) -> MediaAccess {
        match self {
            Role::AccountAdministrator | Role::Developer | Role::MediaLibraryFullAccess => {
                MediaAccess::All(Level::Manage)
            }
            Role::MediaLibraryViewOnly => MediaAccess::All(Level::View),
            Role::MediaLibraryRestricted => MediaAccess::PerShare,
            Role::Finance => MediaAccess::All(Level::None),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::UsersManage,
        Permission::SettingsView,
        Permission::SettingsManage,
        Permission::UsageView,
        Permission::BillingView,
        Permission::BillingManage,
        Permission::AuditView,
        Permission::AuditManage,
    ];

    /// The API name, e.g. `users.manage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersManage => "users.manage",
            Permission::SettingsView => "settings.view",
            Permission::SettingsManage => "settings.manage",
            Permission::UsageView => "usage.view",
            Permission::BillingView => "billing.view",
            Permission::BillingManage => "billing.manage",
            Permission::AuditView => "audit.view",
            Permission::AuditManage => "audit.manage",
        }
    }

    pub fn parse(value: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_administrators_manage_users() {
        for role in Role::ALL {
            assert_eq!(
                role.has(Permission::UsersManage),
                role == Role::AccountAdministrator,
                "{role}"
            );
        }
    }

    #[test]
    fn matrix_matches_the_product_table() {
        use Permission::*;
        let yes = |role: Role, p: Permission| role.has(p);
        assert!(yes(Role::Developer, SettingsManage));
        assert!(!yes(Role::Developer, BillingView));
        assert!(yes(Role::Finance, BillingManage));
        assert!(yes(Role::Finance, UsageView));
        assert!(!yes(Role::Finance, AuditView));
        assert!(yes(Role::MediaLibraryViewOnly, AuditView));
        assert!(!yes(Role::MediaLibraryViewOnly, AuditManage));
        assert!(yes(Role::MediaLibraryFullAccess, AuditManage));
        assert!(Role::MediaLibraryRestricted.permissions().is_empty());
        assert_eq!(
            Role::MediaLibraryViewOnly.media_access(),
            MediaAccess::All(Level::View)
        );
        assert_eq!(Role::Finance.media_access(), MediaAccess::All(Level::None));
        assert_eq!(
            Role::MediaLibraryRestricted.media_access(),
            MediaAccess::PerShare
        );
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Some(permission));
        }
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Level::None < Level::View);
        assert!(Level::View < Level::Contribute);
        assert!(Level::Contribute < Level::Manage);
    }
}
