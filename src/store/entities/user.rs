use sea_orm::entity::prelude::*;

/// A person: one login identity across accounts.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// As the person gave it.
    pub email: String,
    /// Lower-cased: unique across the service.
    pub email_key: String,
    pub display_name: String,
    /// Argon2id PHC string; `None` until an invitation is accepted (or for SSO/Google-only people).
    pub password_hash: Option<String>,
    pub mfa_enabled: bool,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::membership::Entity")]
    Memberships,
}

impl Related<super::membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Memberships.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
