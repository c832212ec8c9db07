//! Accounts and their first administrator.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::entities::{account, membership, user};
use super::users::{NewLink, invite};
use super::{Store, idempotency};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::roles::Role;

pub use super::idempotency::Idempotency;

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub max_users: i32,
    pub max_groups: i32,
    pub admin_email: String,
    pub admin_email_key: String,
    pub admin_display_name: String,
    pub idempotency: Option<Idempotency>,
}

/// An account with its first administrator (person and membership).
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    pub account: account::Model,
    pub admin: user::Model,
    pub membership: membership::Model,
}

/// A change to the account's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub enforce_mfa: Option<bool>,
    pub max_users: Option<i32>,
    pub max_groups: Option<i32>,
}

/// The membership statuses as stored.
pub mod status {
    pub const INVITED: &str = "invited";
    pub const ACTIVE: &str = "active";
    pub const DISABLED: &str = "disabled";
}

impl Store {
    /// Creates the account and records its first administrator as an invited member, in one
    /// transaction. A retried request (same idempotency key) returns what the first one created.
    pub async fn create_account(
        &self,
        new: NewAccount,
        link: NewLink,
        now: DateTime<Utc>,
    ) -> DomainResult<CreatedAccount> {
        if let Some(key) = &new.idempotency
            && let Some(existing) = self.replay_account(key, now).await?
        {
            return Ok(existing);
        }
        match self.insert_account(&new, &link, now).await {
            Err(err) if idempotency::is_conflict(&err) => {
                // The same request ran concurrently and won: answer with its result.
                let key = new.idempotency.as_ref().ok_or(err)?;
                self.replay_account(key, now).await?.ok_or_else(|| {
                    DomainError::internal(anyhow::anyhow!("idempotency key without account"))
                })
            }
            other => other,
        }
    }

    async fn replay_account(
        &self,
        key: &Idempotency,
        now: DateTime<Utc>,
    ) -> DomainResult<Option<CreatedAccount>> {
        let Some(resource_id) = idempotency::replay(&self.db, key, now).await? else {
            return Ok(None);
        };
        let account_id = Uuid::parse_str(&resource_id).map_err(DomainError::internal)?;
        let account = account::Entity::find_by_id(account_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account"))?;
        let (admin, membership) = self.first_administrator(account_id).await?.ok_or_else(|| {
            DomainError::internal(anyhow::anyhow!("account without administrator"))
        })?;
        Ok(Some(CreatedAccount {
            account,
            admin,
            membership,
        }))
    }

    async fn insert_account(
        &self,
        new: &NewAccount,
        link: &NewLink,
        now: DateTime<Utc>,
    ) -> DomainResult<CreatedAccount> {
        let txn = self.db.begin().await?;
        let account_id = Uuid::now_v7();
        if let Some(key) = &new.idempotency {
            idempotency::record(&txn, key, &account_id.to_string(), now).await?;
        }
        let account = account::Model {
            id: account_id,
            name: new.name.clone(),
            enforce_mfa: false,
            max_users: new.max_users,
            max_groups: new.max_groups,
            user_count: 1,
            group_count: 0,
            access_revision: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        account::Entity::insert(account::ActiveModel::from(account.clone()))
            .exec_without_returning(&txn)
            .await?;
        let admin = find_or_create_person(
            &txn,
            &new.admin_email,
            &new.admin_email_key,
            &new.admin_display_name,
            now,
        )
        .await?;
        let membership = membership::Model {
            account_id,
            user_id: admin.id,
            email_key: admin.email_key.clone(),
            role: Role::AccountAdministrator.as_str().to_owned(),
            status: status::INVITED.to_owned(),
            invited_by: None,
            accepted_at: None,
            last_login_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        membership::Entity::insert(membership::ActiveModel::from(membership.clone()))
            .exec_without_returning(&txn)
            .await?;
        invite(&txn, &account, &admin, None, "Support", link, now).await?;
        txn.commit().await?;
        Ok(CreatedAccount {
            account,
            admin,
            membership,
        })
    }

    /// The earliest administrator membership of the account, with its person.
    pub async fn first_administrator(
        &self,
        account_id: Uuid,
    ) -> DomainResult<Option<(user::Model, membership::Model)>> {
        let Some(membership) = membership::Entity::find()
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::Role.eq(Role::AccountAdministrator.as_str()))
            .order_by_asc(membership::Column::CreatedAt)
            .order_by_asc(membership::Column::UserId)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let person = user::Entity::find_by_id(membership.user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("membership without person")))?;
        Ok(Some((person, membership)))
    }

    pub async fn find_account(&self, id: Uuid) -> DomainResult<Option<account::Model>> {
        Ok(account::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Applies `change` if the account is still at `expected_version` (when given): one
    /// conditional UPDATE, so two concurrent writers cannot both win.
    pub async fn update_account(
        &self,
        id: Uuid,
        expected_version: Option<i64>,
        change: AccountChange,
        now: DateTime<Utc>,
    ) -> DomainResult<account::Model> {
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
        if let Some(version) = expected_version {
            update = update.filter(account::Column::Version.eq(version));
        }
        let txn = self.db.begin().await?;
        let result = update.exec(&txn).await?;
        let account = account::Entity::find_by_id(id).one(&txn).await?;
        txn.commit().await?;
        match (result.rows_affected, account) {
            (1, Some(account)) => Ok(account),
            (_, None) => Err(DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account")),
            (_, Some(_)) => Err(DomainError::etag_mismatch("account")),
        }
    }
}

/// The person with this email, created if new. Safe under races: the insert yields to a
/// concurrent one (`ON CONFLICT DO NOTHING`) and the row is then read back.
pub(crate) async fn find_or_create_person(
    conn: &impl ConnectionTrait,
    email: &str,
    email_key: &str,
    display_name: &str,
    now: DateTime<Utc>,
) -> DomainResult<user::Model> {
    user::Entity::insert(user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.to_owned()),
        email_key: Set(email_key.to_owned()),
        display_name: Set(display_name.to_owned()),
        password_hash: Set(None),
        mfa_enabled: Set(false),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(user::Column::EmailKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    user::Entity::find()
        .filter(user::Column::EmailKey.eq(email_key))
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("person vanished after insert")))
}
