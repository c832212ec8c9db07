//! Groups and their members. Every write is one transaction that starts by locking the account
//! row, so writes of one account queue in one place (the group cap, the counter and the access
//! revision all live on that row) and always take their locks in the same order.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use super::entities::{account, group, group_member, membership, user};
use super::idempotency::{self, Idempotency};
use super::locks::{add_to_counter, bump_access_revision, lock_account};
use super::{Store, unique_violation};
use crate::domain::error::{DomainError, DomainResult, reason};

/// A group to create. `name_key` is the name as compared (lower-cased).
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub account_id: Uuid,
    pub name: String,
    pub name_key: String,
    pub description: String,
    pub idempotency: Option<Idempotency>,
}

/// A change to a group; `None` leaves a field as it is. The name comes with its key.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub name: Option<(String, String)>,
    pub description: Option<String>,
}

/// A group with its number of members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWithCount {
    pub group: group::Model,
    pub member_count: i64,
}

/// The outcome of adding members.
#[derive(Debug)]
pub enum MembersAdded {
    /// The group after the change and the account's access revision after the write.
    Done {
        group: GroupWithCount,
        revision: i64,
    },
    /// These ids are not users of the account: nothing was written.
    NotInAccount(HashSet<Uuid>),
}

/// Where a keyset page starts: after this sort key and id.
#[derive(Debug, Clone)]
pub struct After {
    pub key: String,
    pub id: Uuid,
}

/// A page of members with the account's MFA enforcement (part of each `User`).
#[derive(Debug, Clone)]
pub struct MemberRows {
    pub members: Vec<(user::Model, membership::Model)>,
    pub enforce_mfa: bool,
}

fn group_not_found() -> DomainError {
    DomainError::not_found(reason::GROUP_NOT_FOUND, "group")
}

fn name_taken() -> DomainError {
    DomainError::AlreadyExists {
        reason: reason::GROUP_NAME_TAKEN,
        message:
            "the account already has a group with this name (names are compared ignoring case)"
                .to_owned(),
    }
}

fn limit_reached(max_groups: i32) -> DomainError {
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

/// A group write failed on the name's unique index: the name is taken.
fn name_conflict(err: DbErr) -> DomainError {
    if unique_violation(&err) == Some("groups_account_name_key") {
        name_taken()
    } else {
        err.into()
    }
}

/// Keyset condition on `(key_col, id_col)` after `after`.
fn after_condition<K, I>(key_col: K, id_col: I, after: &After) -> sea_orm::sea_query::Expr
where
    K: ColumnTrait,
    I: ColumnTrait,
{
    super::pagination::keyset_after(key_col, id_col, after.key.clone(), after.id, false)
}

impl Store {
    /// Creates a group under the account's cap, in one transaction. A retried request (same
    /// idempotency key) returns the group the first one created, as it is now.
    pub async fn create_group(
        &self,
        new: NewGroup,
        now: DateTime<Utc>,
    ) -> DomainResult<GroupWithCount> {
        if let Some(key) = &new.idempotency
            && let Some(existing) = self.replay_group(new.account_id, key, now).await?
        {
            return Ok(existing);
        }
        match (self.insert_group(&new, now).await, &new.idempotency) {
            (Err(err), Some(key)) if idempotency::is_conflict(&err) => {
                // The same request ran concurrently and won: answer with its result.
                self.replay_group(new.account_id, key, now)
                    .await?
                    .ok_or_else(|| DomainError::internal(anyhow::anyhow!("idempotency key lost")))
            }
            (result, _) => result,
        }
    }

    async fn replay_group(
        &self,
        account_id: Uuid,
        key: &Idempotency,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<GroupWithCount>> {
        let Some(resource_id) = idempotency::replay(&self.db, key, now).await? else {
            return Ok(None);
        };
        let id = Uuid::parse_str(&resource_id).map_err(DomainError::internal)?;
        // A group deleted since its creation is gone for its retries too.
        let group = self
            .find_group(account_id, id)
            .await?
            .ok_or_else(group_not_found)?;
        Ok(Some(group))
    }

    async fn insert_group(
        &self,
        new: &NewGroup,
        now: DateTime<Utc>,
    ) -> DomainResult<GroupWithCount> {
        let txn = self.db.begin().await?;
        let account = lock_account(&txn, new.account_id).await?;
        let id = Uuid::now_v7();
        // The key first: a concurrent retry then fails on it (and replays) rather than on the
        // cap or the name, which its twin has just used.
        if let Some(key) = &new.idempotency {
            idempotency::record(&txn, key, &id.to_string(), now).await?;
        }
        // A taken name is the more useful answer than a full account, so it is checked first
        // (under the account lock, so no concurrent create can slip between).
        let taken = group::Entity::find()
            .filter(group::Column::AccountId.eq(new.account_id))
            .filter(group::Column::NameKey.eq(new.name_key.as_str()))
            .one(&txn)
            .await?;
        if taken.is_some() {
            return Err(name_taken());
        }
        if account.group_count >= account.max_groups {
            return Err(limit_reached(account.max_groups));
        }
        let group = group::Model {
            account_id: new.account_id,
            id,
            name: new.name.clone(),
            name_key: new.name_key.clone(),
            description: new.description.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        group::Entity::insert(group::ActiveModel::from(group.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(name_conflict)?;
        add_to_counter(&txn, new.account_id, account::Column::GroupCount, 1).await?;
        txn.commit().await?;
        Ok(GroupWithCount {
            group,
            member_count: 0,
        })
    }

    /// The group with its member count; `None` when the account has no such group.
    pub async fn find_group(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> DomainResult<Option<GroupWithCount>> {
        find_group_in(&self.db, account_id, id).await
    }

    /// Member counts of some groups of the account: one `COUNT ... GROUP BY` for a whole page.
    async fn with_counts(
        &self,
        account_id: Uuid,
        groups: Vec<group::Model>,
    ) -> DomainResult<Vec<GroupWithCount>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let counts: HashMap<Uuid, i64> = group_member::Entity::find()
            .select_only()
            .column(group_member::Column::GroupId)
            .column_as(group_member::Column::UserId.count(), "members")
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::GroupId.is_in(groups.iter().map(|g| g.id)))
            .group_by(group_member::Column::GroupId)
            .into_tuple::<(Uuid, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(groups
            .into_iter()
            .map(|group| GroupWithCount {
                member_count: counts.get(&group.id).copied().unwrap_or(0),
                group,
            })
            .collect())
    }

    /// Up to `limit` groups of the account by `(name_key, id)` after `after`, whose key starts
    /// with `name_key_prefix` (which holds only characters a name may have).
    pub async fn list_groups(
        &self,
        account_id: Uuid,
        name_key_prefix: &str,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<GroupWithCount>> {
        let mut query = group::Entity::find().filter(group::Column::AccountId.eq(account_id));
        if !name_key_prefix.is_empty() {
            query = query.filter(group::Column::NameKey.starts_with(name_key_prefix));
        }
        self.page_of_groups(account_id, query, after, limit).await
    }

    /// One page of `query` in `(name_key, id)` order after `after`, with member counts.
    async fn page_of_groups(
        &self,
        account_id: Uuid,
        query: sea_orm::Select<group::Entity>,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<GroupWithCount>> {
        let query = match after {
            Some(after) => query.filter(after_condition(
                group::Column::NameKey,
                group::Column::Id,
                after,
            )),
            None => query,
        };
        let groups = query
            .order_by_asc(group::Column::NameKey)
            .order_by_asc(group::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        self.with_counts(account_id, groups).await
    }

    /// Up to `limit` groups the user belongs to, by `(name_key, id)` after `after`.
    pub async fn list_user_groups(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<GroupWithCount>> {
        let query = group::Entity::find()
            .filter(group::Column::AccountId.eq(account_id))
            .filter(
                group::Column::Id.in_subquery(
                    Query::select()
                        .column(group_member::Column::GroupId)
                        .from(group_member::Entity)
                        .and_where(group_member::Column::AccountId.eq(account_id))
                        .and_where(group_member::Column::UserId.eq(user_id))
                        .to_owned(),
                ),
            );
        self.page_of_groups(account_id, query, after, limit).await
    }

    /// Up to `limit` members of the group by `(email_key, id)` after `after`, with their
    /// memberships in the account.
    pub async fn list_group_members(
        &self,
        account_id: Uuid,
        group_id: Uuid,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<MemberRows> {
        let mut query = user::Entity::find().filter(
            user::Column::Id.in_subquery(
                Query::select()
                    .column(group_member::Column::UserId)
                    .from(group_member::Entity)
                    .and_where(group_member::Column::AccountId.eq(account_id))
                    .and_where(group_member::Column::GroupId.eq(group_id))
                    .to_owned(),
            ),
        );
        if let Some(after) = after {
            query = query.filter(after_condition(
                user::Column::EmailKey,
                user::Column::Id,
                after,
            ));
        }
        let people = query
            .order_by_asc(user::Column::EmailKey)
            .order_by_asc(user::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut memberships: HashMap<Uuid, membership::Model> = if people.is_empty() {
            HashMap::new()
        } else {
            membership::Entity::find()
                .filter(membership::Column::AccountId.eq(account_id))
                .filter(membership::Column::UserId.is_in(people.iter().map(|p| p.id)))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|m| (m.user_id, m))
                .collect()
        };
        let enforce_mfa = self
            .find_account(account_id)
            .await?
            .is_some_and(|a| a.enforce_mfa);
        // A membership removed between the two reads takes its group membership with it
        // (cascade): such a person is simply not listed.
        let members = people
            .into_iter()
            .filter_map(|person| memberships.remove(&person.id).map(|m| (person, m)))
            .collect();
        Ok(MemberRows {
            members,
            enforce_mfa,
        })
    }

    /// The membership of a person in the account.
    pub async fn find_membership(
        &self,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Option<membership::Model>> {
        Ok(membership::Entity::find_by_id((account_id, user_id))
            .one(&self.db)
            .await?)
    }

    /// Applies `change` if the group is still at `expected_version` (when given): one
    /// conditional UPDATE. A name another group has (ignoring case) is GROUP_NAME_TAKEN.
    pub async fn update_group(
        &self,
        account_id: Uuid,
        id: Uuid,
        expected_version: Option<i64>,
        change: GroupChange,
        now: DateTime<Utc>,
    ) -> DomainResult<GroupWithCount> {
        let mut update = group::Entity::update_many()
            .col_expr(
                group::Column::Version,
                Expr::col(group::Column::Version).add(1),
            )
            .col_expr(group::Column::UpdatedAt, Expr::value(now))
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::Id.eq(id));
        if let Some((name, name_key)) = change.name {
            update = update
                .col_expr(group::Column::Name, Expr::value(name))
                .col_expr(group::Column::NameKey, Expr::value(name_key));
        }
        if let Some(description) = change.description {
            update = update.col_expr(group::Column::Description, Expr::value(description));
        }
        if let Some(version) = expected_version {
            update = update.filter(group::Column::Version.eq(version));
        }
        let txn = self.db.begin().await?;
        let result = update.exec(&txn).await.map_err(name_conflict)?;
        let group = find_group_in(&txn, account_id, id).await?;
        txn.commit().await?;
        match (result.rows_affected, group) {
            (1, Some(group)) => Ok(group),
            (_, None) => Err(group_not_found()),
            (_, Some(_)) => Err(DomainError::etag_mismatch("group")),
        }
    }

    /// Deletes the group and its memberships if it is still at `expected_version` (when
    /// given), and returns the account's access revision after the write. A missing group is
    /// GROUP_NOT_FOUND unless `allow_missing`, which answers the current revision.
    pub async fn delete_group(
        &self,
        account_id: Uuid,
        id: Uuid,
        expected_version: Option<i64>,
        allow_missing: bool,
    ) -> DomainResult<i64> {
        let txn = self.db.begin().await?;
        let account = lock_account(&txn, account_id).await;
        let account = match account {
            Err(DomainError::NotFound { .. }) if allow_missing => return Ok(0),
            Err(DomainError::NotFound { .. }) => return Err(group_not_found()),
            other => other?,
        };
        let Some(group) = group::Entity::find_by_id((account_id, id))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return if allow_missing {
                Ok(account.access_revision)
            } else {
                Err(group_not_found())
            };
        };
        if expected_version.is_some_and(|v| v != group.version) {
            return Err(DomainError::etag_mismatch("group"));
        }
        group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::GroupId.eq(id))
            .exec(&txn)
            .await?;
        // Shares granted to the group are deleted here too, once AccessService stores shares.
        group::Entity::delete_many()
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        add_to_counter(&txn, account_id, account::Column::GroupCount, -1).await?;
        let revision = bump_access_revision(&txn, account_id).await?;
        txn.commit().await?;
        Ok(revision)
    }

    /// Adds users of the account to the group (those already in it are skipped), all or
    /// nothing; moves the group's etag when something changed and the access revision always.
    pub async fn add_group_members(
        &self,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> DomainResult<MembersAdded> {
        let wanted: HashSet<Uuid> = user_ids.iter().copied().collect();
        let txn = self.db.begin().await?;
        lock_group(&txn, account_id, group_id).await?;
        // The foreign key to memberships keeps a membership removed meanwhile from leaving a
        // dangling group member behind.
        let members: HashSet<Uuid> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.is_in(wanted.iter().copied()))
            .into_tuple::<Uuid>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let strangers: HashSet<Uuid> = wanted.difference(&members).copied().collect();
        if !strangers.is_empty() {
            return Ok(MembersAdded::NotInAccount(strangers));
        }
        let added = group_member::Entity::insert_many(wanted.iter().map(|user_id| {
            group_member::ActiveModel {
                account_id: Set(account_id),
                group_id: Set(group_id),
                user_id: Set(*user_id),
                created_at: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                group_member::Column::AccountId,
                group_member::Column::GroupId,
                group_member::Column::UserId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let (group, revision) =
            finish_membership_change(&txn, account_id, group_id, added, now).await?;
        txn.commit().await?;
        Ok(MembersAdded::Done { group, revision })
    }

    /// Removes users from the group (ids that are not members are skipped); moves the group's
    /// etag when something changed and the access revision always.
    pub async fn remove_group_members(
        &self,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> DomainResult<(GroupWithCount, i64)> {
        let txn = self.db.begin().await?;
        lock_group(&txn, account_id, group_id).await?;
        let removed = group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::UserId.is_in(user_ids.iter().copied()))
            .exec(&txn)
            .await?
            .rows_affected;
        let result = finish_membership_change(&txn, account_id, group_id, removed, now).await?;
        txn.commit().await?;
        Ok(result)
    }
}

/// Locks the account, then checks the group exists in it.
async fn lock_group(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    group_id: Uuid,
) -> DomainResult<()> {
    match lock_account(conn, account_id).await {
        Err(DomainError::NotFound { .. }) => return Err(group_not_found()),
        other => other?,
    };
    group::Entity::find_by_id((account_id, group_id))
        .one(conn)
        .await?
        .ok_or_else(group_not_found)?;
    Ok(())
}

/// After `changed` memberships were written: bumps the group's version when there were any,
/// bumps the access revision, and reads the group back.
async fn finish_membership_change(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    group_id: Uuid,
    changed: u64,
    now: DateTime<Utc>,
) -> DomainResult<(GroupWithCount, i64)> {
    if changed > 0 {
        group::Entity::update_many()
            .col_expr(
                group::Column::Version,
                Expr::col(group::Column::Version).add(1),
            )
            .col_expr(group::Column::UpdatedAt, Expr::value(now))
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::Id.eq(group_id))
            .exec(conn)
            .await?;
    }
    let revision = bump_access_revision(conn, account_id).await?;
    let group = find_group_in(conn, account_id, group_id)
        .await?
        .ok_or_else(group_not_found)?;
    Ok((group, revision))
}

async fn find_group_in(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    id: Uuid,
) -> DomainResult<Option<GroupWithCount>> {
    let Some(group) = group::Entity::find_by_id((account_id, id))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let member_count = group_member::Entity::find()
        .filter(group_member::Column::AccountId.eq(account_id))
        .filter(group_member::Column::GroupId.eq(id))
        .count(conn)
        .await? as i64;
    Ok(Some(GroupWithCount {
        group,
        member_count,
    }))
}
