use sea_orm::entity::prelude::*;

/// One audit event, never updated (its link is in `audit_links`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub category: i16,
    pub action: String,
    pub actor_type: i16,
    pub actor_id: String,
    pub actor_display: String,
    pub target_type: String,
    pub target_id: String,
    pub target_display: String,
    pub ip_address: String,
    pub user_agent: String,
    pub request_id: String,
    pub metadata: String,
    pub changes: String,
    pub time: DateTimeUtc,
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
