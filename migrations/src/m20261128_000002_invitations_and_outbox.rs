//! Invitations (one live link per membership) and the transactional email outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("invitations")
                    .col(uuid("account_id"))
                    .col(uuid("user_id"))
                    // SHA-256 (hex) of the link's token; the token itself is never stored.
                    .col(string_len("token_hash", 64))
                    .col(uuid_null("invited_by"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("account_id").col("user_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("invitations_membership_fk")
                            .from("invitations", ("account_id", "user_id"))
                            .to("memberships", ("account_id", "user_id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invitations_token_hash_key")
                    .table("invitations")
                    .col("token_hash")
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("outbox_emails")
                    .col(uuid("id").primary_key())
                    .col(uuid_null("account_id"))
                    .col(string_len("kind", 40))
                    .col(string_len("recipient", 320))
                    // Template data as JSON. Secret parts (links, codes) are wiped once delivered.
                    .col(text("payload"))
                    .col(string_len("status", 16))
                    .col(integer("attempts").default(0))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    .col(text_null("last_error"))
                    .col(string_len_null("provider_message_id", 200))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_emails_due_idx")
                    .table("outbox_emails")
                    .col("status")
                    .col("next_attempt_at")
                    .to_owned(),
            )
            .await?;

        // ListUsers pages through an account's users in email order, optionally by role or status.
        manager
            .create_index(
                Index::create()
                    .name("memberships_account_email_idx")
                    .table("memberships")
                    .col("account_id")
                    .col("email_key")
                    .col("user_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("memberships_account_role_idx")
                    .table("memberships")
                    .col("account_id")
                    .col("role")
                    .col("email_key")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("memberships_account_status_idx")
                    .table("memberships")
                    .col("account_id")
                    .col("status")
                    .col("email_key")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in [
            "memberships_account_status_idx",
            "memberships_account_role_idx",
        ] {
            manager
                .drop_index(Index::drop().name(index).table("memberships").to_owned())
                .await?;
        }
        for table in ["outbox_emails", "invitations"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
