//! GroupService's use cases. Administrators (and services with `users.manage`) change groups;
//! every member of the account and services with `users.read` read them. Every write locks the
//! account row first, then touches group rows: the cap, the counter and the access revision live
//! there, and one lock order means no deadlocks between group writes.

use std::collections::HashSet;

use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::access_changes::AccessChange;
use crate::domain::accounts::fingerprint;
use crate::domain::actor::{Actor, MANAGE_USERS, READ_USERS};
use crate::domain::error::DomainResult;
use crate::domain::groups::{self as rules, CreateGroup, Group, GroupChange, group_not_found};
use crate::domain::page::{After, ListQuery, Page, PageTokens};
use crate::domain::sharing::Subject;
use crate::domain::users::{Member, MemberFilter, user_not_found};
use crate::store::accounts::Counter;
use crate::store::idempotency::Idempotency;
use crate::store::{Store, Tx};

use super::{audit, idempotent};
use crate::domain::audit::{Change, Draft, Target, action};

fn group_target(group: &Group) -> Target {
    Target::new("group", group.id, group.name.as_str())
}
use super::users::{lock_account, member_position};

/// A group after a membership change, and the change's consistency token.
#[derive(Debug, Clone)]
pub struct MembersChanged {
    pub group: Group,
    pub revision: i64,
}

#[derive(Clone)]
pub struct Groups {
    store: Store,
    clock: SharedClock,
    pages: PageTokens,
}

fn group_position(group: &Group) -> After {
    After {
        key: group.name_key.clone(),
        id: group.id,
    }
}

/// Locks the account, or answers `GROUP_NOT_FOUND` for a group of a missing account.
async fn lock_for_group(
    tx: &Tx,
    account_id: Uuid,
) -> DomainResult<crate::domain::accounts::Account> {
    tx.lock_account(account_id)
        .await?
        .ok_or_else(group_not_found)
}

/// The group inside a unit of work, or `GROUP_NOT_FOUND`.
async fn group_in(tx: &Tx, account_id: Uuid, group_id: Uuid) -> DomainResult<Group> {
    tx.group(account_id, group_id)
        .await?
        .ok_or_else(group_not_found)
}

impl Groups {
    pub fn new(store: Store, clock: SharedClock, pages: PageTokens) -> Self {
        Self {
            store,
            clock,
            pages,
        }
    }

    /// Creates an empty group under the account's cap. The `request_id` is recorded before the
    /// cap and the name are checked, in the same unit of work: a concurrent retry then fails on
    /// the key and replays the winner's group instead of hitting the cap or the name its twin
    /// just took. A retry after the group was deleted answers `GROUP_NOT_FOUND`.
    pub async fn create(&self, actor: &Actor, input: CreateGroup) -> DomainResult<Group> {
        let account_id = input.account_id;
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let key = input.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("CreateGroup/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: fingerprint(&[
                &account_id.to_string(),
                input.name.name(),
                &input.description,
            ]),
        });
        idempotent(
            &self.store,
            key.as_ref(),
            now,
            |group_id| self.find(account_id, group_id),
            async {
                let tx = self.store.begin().await?;
                let account = lock_account(&tx, account_id).await?;
                let taken = tx
                    .group_name_taken(account_id, input.name.key(), None)
                    .await?;
                let group = rules::create(&account, &input.name, &input.description, taken, now);
                // The key first (with the id the group would have), so a concurrent retry
                // collides on it whatever this attempt decides.
                if let Some(key) = &key {
                    let id = group
                        .as_ref()
                        .map(|g| g.id)
                        .unwrap_or_else(|_| Uuid::now_v7());
                    tx.record_request(key, &id.to_string(), now).await?;
                }
                let group = group?;
                tx.insert_group(&group).await?;
                tx.add_to_counter(account_id, Counter::Groups, 1).await?;
                let draft = Draft::by(action::GROUP_CREATED, actor)
                    .target(group_target(&group))
                    .changes([
                        Change::new("name", None::<&str>, Some(group.name.as_str())),
                        Change::new("description", None::<&str>, Some(&group.description)),
                    ]);
                audit::append(&tx, account_id, now, [draft]).await?;
                tx.commit().await?;
                Ok(group)
            },
        )
        .await
    }

    async fn find(&self, account_id: Uuid, group_id: Uuid) -> DomainResult<Group> {
        self.store
            .group(account_id, group_id)
            .await?
            .ok_or_else(group_not_found)
    }

    pub async fn get(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
    ) -> DomainResult<Group> {
        actor.authorize(account_id, READ_USERS)?;
        self.find(account_id, group_id).await
    }

    /// The account's groups by name (ignoring case), then id; `name_prefix` is case-insensitive.
    pub async fn list(
        &self,
        actor: &Actor,
        account_id: Uuid,
        name_prefix: &str,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Group>> {
        actor.authorize(account_id, READ_USERS)?;
        let prefix = name_prefix.to_ascii_lowercase();
        let query = ListQuery::new("ListGroups", &[&account_id.to_string(), &prefix]);
        let after = self.pages.decode(&query, page_token)?;
        let Some(prefix_key) = rules::prefix_key(name_prefix) else {
            // No name holds such a character: nothing matches.
            return Ok(Page {
                items: Vec::new(),
                next_page_token: String::new(),
            });
        };
        let rows = self
            .store
            .groups(account_id, &prefix_key, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&query, rows, page_size, group_position))
    }

    /// Renames a group and/or changes its description, if still at `etag` (when given).
    pub async fn update(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        change: GroupChange,
        etag: Option<i64>,
    ) -> DomainResult<Group> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let tx = self.store.begin().await?;
        lock_for_group(&tx, account_id).await?;
        let group = group_in(&tx, account_id, group_id).await?;
        rules::check_etag(&group, etag)?;
        if let Some(name) = &change.name
            && tx
                .group_name_taken(account_id, name.key(), Some(group_id))
                .await?
        {
            return Err(rules::name_taken_error());
        }
        let now = self.clock.now();
        tx.update_group(account_id, group_id, &change, now).await?;
        let updated = group_in(&tx, account_id, group_id).await?;
        let changes: Vec<Change> = [
            Change::of("name", group.name.as_str(), updated.name.as_str()),
            Change::of("description", &group.description, &updated.description),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !changes.is_empty() {
            let draft = Draft::by(action::GROUP_UPDATED, actor)
                .target(group_target(&updated))
                .changes(changes);
            audit::append(&tx, account_id, now, [draft]).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a group with its memberships; returns the access revision after the deletion. A
    /// missing group is `GROUP_NOT_FOUND` unless `allow_missing`, which answers the current
    /// revision.
    pub async fn delete(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        etag: Option<i64>,
        allow_missing: bool,
    ) -> DomainResult<i64> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let tx = self.store.begin().await?;
        let account = match tx.lock_account(account_id).await? {
            Some(account) => account,
            None if allow_missing => return Ok(0),
            None => return Err(group_not_found()),
        };
        let group = match tx.group(account_id, group_id).await? {
            Some(group) => group,
            None if allow_missing => return Ok(account.access_revision),
            None => return Err(group_not_found()),
        };
        rules::check_etag(&group, etag)?;
        tx.delete_group(account_id, group_id).await?;
        tx.delete_shares_to(account_id, Subject::Group(group_id))
            .await?;
        tx.add_to_counter(account_id, Counter::Groups, -1).await?;
        let now = self.clock.now();
        let revision = tx
            .record_access_change(
                account_id,
                &[AccessChange::GroupDeleted { g: group_id }],
                now,
            )
            .await?;
        let draft = Draft::by(action::GROUP_DELETED, actor)
            .target(group_target(&group))
            .changes([Change::new("name", Some(group.name.as_str()), None::<&str>)]);
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(revision)
    }

    /// Adds users of the account to the group, all or nothing. `user_ids` are in request order:
    /// an id that is not a user of the account is reported at each of its positions. The
    /// group's etag moves when a membership was added; the access revision always.
    pub async fn add_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<MembersChanged> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let wanted: HashSet<Uuid> = user_ids.iter().copied().collect();
        let tx = self.store.begin().await?;
        lock_for_group(&tx, account_id).await?;
        group_in(&tx, account_id, group_id).await?;
        let members = tx.members_among(account_id, &wanted).await?;
        rules::check_members(user_ids, &members)?;
        let added = tx
            .add_group_members(account_id, group_id, &wanted, now)
            .await?;
        let joined = AccessChange::Joined {
            g: group_id,
            u: user_ids.to_vec(),
        };
        let draft = Draft::by(action::GROUP_MEMBERS_ADDED, actor);
        let changed = self
            .finish_change(tx, account_id, group_id, user_ids, (added, joined), draft)
            .await?;
        Ok(changed)
    }

    /// Removes users from the group; ids that are not members are skipped.
    pub async fn remove_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<MembersChanged> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let tx = self.store.begin().await?;
        lock_for_group(&tx, account_id).await?;
        group_in(&tx, account_id, group_id).await?;
        let removed = tx
            .remove_group_members(account_id, group_id, user_ids)
            .await?;
        let left = AccessChange::Left {
            g: group_id,
            u: user_ids.to_vec(),
        };
        let draft = Draft::by(action::GROUP_MEMBERS_REMOVED, actor);
        self.finish_change(tx, account_id, group_id, user_ids, (removed, left), draft)
            .await
    }

    /// After `changed` memberships were written: moves the group's version on when there were
    /// any, moves the access revision, reads the group back and commits.
    /// The audit event (`draft`, for the group) names the users asked for and how many
    /// memberships changed.
    async fn finish_change(
        &self,
        tx: Tx,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
        (changed, change): (u64, AccessChange),
        draft: Draft,
    ) -> DomainResult<MembersChanged> {
        if changed > 0 {
            tx.update_group(
                account_id,
                group_id,
                &GroupChange::default(),
                self.clock.now(),
            )
            .await?;
        }
        let revision = tx
            .record_access_change(account_id, &[change], self.clock.now())
            .await?;
        let group = group_in(&tx, account_id, group_id).await?;
        let ids: Vec<String> = user_ids.iter().map(Uuid::to_string).collect();
        let draft = draft
            .target(group_target(&group))
            .meta("user_ids", ids.join(","))
            .meta("changed", changed);
        audit::append(&tx, account_id, self.clock.now(), [draft]).await?;
        tx.commit().await?;
        Ok(MembersChanged { group, revision })
    }

    /// A group's members by email (ignoring case), then id.
    pub async fn list_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Member>> {
        actor.authorize(account_id, READ_USERS)?;
        let query = ListQuery::new(
            "ListGroupMembers",
            &[&account_id.to_string(), &group_id.to_string()],
        );
        let after = self.pages.decode(&query, page_token)?;
        self.find(account_id, group_id).await?;
        let filter = MemberFilter {
            group_id: Some(group_id),
            ..MemberFilter::default()
        };
        let rows = self
            .store
            .members(account_id, &filter, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&query, rows, page_size, member_position))
    }

    /// The groups a user of the account belongs to, by name (ignoring case), then id.
    pub async fn list_user_groups(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Group>> {
        actor.authorize(account_id, READ_USERS)?;
        let query = ListQuery::new(
            "ListUserGroups",
            &[&account_id.to_string(), &user_id.to_string()],
        );
        let after = self.pages.decode(&query, page_token)?;
        if !self.store.is_member(account_id, user_id).await? {
            return Err(user_not_found());
        }
        let rows = self
            .store
            .groups_of_user(account_id, user_id, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&query, rows, page_size, group_position))
    }
}
