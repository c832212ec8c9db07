//! Personal MFA: the email code at every password login, turned on or off by the person.

use super::{Auth, person_of};
use crate::app::audit;
use crate::auth::password::Password;
use crate::domain::actor::Actor;
use crate::domain::audit::{Change, Draft, EventActor, Target, action};
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
                        self.checked_password(&EventActor::of(actor), &member.person, password)
                            .await?
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
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        tx.set_mfa_enabled(caller.user_id, enabled, now).await?;
        if enabled != member.person.mfa_enabled {
            let action = if enabled {
                action::MFA_ENABLED
            } else {
                action::MFA_DISABLED
            };
            let draft = Draft::by(action, actor)
                .target(Target::new("user", caller.user_id, &member.person.email))
                .changes([Change::new(
                    "mfa_enabled",
                    Some(member.person.mfa_enabled),
                    Some(enabled),
                )]);
            audit::append(&tx, caller.account_id, now, [draft]).await?;
        }
        tx.commit().await?;
        self.store
            .member(caller.account_id, caller.user_id)
            .await?
            .ok_or_else(user_not_found)
    }
}
