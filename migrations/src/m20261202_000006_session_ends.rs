//! Ended sessions by account and time: a replica that holds an account's session ends in memory
//! catches up with those after a moment, when it could not hear them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("sessions_account_revoked_idx")
                    .table("sessions")
                    .col("account_id")
                    .col("revoked_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("sessions_account_revoked_idx")
                    .table("sessions")
                    .to_owned(),
            )
            .await
    }
}
