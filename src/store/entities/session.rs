use sea_orm::entity::prelude::*;

/// One login of a person into one account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub account_id: Uuid,
    /// How the person authenticated, comma-separated (`pwd,otp`).
    pub amr: String,
    /// The email code was passed (or the login method relies on the provider's MFA).
    pub mfa_passed: bool,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: DateTimeUtc,
    pub last_used_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoke_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The membership the session logs in to.
    #[sea_orm(
        belongs_to = "super::membership::Entity",
        from = "(Column::AccountId, Column::UserId)",
        to = "(super::membership::Column::AccountId, super::membership::Column::UserId)"
    )]
    Membership,
}

impl ActiveModelBehavior for ActiveModel {}
