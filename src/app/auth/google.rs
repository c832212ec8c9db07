//! Login with Google: the verified email of an invited or active member. The identity
//! provider's own MFA stands in for the email code; an invited membership is accepted by the
//! login.

use uuid::Uuid;

use super::{Auth, accept_invitation};
use crate::app::audit;
use crate::auth::google::GoogleError;
use crate::domain::audit::{Draft, EventActor, Target, action};
use crate::domain::auth::login::next_step;
use crate::domain::auth::{
    ActiveMembership, Client, FirstFactor, GoogleCredential, LoginOutcome, NextStep,
};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::{MembershipStatus, Person};

fn no_matching_user() -> DomainError {
    crate::telemetry::record_login("google", "failure");
    DomainError::unauthenticated(
        reason::NO_MATCHING_USER,
        "no invited or active user has this Google account's email",
    )
}

impl Auth {
    /// A refused Google login is recorded in the service's own log: no account is known, and
    /// none learns of an address that is not its member's.
    async fn google_login_failed(&self, email: &str, reason: &str) -> DomainResult<()> {
        let draft = Draft::new(action::LOGIN_FAILED, EventActor::anonymous())
            .target(Target::new("email", "", email))
            .meta("method", "google")
            .meta("reason", reason);
        self.store
            .append_audit(&audit::events_for(&[], self.clock.now(), draft))
            .await
    }

    /// Login with Google: a session when one account is offered (or requested), otherwise an
    /// account choice.
    pub async fn login_with_google(
        &self,
        credential: GoogleCredential,
        account_id: Option<Uuid>,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        let google = self
            .google
            .as_ref()
            .ok_or_else(|| DomainError::FailedPrecondition {
                reason: reason::GOOGLE_LOGIN_NOT_CONFIGURED,
                message: "Google login is not configured on this service".to_owned(),
            })?;
        let (id_token, nonce) = match credential {
            GoogleCredential::Code {
                code,
                code_verifier,
                redirect_uri,
                nonce,
            } => (
                google
                    .exchange_code(&code, &code_verifier, &redirect_uri)
                    .await?,
                nonce,
            ),
            GoogleCredential::IdToken { id_token, nonce } => (id_token, nonce),
        };
        let identity = match google
            .verify_id_token(&id_token, &nonce, self.clock.now())
            .await
        {
            Ok(identity) => identity,
            Err(err @ (GoogleError::CredentialInvalid(_) | GoogleError::EmailNotVerified)) => {
                crate::telemetry::record_login("google", "failure");
                self.google_login_failed("", "credential_refused").await?;
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        };
        let Some(person) = self
            .store
            .person_by_email(&identity.email.to_lowercase())
            .await?
        else {
            self.google_login_failed(&identity.email, "unknown_email")
                .await?;
            return Err(no_matching_user());
        };
        let candidates = self
            .store
            .memberships_in(person.id, FirstFactor::Google.admits())
            .await?;
        let factor = FirstFactor::Google;
        match next_step(factor, &person, &candidates, account_id).ok_or_else(no_matching_user)? {
            NextStep::Session(choice) => {
                let choice = self.accept_if_invited(&person, choice.clone()).await?;
                let session = self
                    .start_session(&person, &choice, factor.amr(), factor.mfa_passed(), client)
                    .await?;
                crate::telemetry::record_login("google", "success");
                Ok(LoginOutcome::Tokens(session))
            }
            step => {
                crate::telemetry::record_login("google", crate::telemetry::login_step(&step));
                self.proceed(factor, &person, &candidates, step, client)
                    .await
            }
        }
    }

    /// An invited membership chosen at a Google login becomes ACTIVE and its link dies: the
    /// provider proved the address, as the link would have.
    pub(super) async fn accept_if_invited(
        &self,
        person: &Person,
        mut choice: ActiveMembership,
    ) -> DomainResult<ActiveMembership> {
        if choice.membership.status != MembershipStatus::Invited {
            return Ok(choice);
        }
        let now = self.clock.now();
        let account_id = choice.account.id;
        let tx = self.store.begin().await?;
        tx.lock_account(account_id).await?;
        let actor = EventActor::person(person.id, &person.email);
        let role = choice.membership.role;
        accept_invitation(&tx, account_id, person, role, actor, "google", now).await?;
        tx.commit().await?;
        choice.membership.status = MembershipStatus::Active;
        Ok(choice)
    }
}
