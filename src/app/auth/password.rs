//! Passwords: reset links (requested by email, used once) and changes by the person. A new
//! password ends sessions, forgets failed logins and queues a notice, in one unit of work.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Auth, Secret, hash_of, person_of};
use crate::app::audit;
use crate::app::queue;
use crate::auth::password::{self, Password};
use crate::domain::actor::Actor;
use crate::domain::audit::{Change, Draft, EventActor, Target, action};
use crate::domain::auth::links::{check_reset, may_send_reset, new_reset, reset_invalid};
use crate::domain::auth::{RESET_TTL, invalid_credentials};
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::Person;
use crate::store::Tx;

/// Stores the new password `hash` of `person` in `tx`, ends their sessions (but `keep`) for
/// `reason`, forgets their failed logins and queues the notice. Returns how many sessions ended.
async fn replace_password(
    tx: &Tx,
    (actor, person): (EventActor, &Person),
    hash: &str,
    keep: Option<Uuid>,
    reason: &'static str,
    now: DateTime<Utc>,
) -> DomainResult<u64> {
    tx.set_password(person.id, hash, now).await?;
    let revoked = tx
        .revoke_person_sessions(person.id, keep, reason, now)
        .await?;
    tx.clear_login_failures(person.id).await?;
    queue(tx, None, &person.email, &Email::PasswordChanged, now).await?;
    // The event says that the password changed, never what it is.
    let action = if keep.is_some() {
        action::PASSWORD_CHANGED
    } else {
        action::PASSWORD_RESET
    };
    let draft = Draft::new(action, actor)
        .target(Target::new("user", person.id, &person.email))
        .changes([Change::new("password", None::<&str>, None::<&str>)])
        .meta("sessions_ended", revoked);
    let accounts = tx.active_account_ids(person.id).await?;
    tx.append_audit(&audit::events_for(&accounts, now, draft))
        .await?;
    Ok(revoked)
}

impl Auth {
    /// Emails a reset link when the email belongs to a person. The work runs in the background
    /// so the answer takes the same time for known and unknown emails.
    pub fn request_password_reset(&self, email_key: String) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.send_reset(&email_key).await {
                tracing::warn!(error = ?error, "password reset email not queued");
            }
        });
    }

    /// Stores a new reset link and queues its email, in one unit of work; nothing within a
    /// minute of the previous link.
    async fn send_reset(&self, email_key: &str) -> DomainResult<()> {
        let Some(person) = self.store.person_by_email(email_key).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        let last = self.store.last_reset_at(person.id).await?;
        if !may_send_reset(last, now) {
            return Ok(());
        }
        let token = Secret::new("rst_");
        let email = Email::PasswordReset {
            link: format!("{}/password/reset?token={}", self.public_url, token.token),
            expires_in_minutes: RESET_TTL.num_minutes(),
        };
        let tx = self.store.begin().await?;
        tx.insert_reset(&new_reset(token.hash, person.id, now))
            .await?;
        queue(&tx, None, &person.email, &email, now).await?;
        tx.commit().await
    }

    /// Sets a new password with a reset link. Ends every session; does not log in. The link is
    /// checked again in the unit of work that uses it, locked, so it is used once.
    pub async fn reset_password(&self, token: &str, new_password: Password) -> DomainResult<()> {
        let token_hash = hash_of(token);
        let now = self.clock.now();
        let reset = check_reset(self.store.find_reset(&token_hash).await?, now)?;
        let person = self
            .store
            .person(reset.user_id)
            .await?
            .ok_or_else(reset_invalid)?;
        password::check_policy(&new_password, &person.email, &person.display_name)
            .map_err(|e| DomainError::invalid("new_password", e))?;
        let hash = self.hasher.hash(&new_password).await?;
        let tx = self.store.begin().await?;
        check_reset(tx.lock_reset(&token_hash).await?, now)?;
        tx.spend_reset(&token_hash, now).await?;
        let anonymous = EventActor::anonymous();
        replace_password(
            &tx,
            (anonymous, &person),
            &hash,
            None,
            "password_reset",
            now,
        )
        .await?;
        tx.commit().await
    }

    /// Changes the caller's password; the other sessions end. Returns how many.
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: Password,
        new_password: Password,
    ) -> DomainResult<u64> {
        let caller = person_of(actor)?;
        let person = self
            .store
            .person(caller.user_id)
            .await?
            .ok_or_else(invalid_credentials)?;
        if !person.has_password() {
            return Err(DomainError::FailedPrecondition {
                reason: reason::NO_PASSWORD,
                message: "you have no password yet; set one with a password reset".to_owned(),
            });
        }
        if !self
            .checked_password(&EventActor::of(actor), &person, &current)
            .await?
        {
            return Err(DomainError::invalid_with(
                reason::CURRENT_PASSWORD_INCORRECT,
                "current_password",
                "is not your current password",
            ));
        }
        if *current == *new_password {
            return Err(DomainError::invalid(
                "new_password",
                "must differ from the current password",
            ));
        }
        password::check_policy(&new_password, &person.email, &person.display_name)
            .map_err(|e| DomainError::invalid("new_password", e))?;
        let hash = self.hasher.hash(&new_password).await?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let revoked = replace_password(
            &tx,
            (EventActor::of(actor), &person),
            &hash,
            Some(caller.session_id),
            "password_changed",
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }
}
