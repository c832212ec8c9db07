//! Password login, step 2: the emailed code. A challenge is locked for each check or resend, the
//! domain decides, and its new state is stored (with the new code's email) in that unit of work.

use uuid::Uuid;

use super::{Auth, Secret, hash_of, new_code};
use crate::app::audit;
use crate::app::queue;
use crate::domain::audit::{Draft, EventActor, Target, action};
use crate::domain::auth::challenge::{
    CodeCheck, challenge_expired, code_invalid, new_challenge, resend, verify_code,
};
use crate::domain::auth::login::next_step;
use crate::domain::auth::{
    CODE_TTL, Challenge, Client, FirstFactor, LoginOutcome, invalid_credentials,
};
use crate::domain::email::Email;
use crate::domain::error::DomainResult;
use crate::domain::users::Person;

fn code_email(code: String) -> Email {
    Email::MfaCode {
        code,
        expires_in_minutes: CODE_TTL.num_minutes(),
    }
}

impl Auth {
    /// Starts a challenge for `person` (logging in to `account_id` when one is chosen) and
    /// queues its code, in one unit of work.
    pub(super) async fn start_challenge(
        &self,
        person: &Person,
        account_id: Option<Uuid>,
    ) -> DomainResult<Challenge> {
        let id = Secret::new("mfa_");
        let code = new_code();
        let now = self.clock.now();
        let code_hash = self.code_hash(&id.hash, &code);
        let challenge = new_challenge(id.hash, person.id, account_id, code_hash, now);
        let tx = self.store.begin().await?;
        tx.insert_challenge(&challenge).await?;
        queue(&tx, account_id, &person.email, &code_email(code), now).await?;
        tx.commit().await?;
        Ok(Challenge::view(id.token, &challenge, &person.email))
    }

    /// Password login, step 2: a right code leads to the step after both factors (a session or
    /// an account choice); a wrong one costs an attempt.
    pub async fn verify_challenge(
        &self,
        challenge_id: &str,
        code: &str,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        let id_hash = hash_of(challenge_id);
        let now = self.clock.now();
        let presented = self.code_hash(&id_hash, code);
        let tx = self.store.begin().await?;
        let challenge = tx
            .lock_challenge(&id_hash)
            .await?
            .ok_or_else(challenge_expired)?;
        // The code's events go to the account being logged in to, or every account of the
        // person when none is chosen yet.
        let accounts = match challenge.account_id {
            Some(account_id) => vec![account_id],
            None => tx.active_account_ids(challenge.user_id).await?,
        };
        let email = tx
            .person(challenge.user_id)
            .await?
            .map(|person| person.email)
            .unwrap_or_default();
        let event = |action: &'static str| {
            let draft = Draft::new(action, EventActor::anonymous())
                .target(Target::new("user", challenge.user_id, &email))
                .meta("method", "email_code");
            audit::events_for(&accounts, now, draft)
        };
        let passed = match verify_code(&challenge, &presented, now)? {
            CodeCheck::Right(passed) => {
                tx.update_challenge(&passed).await?;
                tx.append_audit(&event(action::MFA_CODE_PASSED)).await?;
                tx.commit().await?;
                passed
            }
            CodeCheck::Wrong(failed) => {
                tx.update_challenge(&failed).await?;
                let mut events = event(action::MFA_CODE_FAILED);
                for e in &mut events {
                    e.metadata
                        .insert("attempts_left".to_owned(), failed.attempts_left.to_string());
                }
                tx.append_audit(&events).await?;
                tx.commit().await?;
                crate::telemetry::record_login("email_code", "failure");
                return Err(code_invalid(failed.attempts_left));
            }
        };
        let person = self
            .store
            .person(passed.user_id)
            .await?
            .ok_or_else(invalid_credentials)?;
        let accounts = self.store.active_memberships(person.id).await?;
        let factor = FirstFactor::PasswordAndCode;
        let step = next_step(factor, &person, &accounts, passed.account_id)
            .ok_or_else(invalid_credentials)?;
        crate::telemetry::record_login("email_code", crate::telemetry::login_step(&step));
        self.proceed(factor, &person, &accounts, step, client).await
    }

    /// Emails a new code for a pending challenge; the old code stops working.
    pub async fn resend_code(&self, challenge_id: &str) -> DomainResult<Challenge> {
        let id_hash = hash_of(challenge_id);
        let now = self.clock.now();
        let code = new_code();
        let tx = self.store.begin().await?;
        let pending = tx
            .lock_challenge(&id_hash)
            .await?
            .ok_or_else(challenge_expired)?;
        let person = tx
            .person(pending.user_id)
            .await?
            .ok_or_else(challenge_expired)?;
        let resent = resend(&pending, self.code_hash(&id_hash, &code), now)?;
        tx.update_challenge(&resent).await?;
        queue(
            &tx,
            resent.account_id,
            &person.email,
            &code_email(code),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Challenge::view(
            challenge_id.to_owned(),
            &resent,
            &person.email,
        ))
    }
}
