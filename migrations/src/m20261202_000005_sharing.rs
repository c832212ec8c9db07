//! Sharing: shares of DAM resources with users and groups, and the access change log.
//!
//! `access_changes` holds, per account and access revision, what a write changed in the data that
//! access decisions read (as JSON). Replicas that keep an account's access data in memory catch
//! up by reading the entries after the revision they hold, instead of reloading the account.
//! Entries are pruned after a while; a replica further behind than the oldest entry reloads.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("shares")
                    .col(uuid("account_id"))
                    .col(uuid("id"))
                    // 1 file, 2 folder, 3 collection (the API's numbers, so the API's order)
                    .col(small_integer("resource_type"))
                    .col(string_len("resource_id", 256))
                    // user | group
                    .col(string_len("subject_type", 8))
                    .col(uuid("subject_id"))
                    // view | contribute | manage
                    .col(string_len("level", 16))
                    // A person id, or `service:<name>`.
                    .col(string_len("created_by", 200))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("account_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("shares_account_fk")
                            .from("shares", "account_id")
                            .to("accounts", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One share per (resource, subject); also the index of a resource's shares.
        manager
            .create_index(
                Index::create()
                    .name("shares_resource_subject_key")
                    .table("shares")
                    .col("account_id")
                    .col("resource_type")
                    .col("resource_id")
                    .col("subject_type")
                    .col("subject_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // What is shared with a subject, in (resource type, id) order.
        manager
            .create_index(
                Index::create()
                    .name("shares_subject_idx")
                    .table("shares")
                    .col("account_id")
                    .col("subject_type")
                    .col("subject_id")
                    .col("resource_type")
                    .col("resource_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("access_changes")
                    .col(uuid("account_id"))
                    .col(big_integer("revision"))
                    .col(text("changes"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("account_id").col("revision"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("access_changes_account_fk")
                            .from("access_changes", "account_id")
                            .to("accounts", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_changes_created_idx")
                    .table("access_changes")
                    .col("created_at")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("access_changes").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("shares").to_owned())
            .await
    }
}
