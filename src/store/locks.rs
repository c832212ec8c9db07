//! The account row as the lock of every cap and counter, and the access revision behind
//! consistency tokens.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::entities::account;
use crate::domain::error::{DomainError, DomainResult, reason};

/// Locks the account row for the rest of the transaction (`SELECT ... FOR UPDATE` on PostgreSQL;
/// SQLite's single connection is already serial) and returns it. Caps are checked against this
/// row, so concurrent requests on any number of replicas queue here.
pub async fn lock_account(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
) -> DomainResult<account::Model> {
    account::Entity::find_by_id(account_id)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account"))
}

/// Adds `delta` to a counter of the locked account.
pub async fn add_to_counter(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    column: account::Column,
    delta: i32,
) -> DomainResult<()> {
    account::Entity::update_many()
        .col_expr(column, Expr::col(column).add(delta))
        .filter(account::Column::Id.eq(account_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Moves the account's access revision on (a write that can change an access decision) and
/// returns the new revision, the consistency token of that write.
pub async fn bump_access_revision(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
) -> DomainResult<i64> {
    account::Entity::update_many()
        .col_expr(
            account::Column::AccessRevision,
            Expr::col(account::Column::AccessRevision).add(1),
        )
        .filter(account::Column::Id.eq(account_id))
        .exec(conn)
        .await?;
    let revision = account::Entity::find_by_id(account_id)
        .select_only()
        .column(account::Column::AccessRevision)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account"))?;
    Ok(revision)
}
