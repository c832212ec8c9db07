//! Invitations: the live link of an invited membership, under the hash of its token (a resend
//! replaces it), and their acceptance, which makes the membership ACTIVE.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::entities::membership::StoredStatus;
use super::entities::{invitation, membership};
use super::{Store, Tx};
use crate::domain::error::DomainResult;
use crate::domain::users::Invitation;

impl From<invitation::Model> for Invitation {
    fn from(row: invitation::Model) -> Self {
        Self {
            account_id: row.account_id,
            user_id: row.user_id,
            token_hash: row.token_hash,
            invited_by: row.invited_by,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

impl Store {
    pub async fn find_invitation_by_token(
        &self,
        token_hash: &str,
    ) -> DomainResult<Option<Invitation>> {
        Ok(invitation::Entity::find()
            .filter(invitation::Column::TokenHash.eq(token_hash))
            .one(self.connection())
            .await?
            .map(Invitation::from))
    }
}

impl Tx {
    pub async fn insert_invitation(&self, invitation: &Invitation) -> DomainResult<()> {
        invitation::Entity::insert(invitation::ActiveModel {
            account_id: Set(invitation.account_id),
            user_id: Set(invitation.user_id),
            token_hash: Set(invitation.token_hash.clone()),
            invited_by: Set(invitation.invited_by),
            expires_at: Set(invitation.expires_at),
            created_at: Set(invitation.created_at),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// The invitation whose link has this token hash, locked until the unit of work ends: a
    /// link accepted twice at once is accepted by the first only, and a resend waits for it.
    pub async fn lock_invitation(&self, token_hash: &str) -> DomainResult<Option<Invitation>> {
        Ok(invitation::Entity::find()
            .filter(invitation::Column::TokenHash.eq(token_hash))
            .lock_exclusive()
            .one(self.conn())
            .await?
            .map(Invitation::from))
    }

    /// When the member's pending invitation was sent, if there is one.
    pub async fn invitation_sent_at(
        &self,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Option<DateTime<Utc>>> {
        Ok(invitation::Entity::find_by_id((account_id, user_id))
            .select_only()
            .column(invitation::Column::CreatedAt)
            .into_tuple()
            .one(self.conn())
            .await?)
    }

    pub async fn delete_invitation(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<()> {
        invitation::Entity::delete_by_id((account_id, user_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Makes an INVITED membership ACTIVE, accepted at `now`; false when it was not invited.
    pub async fn activate_membership(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let activated = membership::Entity::update_many()
            .col_expr(
                membership::Column::Status,
                Expr::value(StoredStatus::Active),
            )
            .col_expr(membership::Column::AcceptedAt, Expr::value(now))
            .col_expr(
                membership::Column::Version,
                Expr::col(membership::Column::Version).add(1),
            )
            .col_expr(membership::Column::UpdatedAt, Expr::value(now))
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::UserId.eq(user_id))
            .filter(membership::Column::Status.eq(StoredStatus::Invited))
            .exec(self.conn())
            .await?;
        Ok(activated.rows_affected == 1)
    }
}
