//! The access change log's vocabulary: what a write changed in the data access decisions read,
//! recorded with the access revision it produced, so that replicas holding an account's data in
//! memory catch up by applying it instead of reloading.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::roles::{Level, Role};
use super::sharing::{ResourceRef, Subject};
use super::users::MembershipStatus;

/// What a write changed in the data access decisions read, recorded with the access revision
/// it produced so replicas catch up by applying it. Cascades are part of the change: removing a
/// member also drops their shares and group memberships, deleting a group its members and shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum AccessChange {
    /// A share was created or its level replaced.
    #[serde(rename = "share")]
    Shared {
        r: ResourceRef,
        s: Subject,
        l: StoredLevel,
    },
    /// A share was deleted.
    #[serde(rename = "unshare")]
    Unshared { r: ResourceRef, s: Subject },
    /// A member's role or status is now this (a new or changed membership).
    #[serde(rename = "member")]
    Member {
        u: Uuid,
        role: String,
        status: String,
    },
    /// A member left every group of the account (a role change).
    #[serde(rename = "left_groups")]
    LeftGroups { u: Uuid },
    /// A member was removed: with their group memberships and the shares to them.
    #[serde(rename = "removed")]
    Removed { u: Uuid },
    /// Users joined a group.
    #[serde(rename = "joined")]
    Joined { g: Uuid, u: Vec<Uuid> },
    /// Users left a group.
    #[serde(rename = "left")]
    Left { g: Uuid, u: Vec<Uuid> },
    /// A group was deleted, with its memberships and its shares.
    #[serde(rename = "group_deleted")]
    GroupDeleted { g: Uuid },
}

/// A share level as the change log writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLevel(pub u8);

impl From<Level> for StoredLevel {
    fn from(level: Level) -> Self {
        StoredLevel(level as u8)
    }
}

impl StoredLevel {
    pub fn level(self) -> Level {
        match self.0 {
            1 => Level::View,
            2 => Level::Contribute,
            3 => Level::Manage,
            _ => Level::None,
        }
    }
}

impl AccessChange {
    pub fn member(user_id: Uuid, role: Role, status: MembershipStatus) -> Self {
        AccessChange::Member {
            u: user_id,
            role: role.as_str().to_owned(),
            status: status.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sharing::ResourceType;

    const USER: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const GROUP: Uuid = Uuid::from_u128(10);

    fn r(kind: ResourceType, id: &str) -> ResourceRef {
        ResourceRef {
            kind,
            id: id.to_owned(),
        }
    }

    #[test]
    fn changes_read_back_as_written() {
        let changes = vec![
            AccessChange::Shared {
                r: r(ResourceType::Folder, "a"),
                s: Subject::Group(GROUP),
                l: Level::Contribute.into(),
            },
            AccessChange::member(USER, Role::Developer, MembershipStatus::Disabled),
            AccessChange::Left {
                g: GROUP,
                u: vec![USER, OTHER],
            },
        ];
        let text = serde_json::to_string(&changes).unwrap_or_default();
        let back: Vec<AccessChange> = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, changes);
        assert_eq!(
            StoredLevel::from(Level::Contribute).level(),
            Level::Contribute
        );
    }
}
