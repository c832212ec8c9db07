//! The login throttle becomes an unlogged table on PostgreSQL: its rows are short-lived counters
//! written on every login attempt, so they skip the write-ahead log (no WAL flush per attempt).
//! After a database crash or a failover the counters start again from zero, which costs an
//! attacker's budget nothing worth having (a few more guesses per crash). SQLite has no such
//! tables; there the migration changes nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn set_logging(manager: &SchemaManager<'_>, logged: bool) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let mode = if logged { "LOGGED" } else { "UNLOGGED" };
    manager
        .get_connection()
        .execute_unprepared(&format!("ALTER TABLE login_throttles SET {mode}"))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_logging(manager, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_logging(manager, true).await
    }
}
