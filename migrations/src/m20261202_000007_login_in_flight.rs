//! Password attempts being checked, per person: at most as many are checked at once as may still
//! fail before the pause, and a right password waits for them instead of being refused.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table("login_throttles")
                    .add_column(ColumnDef::new("in_flight").integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("login_throttles")
                    .add_column(
                        ColumnDef::new("in_flight_since")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["in_flight_since", "in_flight"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("login_throttles")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
