//! Accounts: the row that holds each account's settings, caps, counters and access revision.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::entities::account;
use super::{Store, Tx};
use crate::domain::accounts::{Account, AccountChange};
use crate::domain::error::DomainResult;

impl From<account::Model> for Account {
    fn from(row: account::Model) -> Self {
        Self {
            id: row.id,
            name: row.name,
            enforce_mfa: row.enforce_mfa,
            max_users: row.max_users,
            max_groups: row.max_groups,
            user_count: row.user_count,
            group_count: row.group_count,
            access_revision: row.access_revision,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<&Account> for account::ActiveModel {
    fn from(account: &Account) -> Self {
        Self {
            id: Set(account.id),
            name: Set(account.name.clone()),
            enforce_mfa: Set(account.enforce_mfa),
            max_users: Set(account.max_users),
            max_groups: Set(account.max_groups),
            user_count: Set(account.user_count),
            group_count: Set(account.group_count),
            access_revision: Set(account.access_revision),
            version: Set(account.version),
            created_at: Set(account.created_at),
            updated_at: Set(account.updated_at),
        }
    }
}

/// A counter of the account row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Users,
    Groups,
}

impl Store {
    /// The account created first, if any.
    pub async fn oldest_account(&self) -> DomainResult<Option<Account>> {
        use sea_orm::QueryOrder;
        Ok(account::Entity::find()
            .order_by_asc(account::Column::CreatedAt)
            .one(self.connection())
            .await?
            .map(Account::from))
    }

    pub async fn account(&self, id: Uuid) -> DomainResult<Option<Account>> {
        Ok(account::Entity::find_by_id(id)
            .one(self.connection())
            .await?
            .map(Account::from))
    }
}

impl Tx {
    pub async fn insert_account(&self, account: &Account) -> DomainResult<()> {
        account::Entity::insert(account::ActiveModel::from(account))
            .exec_without_returning(self.conn())
            .await?;
        Ok(())
    }

    /// Locks the account row for the rest of the unit of work (`SELECT ... FOR UPDATE` on
    /// PostgreSQL; SQLite's single connection is already serial) and returns it. Caps are checked
    /// against this row, so concurrent requests on any number of replicas queue here.
    pub async fn lock_account(&self, id: Uuid) -> DomainResult<Option<Account>> {
        Ok(account::Entity::find_by_id(id)
            .lock_exclusive()
            .one(self.conn())
            .await?
            .map(Account::from))
    }

    /// Applies `change` to the account's fields and moves its version (the etag) on.
    pub async fn update_account(
        &self,
        id: Uuid,
        change: &AccountChange,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let mut update = account::Entity::update_many()
            .col_expr(
                account::Column::Version,
                Expr::col(account::Column::Version).add(1),
            )
            .col_expr(account::Column::UpdatedAt, Expr::value(now))
            .filter(account::Column::Id.eq(id));
        if let Some(enforce_mfa) = change.enforce_mfa {
            update = update.col_expr(account::Column::EnforceMfa, Expr::value(enforce_mfa));
        }
        if let Some(max_users) = change.max_users {
            update = update.col_expr(account::Column::MaxUsers, Expr::value(max_users));
        }
        if let Some(max_groups) = change.max_groups {
            update = update.col_expr(account::Column::MaxGroups, Expr::value(max_groups));
        }
        update.exec(self.conn()).await?;
        Ok(())
    }

    /// Adds `delta` to a counter of the (locked) account.
    pub async fn add_to_counter(&self, id: Uuid, counter: Counter, delta: i32) -> DomainResult<()> {
        let column = match counter {
            Counter::Users => account::Column::UserCount,
            Counter::Groups => account::Column::GroupCount,
        };
        account::Entity::update_many()
            .col_expr(column, Expr::col(column).add(delta))
            .filter(account::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
