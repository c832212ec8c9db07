use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub enforce_mfa: bool,
    pub max_users: i32,
    pub max_groups: i32,
    /// Memberships, invited ones included; kept in the same transaction as the membership rows.
    pub user_count: i32,
    pub group_count: i32,
    /// Bumped by every write that can change an access decision.
    pub access_revision: i64,
    /// Bumped by every change of the account's own fields; the etag.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
