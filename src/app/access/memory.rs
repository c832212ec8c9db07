//! One account's access data in memory: memberships, who is in which group, and the shares by
//! resource, compact enough for millions of shares (a share is a subject number and a level
//! under its resource's id). Changes apply as the change log records them, cascades included.

use std::collections::HashMap;
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::access_changes::AccessChange;
use crate::domain::roles::{Level, Role};
use crate::domain::sharing::{AccessView, OnShare, ResourceRef, ResourceType, Subject, Via};
use crate::domain::users::MembershipStatus;

/// A subject as a number: users count up from 0, groups have the top bit set.
type SubjectNo = u32;
const GROUP_BIT: u32 = 1 << 31;

/// The shares on one resource: (subject, level) pairs. Almost always one.
#[derive(Debug, Clone)]
enum Grants {
    One((SubjectNo, Level)),
    Many(Box<[(SubjectNo, Level)]>),
}

impl Grants {
    fn as_slice(&self) -> &[(SubjectNo, Level)] {
        match self {
            Grants::One(pair) => std::slice::from_ref(pair),
            Grants::Many(list) => list,
        }
    }

    fn from_list(list: Vec<(SubjectNo, Level)>) -> Option<Self> {
        match list.as_slice() {
            [] => None,
            [pair] => Some(Grants::One(*pair)),
            _ => Some(Grants::Many(list.into_boxed_slice())),
        }
    }
}

/// Memory a share costs beyond its resource id's characters: the table slot (key, value and
/// control byte) at the table's load, and the id's allocation overhead. Used for the budget.
const SHARE_BYTES: usize = 96;
const MEMBER_BYTES: usize = 96;

#[derive(Debug, Default)]
struct Subjects {
    numbers: HashMap<Uuid, SubjectNo>,
}

impl Subjects {
    fn number(&mut self, id: Uuid, group: bool) -> SubjectNo {
        let next = self.numbers.len() as u32;
        let no = *self.numbers.entry(id).or_insert(next);
        if group { no | GROUP_BIT } else { no }
    }

    fn find(&self, id: Uuid, group: bool) -> Option<SubjectNo> {
        self.numbers
            .get(&id)
            .map(|no| if group { no | GROUP_BIT } else { *no })
    }
}

/// The access data of one account at one revision.
#[derive(Debug, Default)]
pub struct AccountAccess {
    pub revision: i64,
    members: HashMap<Uuid, (Role, MembershipStatus)>,
    /// The groups each user is in, as subject numbers.
    groups_of: HashMap<Uuid, Vec<SubjectNo>>,
    subjects: Subjects,
    /// Shares by resource type, then resource id.
    shares: [HashMap<Box<str>, Grants>; 3],
    share_count: usize,
    id_bytes: usize,
    /// Sessions of the account that ended lately (their access tokens may still be presented),
    /// with when.
    ended_sessions: HashMap<Uuid, DateTime<Utc>>,
}

fn slot(kind: ResourceType) -> usize {
    match kind {
        ResourceType::File => 0,
        ResourceType::Folder => 1,
        ResourceType::Collection => 2,
    }
}

/// The user and their groups, as subject numbers.
pub struct Reach<'a> {
    user: Option<SubjectNo>,
    groups: &'a [SubjectNo],
}

impl AccountAccess {
    pub fn new(revision: i64) -> Self {
        Self {
            revision,
            ..Self::default()
        }
    }

    pub fn share_count(&self) -> usize {
        self.share_count
    }

    /// An estimate of the memory this takes, for the cache's budget.
    pub fn bytes(&self) -> usize {
        self.share_count * SHARE_BYTES + self.id_bytes + self.members.len() * MEMBER_BYTES
    }

    /// Notes that a session ended at `at`.
    pub fn end_session(&mut self, session_id: Uuid, at: DateTime<Utc>) {
        self.ended_sessions.insert(session_id, at);
    }

    pub fn session_ended(&self, session_id: Uuid) -> bool {
        self.ended_sessions.contains_key(&session_id)
    }

    /// Forgets sessions that ended before `before`: no access token of theirs is still valid.
    pub fn forget_sessions_ended_before(&mut self, before: DateTime<Utc>) {
        self.ended_sessions.retain(|_, at| *at >= before);
    }

    pub fn set_member(&mut self, user_id: Uuid, role: Role, status: MembershipStatus) {
        self.members.insert(user_id, (role, status));
    }

    pub fn add_to_group(&mut self, group_id: Uuid, user_id: Uuid) {
        let group = self.subjects.number(group_id, true);
        let groups = self.groups_of.entry(user_id).or_default();
        if !groups.contains(&group) {
            groups.push(group);
        }
    }

    fn subject_no(&mut self, subject: Subject) -> SubjectNo {
        match subject {
            Subject::User(id) => self.subjects.number(id, false),
            Subject::Group(id) => self.subjects.number(id, true),
        }
    }

    fn find_subject(&self, subject: Subject) -> Option<SubjectNo> {
        match subject {
            Subject::User(id) => self.subjects.find(id, false),
            Subject::Group(id) => self.subjects.find(id, true),
        }
    }

    /// Creates the share or replaces its level.
    pub fn set_share(&mut self, kind: ResourceType, id: &str, subject: Subject, level: Level) {
        let no = self.subject_no(subject);
        let map = &mut self.shares[slot(kind)];
        match map.get_mut(id) {
            Some(grants) => {
                let mut list = grants.as_slice().to_vec();
                match list.iter_mut().find(|(s, _)| *s == no) {
                    Some(pair) => pair.1 = level,
                    None => {
                        list.push((no, level));
                        self.share_count += 1;
                    }
                }
                if let Some(updated) = Grants::from_list(list) {
                    *grants = updated;
                }
            }
            None => {
                map.insert(id.into(), Grants::One((no, level)));
                self.share_count += 1;
                self.id_bytes += id.len();
            }
        }
    }

    fn unshare(&mut self, resource: &ResourceRef, subject: Subject) {
        let Some(no) = self.find_subject(subject) else {
            return;
        };
        self.retain_shares(Some(resource), |s| s != no);
    }

    /// Keeps only the shares whose subject passes `keep`, on one resource or on all.
    fn retain_shares(&mut self, on: Option<&ResourceRef>, keep: impl Fn(SubjectNo) -> bool) {
        let mut removed = 0;
        let mut id_bytes = 0;
        let mut filter = |id: &str, grants: &mut Grants| {
            if grants.as_slice().iter().all(|(s, _)| keep(*s)) {
                return true;
            }
            let before = grants.as_slice().len();
            let list: Vec<_> = grants
                .as_slice()
                .iter()
                .copied()
                .filter(|(s, _)| keep(*s))
                .collect();
            removed += before - list.len();
            match Grants::from_list(list) {
                Some(left) => {
                    *grants = left;
                    true
                }
                None => {
                    id_bytes += id.len();
                    false
                }
            }
        };
        match on {
            Some(resource) => {
                let map = &mut self.shares[slot(resource.kind)];
                if let Some(grants) = map.get_mut(resource.id.as_str())
                    && !filter(&resource.id, grants)
                {
                    map.remove(resource.id.as_str());
                }
            }
            None => {
                for map in &mut self.shares {
                    map.retain(|id, grants| filter(id, grants));
                }
            }
        }
        self.share_count -= removed;
        self.id_bytes -= id_bytes;
    }

    /// Applies one recorded change.
    pub fn apply(&mut self, change: &AccessChange) {
        match change {
            AccessChange::Shared { r, s, l } => self.set_share(r.kind, &r.id, *s, l.level()),
            AccessChange::Unshared { r, s } => self.unshare(r, *s),
            AccessChange::Member { u, role, status } => {
                if let (Some(role), Some(status)) =
                    (Role::parse(role), MembershipStatus::parse(status))
                {
                    self.members.insert(*u, (role, status));
                }
            }
            AccessChange::LeftGroups { u } => {
                self.groups_of.remove(u);
            }
            AccessChange::Removed { u } => {
                self.members.remove(u);
                self.groups_of.remove(u);
                if let Some(no) = self.subjects.find(*u, false) {
                    self.retain_shares(None, |s| s != no);
                }
            }
            AccessChange::Joined { g, u } => {
                for user in u {
                    self.add_to_group(*g, *user);
                }
            }
            AccessChange::Left { g, u } => {
                if let Some(group) = self.subjects.find(*g, true) {
                    for user in u {
                        if let Some(groups) = self.groups_of.get_mut(user) {
                            groups.retain(|no| *no != group);
                        }
                    }
                }
            }
            AccessChange::GroupDeleted { g } => {
                if let Some(group) = self.subjects.find(*g, true) {
                    for groups in self.groups_of.values_mut() {
                        groups.retain(|no| *no != group);
                    }
                    self.retain_shares(None, |s| s != group);
                }
            }
        }
    }
}

impl AccessView for AccountAccess {
    type Reach<'a> = Reach<'a>;
    type Share = ();

    fn member(&self, user_id: Uuid) -> Option<(Role, MembershipStatus)> {
        self.members.get(&user_id).copied()
    }

    fn reach(&self, user_id: Uuid) -> Reach<'_> {
        Reach {
            user: self.subjects.find(user_id, false),
            groups: self.groups_of.get(&user_id).map_or(&[], Vec::as_slice),
        }
    }

    fn shares_reaching(
        &self,
        reach: &Reach<'_>,
        kind: ResourceType,
        id: &str,
        f: OnShare<'_, ()>,
    ) -> ControlFlow<()> {
        let Some(grants) = self.shares[slot(kind)].get(id) else {
            return ControlFlow::Continue(());
        };
        for (subject, level) in grants.as_slice() {
            if Some(*subject) == reach.user {
                f(Via::User, *level, &())?;
            } else if subject & GROUP_BIT != 0 && reach.groups.contains(subject) {
                f(Via::Group, *level, &())?;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sharing::{Placement, ResourceCheck, level_of};

    const USER: Uuid = Uuid::from_u128(1);
    const GROUP: Uuid = Uuid::from_u128(10);

    fn check(id: &str, ancestors: &[&str]) -> ResourceCheck {
        ResourceCheck {
            resource: ResourceRef {
                kind: ResourceType::File,
                id: id.to_owned(),
            },
            placement: Placement {
                ancestors: ancestors.iter().map(|a| (*a).to_owned()).collect(),
                ..Placement::default()
            },
        }
    }

    fn folder(id: &str) -> ResourceRef {
        ResourceRef {
            kind: ResourceType::Folder,
            id: id.to_owned(),
        }
    }

    #[test]
    fn a_share_is_a_small_table_entry() {
        assert!(std::mem::size_of::<Grants>() <= 24);
        assert!(std::mem::size_of::<(Box<str>, Grants)>() <= 40);
    }

    #[test]
    fn changes_apply_with_their_cascades() {
        let mut access = AccountAccess::new(1);
        access.set_member(USER, Role::MediaLibraryRestricted, MembershipStatus::Active);
        access.add_to_group(GROUP, USER);
        access.set_share(
            ResourceType::Folder,
            "a",
            Subject::Group(GROUP),
            Level::View,
        );
        access.set_share(
            ResourceType::File,
            "f",
            Subject::User(USER),
            Level::Contribute,
        );
        assert_eq!(access.share_count(), 2);
        assert_eq!(
            level_of(&access, USER, &check("f", &["a"])),
            Level::Contribute
        );
        assert_eq!(level_of(&access, USER, &check("g", &["a"])), Level::View);

        // Replacing a level keeps one share.
        access.apply(&AccessChange::Shared {
            r: folder("a"),
            s: Subject::Group(GROUP),
            l: Level::Manage.into(),
        });
        assert_eq!(access.share_count(), 2);
        assert_eq!(level_of(&access, USER, &check("g", &["a"])), Level::Manage);

        // Leaving the group loses what it gave.
        access.apply(&AccessChange::Left {
            g: GROUP,
            u: vec![USER],
        });
        assert_eq!(level_of(&access, USER, &check("g", &["a"])), Level::None);
        access.apply(&AccessChange::Joined {
            g: GROUP,
            u: vec![USER],
        });
        assert_eq!(level_of(&access, USER, &check("g", &["a"])), Level::Manage);

        // Deleting the group deletes its shares.
        access.apply(&AccessChange::GroupDeleted { g: GROUP });
        assert_eq!(access.share_count(), 1);
        assert_eq!(level_of(&access, USER, &check("g", &["a"])), Level::None);

        // Disabling answers none; removal deletes the user's shares.
        access.apply(&AccessChange::member(
            USER,
            Role::MediaLibraryRestricted,
            MembershipStatus::Disabled,
        ));
        assert_eq!(level_of(&access, USER, &check("f", &[])), Level::None);
        access.apply(&AccessChange::Removed { u: USER });
        assert_eq!(access.share_count(), 0);
        assert_eq!(access.bytes(), 0);
    }

    #[test]
    fn unsharing_one_subject_keeps_the_others() {
        let mut access = AccountAccess::new(1);
        access.set_member(USER, Role::MediaLibraryRestricted, MembershipStatus::Active);
        access.set_share(ResourceType::File, "f", Subject::User(USER), Level::View);
        access.set_share(
            ResourceType::File,
            "f",
            Subject::Group(GROUP),
            Level::Manage,
        );
        access.apply(&AccessChange::Unshared {
            r: ResourceRef {
                kind: ResourceType::File,
                id: "f".into(),
            },
            s: Subject::Group(GROUP),
        });
        assert_eq!(access.share_count(), 1);
        assert_eq!(level_of(&access, USER, &check("f", &[])), Level::View);
    }
}
