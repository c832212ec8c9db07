//! Password login, step 1: the person, their accounts and the attempt's admission in one statement,
//! the password, then the step the domain chooses (the email code, an account choice or a
//! session, which is one more statement).

use uuid::Uuid;

use super::Auth;
use crate::app::audit;
use crate::auth::password::Password;
use crate::domain::audit::{Draft, EventActor, Target, action};
use crate::domain::auth::login::next_step;
use crate::domain::auth::{Client, FirstFactor, LoginOutcome, invalid_credentials};
use crate::domain::error::DomainResult;

impl Auth {
    /// Password login, step 1. `email_key` is `None` for an address no person can have: it is
    /// answered as an unknown one, without asking the database.
    pub async fn login(
        &self,
        email_key: Option<&str>,
        password: Password,
        account_id: Option<Uuid>,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        let now = self.clock.now();
        let start = match email_key {
            Some(email_key) => self.store.start_password_login(email_key, now).await?,
            None => None,
        };
        let Some(start) = start else {
            // Unknown email, or a person active nowhere: the same work as a wrong password,
            // the same answer. The attempt is recorded in the service's own log, which no
            // account sees (docs/decisions.md).
            self.hasher.verify(&password, None).await?;
            let draft = Draft::new(action::LOGIN_FAILED, EventActor::anonymous())
                .target(Target::new("email", "", email_key.unwrap_or_default()))
                .meta("method", "password")
                .meta("reason", "unknown_email");
            self.store
                .append_audit(&audit::events_for(&[], now, draft))
                .await?;
            crate::telemetry::record_login("password", "failure");
            return Err(invalid_credentials());
        };
        let (person, accounts) = (start.person, start.accounts);
        let anonymous = EventActor::anonymous();
        self.admitted(&anonymous, &person, start.attempt).await?;
        // A mismatch is recorded as a failure; a success forgets the failures (below).
        if !self
            .password_matches(&anonymous, &person, &password)
            .await?
        {
            crate::telemetry::record_login("password", "failure");
            return Err(invalid_credentials());
        }
        let factor = FirstFactor::Password;
        let step =
            next_step(factor, &person, &accounts, account_id).ok_or_else(invalid_credentials)?;
        let outcome = self
            .proceed(factor, &person, &accounts, step, client)
            .await?;
        crate::telemetry::record_login("password", crate::telemetry::login_outcome(&outcome));
        // A session forgets the failures in its own statement; the other steps do it here.
        if !matches!(outcome, LoginOutcome::Tokens(_)) {
            self.store.clear_login_failures(person.id).await?;
        }
        Ok(outcome)
    }
}
