//! AccessService's use cases: the caller's permissions in the account.

use uuid::Uuid;

use crate::domain::access::{MyPermissions, permissions_of};
use crate::domain::actor::Actor;
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::user_not_found;
use crate::store::Store;

#[derive(Clone)]
pub struct Access {
    store: Store,
}

impl Access {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The caller's role (as stored now, not as in the token) and what it grants.
    pub async fn my_permissions(
        &self,
        actor: &Actor,
        account_id: Uuid,
    ) -> DomainResult<MyPermissions> {
        let person = actor.require_person("permissions belong to a person")?;
        if person.account_id != account_id {
            return Err(DomainError::permission_denied(
                reason::ACCOUNT_MISMATCH,
                "the access token is for another account",
            ));
        }
        let member = self
            .store
            .member(account_id, person.user_id)
            .await?
            .ok_or_else(user_not_found)?;
        Ok(permissions_of(member.role()))
    }
}
