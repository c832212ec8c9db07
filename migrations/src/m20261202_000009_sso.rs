//! SAML single sign-on.
//!
//! `sso_settings` holds an account's identity provider (one row per configured account; an account
//! without one has SSO off). `sso_requests` remembers each AuthnRequest of StartSsoLogin for ten
//! minutes, with the hash of the relay state bound to the browser that started it; a response
//! consumes its request. `sso_assertions` remembers each accepted assertion id until the assertion
//! expires, so an assertion logs in once, on any replica.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sso_settings")
                    .col(uuid("account_id").primary_key())
                    .col(boolean("enabled"))
                    .col(text_null("idp_metadata_xml"))
                    .col(string_len("idp_entity_id", 1024))
                    .col(string_len("idp_sso_url", 2048))
                    // JSON array of PEM certificates.
                    .col(text("idp_certificates"))
                    .col(string_len("display_name_attribute", 256))
                    .col(string_len("role_attribute", 256))
                    // JSON object: attribute value (lower case) to role name.
                    .col(text("role_mapping"))
                    .col(string_len_null("default_role", 64))
                    .col(boolean("allow_idp_initiated"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("sso_settings", "account_id")
                            .to("accounts", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sso_requests")
                    .col(string_len("id", 64).primary_key())
                    .col(uuid("account_id"))
                    .col(string_len("relay_state_hash", 64))
                    .col(timestamp_with_time_zone("expires_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sso_requests_expires_at_idx")
                    .table("sso_requests")
                    .col("expires_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sso_assertions")
                    .col(uuid("account_id"))
                    .col(string_len("assertion_id", 256))
                    .col(timestamp_with_time_zone("expires_at"))
                    .primary_key(Index::create().col("account_id").col("assertion_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sso_assertions_expires_at_idx")
                    .table("sso_assertions")
                    .col("expires_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["sso_assertions", "sso_requests", "sso_settings"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
