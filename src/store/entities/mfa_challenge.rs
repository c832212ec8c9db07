use sea_orm::entity::prelude::*;

/// An email-code challenge of a password login.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_challenges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub user_id: Uuid,
    /// The account the login is for, when it is known before the code.
    pub account_id: Option<Uuid>,
    pub code_hash: String,
    pub code_expires_at: DateTimeUtc,
    pub attempts_left: i32,
    pub resends_left: i32,
    pub last_sent_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub consumed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
