use sea_orm::entity::prelude::*;

/// An account's SAML identity provider.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sso_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    pub enabled: bool,
    pub idp_metadata_xml: Option<String>,
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    /// JSON array of the certificates with what is shown of them.
    pub idp_certificates: String,
    pub display_name_attribute: String,
    pub role_attribute: String,
    /// JSON object: attribute value (lower case) to role name.
    pub role_mapping: String,
    pub default_role: Option<String>,
    pub allow_idp_initiated: bool,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
