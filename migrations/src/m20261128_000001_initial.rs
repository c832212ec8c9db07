//! Accounts, people, memberships, groups, group members and idempotency keys.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("accounts")
                    .col(uuid("id").primary_key())
                    .col(string_len("name", 200))
                    .col(boolean("enforce_mfa").default(false))
                    .col(integer("max_users"))
                    .col(integer("max_groups"))
                    .col(integer("user_count").default(0))
                    .col(integer("group_count").default(0))
                    .col(big_integer("access_revision").default(0))
                    .col(big_integer("version").default(1))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(uuid("id").primary_key())
                    .col(string_len("email", 320))
                    .col(string_len("email_key", 320))
                    .col(string_len("display_name", 200))
                    .col(text_null("password_hash"))
                    .col(boolean("mfa_enabled").default(false))
                    .col(big_integer("version").default(1))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_email_key_key")
                    .table("users")
                    .col("email_key")
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .col(uuid("account_id"))
                    .col(uuid("user_id"))
                    // The person's lower-cased email, copied here (emails are immutable) so the
                    // account's users are listed in email order by one index range scan.
                    .col(string_len("email_key", 320))
                    .col(string_len("role", 40))
                    .col(string_len("status", 16))
                    .col(uuid_null("invited_by"))
                    // When the invitation was accepted; `EnableUser` returns to ACTIVE only then.
                    .col(timestamp_with_time_zone_null("accepted_at"))
                    .col(timestamp_with_time_zone_null("last_login_at"))
                    .col(big_integer("version").default(1))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("account_id").col("user_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("memberships_account_fk")
                            .from("memberships", "account_id")
                            .to("accounts", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("memberships_user_fk")
                            .from("memberships", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("memberships_user_idx")
                    .table("memberships")
                    .col("user_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("groups")
                    .col(uuid("account_id"))
                    .col(uuid("id"))
                    .col(string_len("name", 64))
                    .col(string_len("name_key", 64))
                    .col(string_len("description", 1024).default(""))
                    .col(big_integer("version").default(1))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("account_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("groups_account_fk")
                            .from("groups", "account_id")
                            .to("accounts", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("groups_account_name_key")
                    .table("groups")
                    .col("account_id")
                    .col("name_key")
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("group_members")
                    .col(uuid("account_id"))
                    .col(uuid("group_id"))
                    .col(uuid("user_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col("account_id")
                            .col("group_id")
                            .col("user_id"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("group_members_group_fk")
                            .from("group_members", ("account_id", "group_id"))
                            .to("groups", ("account_id", "id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("group_members_membership_fk")
                            .from("group_members", ("account_id", "user_id"))
                            .to("memberships", ("account_id", "user_id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("group_members_user_idx")
                    .table("group_members")
                    .col("account_id")
                    .col("user_id")
                    .col("group_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .col(string_len("scope", 200))
                    .col(string_len("request_id", 100))
                    .col(string_len("fingerprint", 64))
                    .col(string_len("resource_id", 100))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("scope").col("request_id"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "idempotency_keys",
            "group_members",
            "groups",
            "memberships",
            "users",
            "accounts",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
