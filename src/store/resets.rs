//! Password reset links, under the hash of their token.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::entities::password_reset;
use super::{Store, Tx};
use crate::domain::auth::PasswordReset;
use crate::domain::error::DomainResult;

impl From<password_reset::Model> for PasswordReset {
    fn from(row: password_reset::Model) -> Self {
        Self {
            token_hash: row.token_hash,
            user_id: row.user_id,
            expires_at: row.expires_at,
            created_at: row.created_at,
            used_at: row.used_at,
        }
    }
}

impl Store {
    /// When the person's last reset link was made, if any.
    pub async fn last_reset_at(&self, user_id: Uuid) -> DomainResult<Option<DateTime<Utc>>> {
        Ok(password_reset::Entity::find()
            .select_only()
            .column(password_reset::Column::CreatedAt)
            .filter(password_reset::Column::UserId.eq(user_id))
            .order_by_desc(password_reset::Column::CreatedAt)
            .into_tuple()
            .one(&self.db)
            .await?)
    }

    pub async fn find_reset(&self, token_hash: &str) -> DomainResult<Option<PasswordReset>> {
        Ok(password_reset::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await?
            .map(PasswordReset::from))
    }
}

impl Tx {
    pub async fn insert_reset(&self, reset: &PasswordReset) -> DomainResult<()> {
        password_reset::Entity::insert(password_reset::ActiveModel {
            token_hash: Set(reset.token_hash.clone()),
            user_id: Set(reset.user_id),
            expires_at: Set(reset.expires_at),
            created_at: Set(reset.created_at),
            used_at: Set(reset.used_at),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// The reset link with this token hash, locked until the unit of work ends: a link used
    /// twice at once is used by the first only.
    pub async fn lock_reset(&self, token_hash: &str) -> DomainResult<Option<PasswordReset>> {
        Ok(password_reset::Entity::find_by_id(token_hash.to_owned())
            .lock_exclusive()
            .one(self.conn())
            .await?
            .map(PasswordReset::from))
    }

    /// Marks the reset link used.
    pub async fn spend_reset(&self, token_hash: &str, now: DateTime<Utc>) -> DomainResult<()> {
        password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .filter(password_reset::Column::TokenHash.eq(token_hash))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
