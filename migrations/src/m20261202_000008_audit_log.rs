//! The audit log.
//!
//! `audit_events` is append-only: a use case inserts its event in the unit of work of the change,
//! with a row in `audit_pending` (the event's id and the digest of its content) that tells the
//! chainer it is not linked yet. The chainer gives it its link in `audit_links` (its position in
//! the account's chain, its predecessor's hash and its own, hex SHA-256) and removes it from
//! `audit_pending`: no event row is ever updated.
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
        // Events appended and not linked yet: the chainer's queue.
        manager
            .create_table(
                Table::create()
                    .table("audit_pending")
                    .col(uuid("account_id"))
                    .col(uuid("event_id"))
                    // The digest of the event's content when it was written: the chainer links
                    // it without reading the event back, and an event edited before it is
                    // linked no longer matches its link.
                    .col(string_len("digest", 64))
                    .primary_key(Index::create().col("account_id").col("event_id"))
                    .to_owned(),
            )
            .await?;
        // Each chain's links, by position: one event per position, so two chainers can never
        // fork a chain.
        manager
            .create_table(
                Table::create()
                    .table("audit_links")
                    .col(uuid("account_id"))
                    .col(big_integer("seq"))
                    .col(uuid("event_id"))
                    .col(string_len("prev_hash", 64))
                    .col(string_len("hash", 64))
                    .primary_key(Index::create().col("account_id").col("seq"))
                    .to_owned(),
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
        for table in [
            "leases",
            "audit_chains",
            "audit_links",
            "audit_pending",
            "audit_events",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
