//! Sharing of DAM resources and the arithmetic of access levels (SPEC section 4).
//!
//! The level of a user on a resource comes from their role, except for Media Library Restricted
//! users, whose level is the highest over ownership (MANAGE), shares to them or to one of their
//! groups on the resource itself or on any ancestor folder (a folder share cascades down, so a
//! share lower down can raise the level, never lower it), and VIEW from a share on a collection
//! containing the resource. A user who is not an ACTIVE member has no access at all.
//!
//! The arithmetic runs over an `AccessView`: the replica's in-memory state on the hot path, rows
//! read from the database for explanations. Both answer through the same function.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{DomainError, reason};
use super::roles::{Level, MediaAccess, Permission, Role};
use super::users::MembershipStatus;

/// The DAM's reserved id of an account's root folder: never shareable, never in ancestor lists.
pub const ROOT_FOLDER_ID: &str = "root";
/// Most ancestor folders, and most collections, one check may name.
pub const MAX_PLACEMENT_IDS: usize = 256;
/// Most items of one `BatchCheckAccess`.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Longest DAM resource id.
pub const MAX_RESOURCE_ID_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    #[serde(rename = "file")]
    File,
    #[serde(rename = "folder")]
    Folder,
    #[serde(rename = "collection")]
    Collection,
}

impl ResourceType {
    pub const ALL: [ResourceType; 3] = [
        ResourceType::File,
        ResourceType::Folder,
        ResourceType::Collection,
    ];

    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::File => "file",
            ResourceType::Folder => "folder",
            ResourceType::Collection => "collection",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    /// The storage number, also the API's: resources sort files, folders, collections.
    pub fn code(self) -> i16 {
        match self {
            ResourceType::File => 1,
            ResourceType::Folder => 2,
            ResourceType::Collection => 3,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// A DAM resource: its type and the DAM's id for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceRef {
    #[serde(rename = "t")]
    pub kind: ResourceType,
    #[serde(rename = "i")]
    pub id: String,
}

impl ResourceRef {
    pub fn is_root(&self) -> bool {
        self.kind == ResourceType::Folder && self.id == ROOT_FOLDER_ID
    }
}

/// A DAM id as the API defines it: 1 to 256 printable ASCII characters.
pub fn resource_id(value: &str) -> Result<String, String> {
    check_resource_id(value).map(|()| value.to_owned())
}

/// `resource_id` without the copy.
pub fn check_resource_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.len() > MAX_RESOURCE_ID_LEN {
        return Err(format!("must be at most {MAX_RESOURCE_ID_LEN} characters"));
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII".to_owned());
    }
    Ok(())
}

/// Who a share is granted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Subject {
    #[serde(rename = "u")]
    User(Uuid),
    #[serde(rename = "g")]
    Group(Uuid),
}

impl Subject {
    /// The storage names of the kind and the id.
    pub fn parts(self) -> (&'static str, Uuid) {
        match self {
            Subject::User(id) => ("user", id),
            Subject::Group(id) => ("group", id),
        }
    }

    pub fn from_parts(kind: &str, id: Uuid) -> Option<Self> {
        match kind {
            "user" => Some(Subject::User(id)),
            "group" => Some(Subject::Group(id)),
            _ => None,
        }
    }
}

/// A level a share may grant: not `None`.
pub fn share_level(level: Level) -> Result<Level, String> {
    match level {
        Level::None => Err("must be VIEW, CONTRIBUTE or MANAGE".to_owned()),
        level => Ok(level),
    }
}

impl Level {
    /// The storage name of a share's level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::View => "view",
            Level::Contribute => "contribute",
            Level::Manage => "manage",
        }
    }

    pub fn parse(value: &str) -> Option<Level> {
        [Level::None, Level::View, Level::Contribute, Level::Manage]
            .into_iter()
            .find(|level| level.as_str() == value)
    }
}

/// A grant of a level on a resource to a user or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub id: Uuid,
    pub account_id: Uuid,
    pub resource: ResourceRef,
    pub subject: Subject,
    pub level: Level,
    /// A person id, or `service:<name>`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a resource sits, as the DAM says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Nearest first, without the root.
    pub ancestors: Vec<String>,
    pub collections: Vec<String>,
    pub owner: Option<Uuid>,
}

/// A resource to decide on, with its placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCheck {
    pub resource: ResourceRef,
    pub placement: Placement,
}

/// What one check asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// At least `required` on a resource.
    Resource {
        check: ResourceCheck,
        required: Level,
    },
    /// An account permission of the role.
    Permission(Permission),
}

/// One check: a user and a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    pub user_id: Uuid,
    pub target: Target,
}

/// The answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The effective level for a resource; `None` for a permission.
    pub level: Option<Level>,
}

/// Whether a share reaches the user directly or through one of their groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    User,
    Group,
}

/// Why a grant applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantReason {
    Role,
    Owner,
    DirectShare,
    GroupShare,
    InheritedFromFolder,
    Collection,
}

/// One source of a user's level on a resource. `S` is how the view names the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<S> {
    pub reason: GrantReason,
    /// The level this grant gives on the checked resource.
    pub level: Level,
    /// The share, for share grants.
    pub share: Option<S>,
    /// The resource the share is on, for share grants.
    pub granted_on: Option<ResourceRef>,
    /// The role, for role grants.
    pub role: Option<Role>,
}

/// A grant as the arithmetic finds it, borrowing the share and the resource it is on (the hot
/// path allocates nothing); `explain` makes owned `Grant`s of them.
#[derive(Debug, Clone, Copy)]
pub struct GrantRef<'a, S> {
    pub reason: GrantReason,
    pub level: Level,
    pub share: Option<&'a S>,
    pub granted_on: Option<(ResourceType, &'a str)>,
    pub role: Option<Role>,
}

impl<S: Clone> GrantRef<'_, S> {
    pub fn to_owned(&self) -> Grant<S> {
        Grant {
            reason: self.reason,
            level: self.level,
            share: self.share.cloned(),
            granted_on: self.granted_on.map(|(kind, id)| ResourceRef {
                kind,
                id: id.to_owned(),
            }),
            role: self.role,
        }
    }
}

/// Told of each share that reaches a user: how, its level, the share; breaks to stop.
pub type OnShare<'a, S> = &'a mut dyn FnMut(Via, Level, &S) -> ControlFlow<()>;

/// What the arithmetic reads: memberships, groups and shares of one account.
pub trait AccessView {
    /// The user and their groups, resolved once per user.
    type Reach<'a>
    where
        Self: 'a;
    /// How a share is named in explanations.
    type Share: Clone;

    /// The user's role and status in the account, `None` when not a member.
    fn member(&self, user_id: Uuid) -> Option<(Role, MembershipStatus)>;
    fn reach(&self, user_id: Uuid) -> Self::Reach<'_>;
    /// Calls `f` with each share on the resource that reaches the user (to them, or to one of
    /// their groups) until `f` breaks.
    fn shares_reaching(
        &self,
        reach: &Self::Reach<'_>,
        kind: ResourceType,
        id: &str,
        f: OnShare<'_, Self::Share>,
    ) -> ControlFlow<()>;
}

/// Calls `f` with every grant of `user_id` on `check` until `f` breaks. Not an ACTIVE member:
/// no grant. A role with an account-wide level: that one grant (Finance: none).
pub fn for_each_grant<V: AccessView>(
    view: &V,
    user_id: Uuid,
    check: &ResourceCheck,
    f: &mut dyn FnMut(GrantRef<'_, V::Share>) -> ControlFlow<()>,
) {
    let Some((role, MembershipStatus::Active)) = view.member(user_id) else {
        return;
    };
    match role.media_access() {
        MediaAccess::All(Level::None) => return,
        MediaAccess::All(level) => {
            let _ = f(GrantRef {
                reason: GrantReason::Role,
                level,
                share: None,
                granted_on: None,
                role: Some(role),
            });
            return;
        }
        MediaAccess::PerShare => {}
    }
    let _ = grants_by_share(view, user_id, check, f);
}

fn grants_by_share<V: AccessView>(
    view: &V,
    user_id: Uuid,
    check: &ResourceCheck,
    f: &mut dyn FnMut(GrantRef<'_, V::Share>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let resource = &check.resource;
    if check.placement.owner == Some(user_id) {
        f(GrantRef {
            reason: GrantReason::Owner,
            level: Level::Manage,
            share: None,
            granted_on: None,
            role: None,
        })?;
    }
    let reach = view.reach(user_id);
    view.shares_reaching(
        &reach,
        resource.kind,
        &resource.id,
        &mut |via, level, share| {
            f(GrantRef {
                reason: match via {
                    Via::User => GrantReason::DirectShare,
                    Via::Group => GrantReason::GroupShare,
                },
                level,
                share: Some(share),
                granted_on: Some((resource.kind, &resource.id)),
                role: None,
            })
        },
    )?;
    for folder in &check.placement.ancestors {
        if folder == ROOT_FOLDER_ID {
            continue;
        }
        view.shares_reaching(
            &reach,
            ResourceType::Folder,
            folder,
            &mut |_, level, share| {
                f(GrantRef {
                    reason: GrantReason::InheritedFromFolder,
                    level,
                    share: Some(share),
                    granted_on: Some((ResourceType::Folder, folder)),
                    role: None,
                })
            },
        )?;
    }
    for collection in &check.placement.collections {
        view.shares_reaching(
            &reach,
            ResourceType::Collection,
            collection,
            &mut |_, _, share| {
                f(GrantRef {
                    reason: GrantReason::Collection,
                    level: Level::View,
                    share: Some(share),
                    granted_on: Some((ResourceType::Collection, collection)),
                    role: None,
                })
            },
        )?;
    }
    ControlFlow::Continue(())
}

/// The user's effective level on the resource: the highest grant, `None` without one.
pub fn level_of<V: AccessView>(view: &V, user_id: Uuid, check: &ResourceCheck) -> Level {
    let mut best = Level::None;
    for_each_grant(view, user_id, check, &mut |grant| {
        best = best.max(grant.level);
        if best == Level::Manage {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    best
}

/// Every grant of the user on the resource, highest level first, and the level they give.
pub fn explain<V: AccessView>(
    view: &V,
    user_id: Uuid,
    check: &ResourceCheck,
) -> (Level, Vec<Grant<V::Share>>) {
    let mut grants = Vec::new();
    for_each_grant(view, user_id, check, &mut |grant| {
        grants.push(grant.to_owned());
        ControlFlow::Continue(())
    });
    // Stable: equal levels keep the order of the rules (role, owner, the resource, the
    // ancestors nearest first, the collections).
    grants.sort_by_key(|grant| std::cmp::Reverse(grant.level));
    let level = grants.first().map_or(Level::None, |grant| grant.level);
    (level, grants)
}

/// Decides one check.
pub fn decide<V: AccessView>(view: &V, item: &CheckItem) -> Decision {
    match &item.target {
        Target::Permission(permission) => Decision {
            allowed: matches!(
                view.member(item.user_id),
                Some((role, MembershipStatus::Active)) if role.has(*permission)
            ),
            level: None,
        },
        Target::Resource { check, required } => {
            let level = level_of(view, item.user_id, check);
            Decision {
                allowed: level >= *required && level > Level::None,
                level: Some(level),
            }
        }
    }
}

/// Who may share, revoke or list the shares of a resource beyond the role: a Restricted user
/// with MANAGE on it.
pub fn may_manage_shares<V: AccessView>(view: &V, user_id: Uuid, check: &ResourceCheck) -> bool {
    level_of(view, user_id, check) == Level::Manage
}

/// The root folder is never shared.
pub fn check_shareable(resource: &ResourceRef) -> Result<(), DomainError> {
    if resource.is_root() {
        return Err(DomainError::invalid_with(
            reason::ROOT_NOT_SHAREABLE,
            "resource.id",
            "the account root folder cannot be shared",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// An account in plain maps, for the rules' tables.
    #[derive(Default)]
    struct Fixture {
        members: HashMap<Uuid, (Role, MembershipStatus)>,
        groups: HashMap<Uuid, HashSet<Uuid>>,
        shares: Vec<(ResourceRef, Subject, Level, u32)>,
    }

    impl AccessView for Fixture {
        type Reach<'a> = (Uuid, HashSet<Uuid>);
        type Share = u32;

        fn member(&self, user_id: Uuid) -> Option<(Role, MembershipStatus)> {
            self.members.get(&user_id).copied()
        }

        fn reach(&self, user_id: Uuid) -> Self::Reach<'_> {
            (
                user_id,
                self.groups.get(&user_id).cloned().unwrap_or_default(),
            )
        }

        fn shares_reaching(
            &self,
            reach: &Self::Reach<'_>,
            kind: ResourceType,
            id: &str,
            f: OnShare<'_, u32>,
        ) -> ControlFlow<()> {
            for (resource, subject, level, share) in &self.shares {
                if resource.kind != kind || resource.id != id {
                    continue;
                }
                let via = match subject {
                    Subject::User(u) if *u == reach.0 => Via::User,
                    Subject::Group(g) if reach.1.contains(g) => Via::Group,
                    _ => continue,
                };
                f(via, *level, share)?;
            }
            ControlFlow::Continue(())
        }
    }

    fn r(kind: ResourceType, id: &str) -> ResourceRef {
        ResourceRef {
            kind,
            id: id.to_owned(),
        }
    }

    fn file_in(ancestors: &[&str], collections: &[&str], owner: Option<Uuid>) -> ResourceCheck {
        ResourceCheck {
            resource: r(ResourceType::File, "f1"),
            placement: Placement {
                ancestors: ancestors.iter().map(|a| (*a).to_owned()).collect(),
                collections: collections.iter().map(|c| (*c).to_owned()).collect(),
                owner,
            },
        }
    }

    const USER: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const GROUP: Uuid = Uuid::from_u128(10);
    const OTHER_GROUP: Uuid = Uuid::from_u128(11);

    fn restricted() -> Fixture {
        let mut fixture = Fixture::default();
        fixture.members.insert(
            USER,
            (Role::MediaLibraryRestricted, MembershipStatus::Active),
        );
        fixture.members.insert(
            OTHER,
            (Role::MediaLibraryRestricted, MembershipStatus::Active),
        );
        fixture.groups.insert(USER, HashSet::from([GROUP]));
        fixture.groups.insert(OTHER, HashSet::from([OTHER_GROUP]));
        fixture
    }

    #[test]
    fn roles_give_their_account_wide_level_whatever_is_shared() {
        let table = [
            (Role::AccountAdministrator, Level::Manage),
            (Role::Developer, Level::Manage),
            (Role::MediaLibraryFullAccess, Level::Manage),
            (Role::MediaLibraryViewOnly, Level::View),
            (Role::Finance, Level::None),
            (Role::MediaLibraryRestricted, Level::None),
        ];
        for (role, expected) in table {
            let mut fixture = restricted();
            fixture
                .members
                .insert(USER, (role, MembershipStatus::Active));
            let check = file_in(&["a"], &[], None);
            assert_eq!(level_of(&fixture, USER, &check), expected, "{role}");
            // A share does not move a role's level (View-only stays VIEW, Finance NONE).
            fixture.shares.push((
                r(ResourceType::File, "f1"),
                Subject::User(USER),
                Level::Contribute,
                1,
            ));
            let with_share = level_of(&fixture, USER, &check);
            let want = if role == Role::MediaLibraryRestricted {
                Level::Contribute
            } else {
                expected
            };
            assert_eq!(with_share, want, "{role} with a share");
            let (level, grants) = explain(&fixture, USER, &check);
            assert_eq!(level, want);
            match role.media_access() {
                MediaAccess::All(Level::None) => assert!(grants.is_empty()),
                MediaAccess::All(_) => {
                    assert_eq!(grants.len(), 1);
                    assert_eq!(grants[0].reason, GrantReason::Role);
                    assert_eq!(grants[0].role, Some(role));
                }
                MediaAccess::PerShare => {
                    assert_eq!(grants[0].reason, GrantReason::DirectShare)
                }
            }
        }
    }

    #[test]
    fn every_path_of_a_restricted_user_gives_its_level() {
        // (share on, subject, share level, expected level, expected reason)
        let file = r(ResourceType::File, "f1");
        let parent = r(ResourceType::Folder, "a");
        let grandparent = r(ResourceType::Folder, "b");
        let collection = r(ResourceType::Collection, "c");
        let cases = [
            (
                &file,
                Subject::User(USER),
                Level::Contribute,
                Level::Contribute,
                GrantReason::DirectShare,
            ),
            (
                &file,
                Subject::Group(GROUP),
                Level::View,
                Level::View,
                GrantReason::GroupShare,
            ),
            (
                &parent,
                Subject::User(USER),
                Level::Manage,
                Level::Manage,
                GrantReason::InheritedFromFolder,
            ),
            (
                &grandparent,
                Subject::Group(GROUP),
                Level::Contribute,
                Level::Contribute,
                GrantReason::InheritedFromFolder,
            ),
            (
                &collection,
                Subject::User(USER),
                Level::Manage,
                Level::View,
                GrantReason::Collection,
            ),
            (
                &collection,
                Subject::Group(GROUP),
                Level::Contribute,
                Level::View,
                GrantReason::Collection,
            ),
            // Shares to someone else, or to a group the user is not in, give nothing.
            (
                &file,
                Subject::User(OTHER),
                Level::Manage,
                Level::None,
                GrantReason::DirectShare,
            ),
            (
                &parent,
                Subject::Group(OTHER_GROUP),
                Level::Manage,
                Level::None,
                GrantReason::DirectShare,
            ),
        ];
        for (on, subject, share, expected, why) in cases {
            let mut fixture = restricted();
            fixture.shares.push((on.clone(), subject, share, 7));
            let check = file_in(&["a", "b"], &["c"], None);
            assert_eq!(
                level_of(&fixture, USER, &check),
                expected,
                "{on:?} {subject:?}"
            );
            let (level, grants) = explain(&fixture, USER, &check);
            assert_eq!(level, expected);
            if expected == Level::None {
                assert!(grants.is_empty());
            } else {
                assert_eq!(grants.len(), 1);
                assert_eq!(grants[0].reason, why);
                assert_eq!(grants[0].share, Some(7));
                assert_eq!(grants[0].granted_on.as_ref(), Some(on));
            }
        }
    }

    #[test]
    fn a_share_lower_down_raises_and_never_lowers() {
        let mut fixture = restricted();
        let check = file_in(&["a", "b"], &[], None);
        // MANAGE on the grandparent, VIEW on the file: MANAGE.
        fixture.shares.push((
            r(ResourceType::Folder, "b"),
            Subject::User(USER),
            Level::Manage,
            1,
        ));
        fixture.shares.push((
            r(ResourceType::File, "f1"),
            Subject::User(USER),
            Level::View,
            2,
        ));
        assert_eq!(level_of(&fixture, USER, &check), Level::Manage);
        // VIEW on the grandparent, CONTRIBUTE through a group on the parent: CONTRIBUTE.
        let mut fixture = restricted();
        fixture.shares.push((
            r(ResourceType::Folder, "b"),
            Subject::User(USER),
            Level::View,
            1,
        ));
        fixture.shares.push((
            r(ResourceType::Folder, "a"),
            Subject::Group(GROUP),
            Level::Contribute,
            2,
        ));
        assert_eq!(level_of(&fixture, USER, &check), Level::Contribute);
        let (_, grants) = explain(&fixture, USER, &check);
        let levels: Vec<_> = grants.iter().map(|g| (g.level, g.share)).collect();
        assert_eq!(
            levels,
            [(Level::Contribute, Some(2)), (Level::View, Some(1))]
        );
    }

    #[test]
    fn a_collection_share_gives_view_on_its_files_and_its_own_level_on_itself() {
        let mut fixture = restricted();
        let collection = r(ResourceType::Collection, "c");
        fixture
            .shares
            .push((collection.clone(), Subject::User(USER), Level::Manage, 1));
        let in_it = file_in(&[], &["c"], None);
        assert_eq!(level_of(&fixture, USER, &in_it), Level::View);
        let itself = ResourceCheck {
            resource: collection,
            placement: Placement::default(),
        };
        assert_eq!(level_of(&fixture, USER, &itself), Level::Manage);
    }

    #[test]
    fn the_owner_manages_and_a_stranger_owner_gives_nothing() {
        let fixture = restricted();
        assert_eq!(
            level_of(&fixture, USER, &file_in(&[], &[], Some(USER))),
            Level::Manage
        );
        assert_eq!(
            level_of(&fixture, USER, &file_in(&[], &[], Some(OTHER))),
            Level::None
        );
        let (_, grants) = explain(&fixture, USER, &file_in(&[], &[], Some(USER)));
        assert_eq!(grants[0].reason, GrantReason::Owner);
    }

    #[test]
    fn a_member_who_is_not_active_has_nothing_and_permissions_follow_the_role() {
        for status in [MembershipStatus::Invited, MembershipStatus::Disabled] {
            let mut fixture = restricted();
            fixture
                .members
                .insert(USER, (Role::AccountAdministrator, status));
            let item = CheckItem {
                user_id: USER,
                target: Target::Resource {
                    check: file_in(&[], &[], Some(USER)),
                    required: Level::View,
                },
            };
            assert_eq!(
                decide(&fixture, &item),
                Decision {
                    allowed: false,
                    level: Some(Level::None)
                }
            );
            let permission = CheckItem {
                user_id: USER,
                target: Target::Permission(Permission::UsersManage),
            };
            assert!(!decide(&fixture, &permission).allowed);
        }
        let stranger = CheckItem {
            user_id: Uuid::from_u128(99),
            target: Target::Permission(Permission::AuditView),
        };
        assert!(!decide(&restricted(), &stranger).allowed);
        let mut fixture = restricted();
        fixture
            .members
            .insert(USER, (Role::Finance, MembershipStatus::Active));
        let billing = CheckItem {
            user_id: USER,
            target: Target::Permission(Permission::BillingView),
        };
        assert_eq!(
            decide(&fixture, &billing),
            Decision {
                allowed: true,
                level: None
            }
        );
    }

    #[test]
    fn required_level_decides_allowed() {
        let mut fixture = restricted();
        fixture.shares.push((
            r(ResourceType::File, "f1"),
            Subject::User(USER),
            Level::Contribute,
            1,
        ));
        for (required, allowed) in [
            (Level::View, true),
            (Level::Contribute, true),
            (Level::Manage, false),
        ] {
            let item = CheckItem {
                user_id: USER,
                target: Target::Resource {
                    check: file_in(&[], &[], None),
                    required,
                },
            };
            assert_eq!(decide(&fixture, &item).allowed, allowed, "{required:?}");
        }
    }

    #[test]
    fn the_root_is_never_shareable_nor_inherited_from() {
        assert!(check_shareable(&r(ResourceType::Folder, "root")).is_err());
        assert!(check_shareable(&r(ResourceType::File, "root")).is_ok());
        let mut fixture = restricted();
        fixture.shares.push((
            r(ResourceType::Folder, "root"),
            Subject::User(USER),
            Level::Manage,
            1,
        ));
        assert_eq!(
            level_of(&fixture, USER, &file_in(&["a", "root"], &[], None)),
            Level::None
        );
    }

    #[test]
    fn resource_ids_are_printable_ascii_of_bounded_length() {
        assert!(resource_id("6389f0c5e3a1b2c3d4e5f6a7").is_ok());
        assert!(resource_id("a b/c").is_ok());
        assert!(resource_id("").is_err());
        assert!(resource_id("tab\there").is_err());
        assert!(resource_id("é").is_err());
        assert!(resource_id(&"x".repeat(256)).is_ok());
        assert!(resource_id(&"x".repeat(257)).is_err());
    }
}
