//! The audit log.
//!
//! `audit_events` is append-only: a use case inserts its event unchained (`seq` null) in the unit
//! of work of the change, and the chainer later sets `seq`, `prev_hash` and `hash` (hex SHA-256).
//! `audit_chains` holds each account's chain head (the last position and hash) and the floor
//! retention left (the last deleted position and hash). `leases` lets one replica at a time run
//! a periodic job.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    // No foreign key: the log outlives what it tells of, and the nil account
                    // holds the service's own events.
                    .col(uuid("account_id"))
                    .col(uuid("id"))
                    .col(big_integer_null("seq"))
                    .col(string_len_null("prev_hash", 64))
                    .col(string_len_null("hash", 64))
                    .col(small_integer("category"))
                    .col(string_len("action", 128))
                    .col(small_integer("actor_type"))
                    .col(string_len("actor_id", 256))
                    .col(string_len("actor_display", 256))
                    // Empty when the event has no target.
                    .col(string_len("target_type", 64))
                    .col(string_len("target_id", 256))
                    .col(string_len("target_display", 256))
                    .col(string_len("ip_address", 64))
                    .col(string_len("user_agent", 512))
                    .col(string_len("request_id", 128))
                    // JSON: an object of strings, and an array of {field, before, after}.
                    .col(text("metadata"))
                    .col(text("changes"))
                    .col(timestamp_with_time_zone("time"))
                    .col(string_len("source", 128))
                    .primary_key(Index::create().col("account_id").col("id"))
                    .to_owned(),
            )
            .await?;
        // Newest first, and the page after a (time, id).
        manager
            .create_index(
                Index::create()
                    .name("audit_events_time_idx")
                    .table("audit_events")
                    .col("account_id")
                    .col("time")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        for column in ["actor_id", "target_id"] {
            manager
                .create_index(
                    Index::create()
                        .name(format!("audit_events_{column}_idx"))
                        .table("audit_events")
                        .col("account_id")
                        .col(column)
                        .col("time")
                        .to_owned(),
                )
                .await?;
        }
        // One event per position: two chainers can never fork a chain.
        manager
            .create_index(
                Index::create()
                    .name("audit_events_seq_key")
                    .table("audit_events")
                    .col("account_id")
                    .col("seq")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // What the chainer has still to do.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX audit_events_unchained_idx ON audit_events (account_id, id) \
                 WHERE seq IS NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("audit_chains")
                    .col(uuid("account_id").primary_key())
                    .col(big_integer("seq"))
                    .col(string_len("hash", 64))
                    .col(big_integer("floor_seq"))
                    .col(string_len("floor_hash", 64))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("leases")
                    .col(string_len("name", 64).primary_key())
                    .col(uuid("holder"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["leases", "audit_chains", "audit_events"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
