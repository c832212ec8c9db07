//! Email-code challenges, their id and code stored as hashes. The use case locks a challenge,
//! lets the domain check a code or a resend, and stores the challenge's new state.

use sea_orm::{ActiveValue::Set, EntityTrait, QuerySelect};

use super::Tx;
use super::entities::mfa_challenge;
use crate::domain::auth::EmailChallenge;
use crate::domain::error::DomainResult;

impl From<mfa_challenge::Model> for EmailChallenge {
    fn from(row: mfa_challenge::Model) -> Self {
        Self {
            id_hash: row.id_hash,
            user_id: row.user_id,
            account_id: row.account_id,
            code_hash: row.code_hash,
            code_expires_at: row.code_expires_at,
            attempts_left: row.attempts_left,
            resends_left: row.resends_left,
            last_sent_at: row.last_sent_at,
            created_at: row.created_at,
            consumed_at: row.consumed_at,
        }
    }
}

impl From<&EmailChallenge> for mfa_challenge::ActiveModel {
    fn from(c: &EmailChallenge) -> Self {
        Self {
            id_hash: Set(c.id_hash.clone()),
            user_id: Set(c.user_id),
            account_id: Set(c.account_id),
            code_hash: Set(c.code_hash.clone()),
            code_expires_at: Set(c.code_expires_at),
            attempts_left: Set(c.attempts_left),
            resends_left: Set(c.resends_left),
            last_sent_at: Set(c.last_sent_at),
            created_at: Set(c.created_at),
            consumed_at: Set(c.consumed_at),
        }
    }
}

impl Tx {
    pub async fn insert_challenge(&self, challenge: &EmailChallenge) -> DomainResult<()> {
        mfa_challenge::Entity::insert(mfa_challenge::ActiveModel::from(challenge))
            .exec_without_returning(self.conn())
            .await?;
        Ok(())
    }

    /// The challenge with this id hash, locked until the unit of work ends: its checks and
    /// resends queue, so no attempt or resend is counted twice.
    pub async fn lock_challenge(&self, id_hash: &str) -> DomainResult<Option<EmailChallenge>> {
        Ok(mfa_challenge::Entity::find_by_id(id_hash.to_owned())
            .lock_exclusive()
            .one(self.conn())
            .await?
            .map(EmailChallenge::from))
    }

    /// Stores the challenge's new state.
    pub async fn update_challenge(&self, challenge: &EmailChallenge) -> DomainResult<()> {
        mfa_challenge::Entity::update(mfa_challenge::ActiveModel::from(challenge))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
