//! Account selections: a finished first factor waiting for the person to pick an account, under
//! the hash of its token.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use super::entities::account_selection;
use super::{Store, Tx};
use crate::domain::auth::PendingSelection;
use crate::domain::error::DomainResult;

impl From<account_selection::Model> for PendingSelection {
    fn from(row: account_selection::Model) -> Self {
        Self {
            user_id: row.user_id,
            amr: super::amr_of(&row.amr),
            mfa_passed: row.mfa_passed,
            created_at: row.created_at,
            expires_at: row.expires_at,
            consumed_at: row.consumed_at,
        }
    }
}

impl Store {
    /// Stores a selection under the hash of its token, in one statement.
    pub async fn create_selection(
        &self,
        token_hash: &str,
        selection: &PendingSelection,
    ) -> DomainResult<()> {
        account_selection::Entity::insert(account_selection::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            user_id: Set(selection.user_id),
            amr: Set(selection.amr.join(",")),
            mfa_passed: Set(selection.mfa_passed),
            expires_at: Set(selection.expires_at),
            created_at: Set(selection.created_at),
            consumed_at: Set(selection.consumed_at),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }
}

impl Tx {
    /// The selection with this token hash, locked until the unit of work ends.
    pub async fn lock_selection(&self, token_hash: &str) -> DomainResult<Option<PendingSelection>> {
        Ok(account_selection::Entity::find_by_id(token_hash.to_owned())
            .lock_exclusive()
            .one(self.conn())
            .await?
            .map(PendingSelection::from))
    }

    /// Marks the selection made.
    pub async fn consume_selection(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        account_selection::Entity::update_many()
            .col_expr(account_selection::Column::ConsumedAt, Expr::value(now))
            .filter(account_selection::Column::TokenHash.eq(token_hash))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
