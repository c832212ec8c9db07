//! Groups and their members. A group is read with its member count in one statement.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryResult, QuerySelect,
    sea_query::{
        Alias, Expr, ExprTrait, Func, OnConflict, Order, Query, SelectStatement, SubQueryStatement,
    },
};
use uuid::Uuid;

use super::entities::{group, group_member, membership};
use super::pagination::keyset_after;
use super::select::{all, columns_of, model};
use super::{Store, Tx};
use crate::domain::error::DomainResult;
use crate::domain::groups::{Group, GroupChange};
use crate::domain::page::After;

/// The group's columns and its member count.
fn group_query() -> SelectStatement {
    let mut query = Query::select();
    columns_of(&mut query, group::Entity, "g_");
    query
        .expr_as(
            Expr::SubQuery(
                None,
                Box::new(SubQueryStatement::SelectStatement(
                    Query::select()
                        .expr(Func::count(Expr::col(group_member::Column::UserId)))
                        .from(group_member::Entity)
                        .and_where(
                            Expr::col((group_member::Entity, group_member::Column::AccountId))
                                .equals((group::Entity, group::Column::AccountId)),
                        )
                        .and_where(
                            Expr::col((group_member::Entity, group_member::Column::GroupId))
                                .equals((group::Entity, group::Column::Id)),
                        )
                        .to_owned(),
                )),
            ),
            Alias::new("member_count"),
        )
        .from(group::Entity);
    query
}

fn group_of_row(row: &QueryResult) -> DomainResult<Group> {
    let g: group::Model = model(row, "g_")?;
    Ok(Group {
        account_id: g.account_id,
        id: g.id,
        name: g.name,
        name_key: g.name_key,
        description: g.description,
        version: g.version,
        created_at: g.created_at,
        updated_at: g.updated_at,
        member_count: row.try_get("", "member_count")?,
    })
}

async fn find_group(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    id: Uuid,
) -> DomainResult<Option<Group>> {
    let mut query = group_query();
    query
        .and_where(group::Column::AccountId.eq(account_id))
        .and_where(group::Column::Id.eq(id));
    all(conn, &query)
        .await?
        .first()
        .map(group_of_row)
        .transpose()
}

/// A page of groups of `query` in `(name_key, id)` order after `after`.
async fn page_of_groups(
    conn: &impl ConnectionTrait,
    mut query: SelectStatement,
    after: Option<&After>,
    limit: u64,
) -> DomainResult<Vec<Group>> {
    if let Some(after) = after {
        query.and_where(keyset_after(
            group::Column::NameKey,
            group::Column::Id,
            after.key.clone(),
            after.id,
            false,
        ));
    }
    query
        .order_by((group::Entity, group::Column::NameKey), Order::Asc)
        .order_by((group::Entity, group::Column::Id), Order::Asc)
        .limit(limit);
    all(conn, &query).await?.iter().map(group_of_row).collect()
}

impl Store {
    /// The group with its member count, in one statement.
    pub async fn group(&self, account_id: Uuid, id: Uuid) -> DomainResult<Option<Group>> {
        find_group(self.connection(), account_id, id).await
    }

    /// Up to `limit` groups of the account by `(name_key, id)` after `after`, whose key starts
    /// with `name_key_prefix`.
    pub async fn groups(
        &self,
        account_id: Uuid,
        name_key_prefix: &str,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<Group>> {
        let mut query = group_query();
        query.and_where(group::Column::AccountId.eq(account_id));
        if !name_key_prefix.is_empty() {
            query.and_where(group::Column::NameKey.starts_with(name_key_prefix));
        }
        page_of_groups(self.connection(), query, after, limit).await
    }

    /// Up to `limit` groups the user belongs to, by `(name_key, id)` after `after`.
    pub async fn groups_of_user(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<Group>> {
        let mut query = group_query();
        query
            .and_where(group::Column::AccountId.eq(account_id))
            .and_where(
                Expr::col((group::Entity, group::Column::Id)).in_subquery(
                    Query::select()
                        .column(group_member::Column::GroupId)
                        .from(group_member::Entity)
                        .and_where(group_member::Column::AccountId.eq(account_id))
                        .and_where(group_member::Column::UserId.eq(user_id))
                        .to_owned(),
                ),
            );
        page_of_groups(self.connection(), query, after, limit).await
    }

    /// Whether the person is a member of the account (any status).
    pub async fn is_member(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<bool> {
        Ok(membership::Entity::find_by_id((account_id, user_id))
            .select_only()
            .column(membership::Column::UserId)
            .into_tuple::<Uuid>()
            .one(self.connection())
            .await?
            .is_some())
    }
}

impl Tx {
    pub async fn group(&self, account_id: Uuid, id: Uuid) -> DomainResult<Option<Group>> {
        find_group(self.conn(), account_id, id).await
    }

    /// Whether another group of the account than `except` has this name key.
    pub async fn group_name_taken(
        &self,
        account_id: Uuid,
        name_key: &str,
        except: Option<Uuid>,
    ) -> DomainResult<bool> {
        let mut query = group::Entity::find()
            .select_only()
            .column(group::Column::Id)
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::NameKey.eq(name_key));
        if let Some(id) = except {
            query = query.filter(group::Column::Id.ne(id));
        }
        Ok(query.into_tuple::<Uuid>().one(self.conn()).await?.is_some())
    }

    pub async fn insert_group(&self, group: &Group) -> DomainResult<()> {
        group::Entity::insert(group::ActiveModel {
            account_id: Set(group.account_id),
            id: Set(group.id),
            name: Set(group.name.clone()),
            name_key: Set(group.name_key.clone()),
            description: Set(group.description.clone()),
            version: Set(group.version),
            created_at: Set(group.created_at),
            updated_at: Set(group.updated_at),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// Applies `change` (or only moves the version on, when it changes nothing) and moves the
    /// group's version (the etag) on.
    pub async fn update_group(
        &self,
        account_id: Uuid,
        id: Uuid,
        change: &GroupChange,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let mut update = group::Entity::update_many()
            .col_expr(
                group::Column::Version,
                Expr::col(group::Column::Version).add(1),
            )
            .col_expr(group::Column::UpdatedAt, Expr::value(now))
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::Id.eq(id));
        if let Some(name) = &change.name {
            update = update
                .col_expr(group::Column::Name, Expr::value(name.name()))
                .col_expr(group::Column::NameKey, Expr::value(name.key()));
        }
        if let Some(description) = &change.description {
            update = update.col_expr(group::Column::Description, Expr::value(description));
        }
        update.exec(self.conn()).await?;
        Ok(())
    }

    /// Deletes the group with its memberships.
    pub async fn delete_group(&self, account_id: Uuid, id: Uuid) -> DomainResult<()> {
        group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::GroupId.eq(id))
            .exec(self.conn())
            .await?;
        group::Entity::delete_many()
            .filter(group::Column::AccountId.eq(account_id))
            .filter(group::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Which of `user_ids` are members of the account (any status).
    pub async fn members_among(
        &self,
        account_id: Uuid,
        user_ids: &HashSet<Uuid>,
    ) -> DomainResult<HashSet<Uuid>> {
        Ok(membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.is_in(user_ids.iter().copied()))
            .into_tuple::<Uuid>()
            .all(self.conn())
            .await?
            .into_iter()
            .collect())
    }

    /// Adds the users to the group (those already in it are skipped); returns how many were
    /// added.
    pub async fn add_group_members(
        &self,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &HashSet<Uuid>,
        now: DateTime<Utc>,
    ) -> DomainResult<u64> {
        Ok(
            group_member::Entity::insert_many(user_ids.iter().map(|user_id| {
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
            .exec_without_returning(self.conn())
            .await?,
        )
    }

    /// Removes the users from the group (ids that are not members are skipped); returns how many
    /// were removed.
    pub async fn remove_group_members(
        &self,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<u64> {
        Ok(group_member::Entity::delete_many()
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::UserId.is_in(user_ids.iter().copied()))
            .exec(self.conn())
            .await?
            .rows_affected)
    }
}
