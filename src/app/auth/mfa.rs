//! Personal MFA: the email code at every password login, turned on or off by the person.

use super::{Auth, person_of};
use crate::auth::password::Password;
use crate::domain::actor::Actor;
use crate::domain::auth::login::check_mfa_off;
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::{Member, user_not_found};

impl Auth {
    /// Turns the caller's personal MFA on or off. Off is refused while the account enforces it,
    /// and needs the current password when the person has one.
    pub async fn set_mfa(
        &self,
        actor: &Actor,
        enabled: bool,
        current: Option<Password>,
    ) -> DomainResult<Member> {
        let caller = person_of(actor)?;
        let member = self
            .store
            .member(caller.account_id, caller.user_id)
            .await?
            .ok_or_else(user_not_found)?;
        if !enabled {
            check_mfa_off(&member)?;
            if member.person.has_password() {
                let ok = match &current {
                    Some(password) if !password.is_empty() => {
                        self.checked_password(&member.person, password).await?
                    }
                    _ => false,
                };
                if !ok {
                    return Err(DomainError::invalid_with(
                        reason::CURRENT_PASSWORD_INCORRECT,
                        "current_password",
                        "is not your current password",
                    ));
                }
            }
        }
        self.store
            .set_mfa_enabled(caller.user_id, enabled, self.clock.now())
            .await?;
        self.store
            .member(caller.account_id, caller.user_id)
            .await?
            .ok_or_else(user_not_found)
    }
}
