//! SAML single sign-on: StartSsoLogin remembers an AuthnRequest and sends the browser to the
//! account's identity provider; LoginWithSso checks the response it posts back, provisions or
//! refreshes the member, and opens a session. The identity provider does MFA, so the account's
//! enforced email code does not apply.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Auth, Secret, accept_invitation, hash_of, person_target};
use crate::app::audit;
use crate::app::users::{change_role, keep_an_administrator};
use crate::auth::{saml, secret_token};
use crate::domain::access_changes::AccessChange;
use crate::domain::audit::{Change, Draft, EventActor, Target, action};
use crate::domain::auth::{ActiveMembership, Client, FirstFactor, IssuedSession};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::roles::Role;
use crate::domain::sso::{
    self as rules, Accepted, Expected, PendingRequest, REQUEST_TTL, Refusal, SsoSettings,
};
use crate::domain::users::{self as user_rules, MembershipStatus, Person};
use crate::store::Tx;
use crate::store::accounts::Counter;

/// A login sent to the identity provider.
#[derive(Debug, Clone)]
pub struct StartedSso {
    pub redirect_url: String,
    pub relay_state: String,
    pub expires_at: DateTime<Utc>,
}

/// A finished SSO login.
#[derive(Debug)]
pub struct SsoLogin {
    pub session: IssuedSession,
    /// The membership was created by this login.
    pub provisioned: bool,
}

fn sso_not_enabled() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::SSO_NOT_ENABLED,
        message: "single sign-on is not enabled for this account".to_owned(),
    }
}

fn membership_disabled() -> DomainError {
    DomainError::unauthenticated(
        reason::INVALID_CREDENTIALS,
        "this user is disabled in the account",
    )
}

impl Auth {
    /// The account's settings when SSO is on; an unknown account looks the same as one without
    /// SSO.
    async fn enabled_sso(&self, account_id: Uuid) -> DomainResult<SsoSettings> {
        match self.store.sso_settings(account_id).await? {
            Some(settings) if settings.enabled => Ok(settings),
            _ => Err(sso_not_enabled()),
        }
    }

    /// Starts an SP-initiated login: the AuthnRequest's id and the relay state's hash are
    /// remembered for ten minutes.
    pub async fn start_sso_login(&self, account_id: Uuid) -> DomainResult<StartedSso> {
        let settings = self.enabled_sso(account_id).await?;
        let now = self.clock.now();
        // An XML ID starts with a letter or `_`; the rest of a token is base64url.
        let request_id = secret_token::generate("_");
        let relay = Secret::new("rs_");
        let expires_at = now + REQUEST_TTL;
        let redirect_url = saml::authn_request_url(
            &settings.idp_sso_url,
            &request_id,
            &rules::sp_entity_id(&self.public_url, account_id),
            &rules::acs_url(&self.public_url, account_id),
            now,
            &relay.token,
        )
        .map_err(|e| DomainError::internal(anyhow::anyhow!("AuthnRequest URL: {e}")))?;
        self.store
            .remember_sso_request(&PendingRequest {
                id: request_id,
                account_id,
                relay_state_hash: relay.hash,
                expires_at,
            })
            .await?;
        Ok(StartedSso {
            redirect_url,
            relay_state: relay.token,
            expires_at,
        })
    }

    /// Counts a failed SSO login and records it in the account's log with its `reason`.
    async fn sso_failed(
        &self,
        account_id: Uuid,
        reason: &str,
        email: Option<&str>,
    ) -> DomainResult<()> {
        crate::telemetry::record_login("saml", "failure");
        let mut draft = Draft::new(action::LOGIN_FAILED, EventActor::anonymous())
            .meta("method", "saml")
            .meta("reason", reason);
        if let Some(email) = email {
            draft = draft.target(Target::new("email", "", email));
        }
        let events = audit::events_for(&[account_id], self.clock.now(), draft);
        self.store.append_audit(&events).await
    }

    /// Records a refused response and returns the caller's error.
    async fn sso_refused(
        &self,
        account_id: Uuid,
        refusal: Refusal,
        email: Option<&str>,
    ) -> DomainError {
        match self.sso_failed(account_id, refusal.as_str(), email).await {
            Ok(()) => refusal.into(),
            Err(err) => err,
        }
    }

    /// Checks a posted SAMLResponse, provisions or refreshes the member, and opens a session.
    pub async fn login_with_sso(
        &self,
        account_id: Uuid,
        saml_response: &str,
        relay_state: &str,
        client: Client,
    ) -> DomainResult<SsoLogin> {
        let settings = self.enabled_sso(account_id).await?;
        let xml = saml::decode_response(saml_response)
            .map_err(|e| DomainError::invalid("saml_response", e))?;
        let certificates = settings.idp_certificates.clone();
        // libxml2 and xmlsec are blocking C; a large response takes milliseconds. Its span is a
        // child of the call's.
        let caller = tracing::Span::current();
        let verified = tokio::task::spawn_blocking(move || {
            let span = tracing::info_span!(
                parent: &caller,
                "identity.saml.verify",
                identity.saml.refusal = tracing::field::Empty,
            );
            let result = span.in_scope(|| saml::verify(&xml, &certificates));
            if let Err(refusal) = &result {
                span.record("identity.saml.refusal", refusal.as_str());
            }
            result
        })
        .await
        .map_err(DomainError::internal)?;
        let facts = match verified {
            Ok(facts) => facts,
            Err(refusal) => return Err(self.sso_refused(account_id, refusal, None).await),
        };
        let now = self.clock.now();
        let sp_entity_id = rules::sp_entity_id(&self.public_url, account_id);
        let acs_url = rules::acs_url(&self.public_url, account_id);
        let expected = Expected {
            idp_entity_id: &settings.idp_entity_id,
            sp_entity_id: &sp_entity_id,
            acs_url: &acs_url,
            now,
        };
        let accepted = match rules::check(&facts, &expected) {
            Ok(accepted) => accepted,
            Err(refusal) => {
                return Err(self
                    .sso_refused(account_id, refusal, facts.name_id.as_deref())
                    .await);
            }
        };
        let email = accepted.email.address().to_owned();
        let request = match &accepted.in_response_to {
            Some(id) => self.store.take_sso_request(id).await?,
            None => None,
        };
        if let Err(refusal) = rules::check_request(
            &settings,
            &accepted,
            request.as_ref(),
            &hash_of(relay_state),
            now,
        ) {
            return Err(self.sso_refused(account_id, refusal, Some(&email)).await);
        }
        let (person, choice, provisioned) = match self.provision(&settings, &accepted, now).await {
            Ok(done) => done,
            Err(Provision::Refused(refusal)) => {
                return Err(self.sso_refused(account_id, refusal, Some(&email)).await);
            }
            Err(Provision::Failed(err)) => {
                if matches!(
                    &err,
                    DomainError::Unauthenticated { reason: r, .. } if *r == reason::INVALID_CREDENTIALS
                ) {
                    self.sso_failed(account_id, "membership_disabled", Some(&email))
                        .await?;
                }
                return Err(err);
            }
        };
        let factor = FirstFactor::Saml;
        let session = self
            .start_session(&person, &choice, factor.amr(), factor.mfa_passed(), client)
            .await?;
        crate::telemetry::record_login("saml", "success");
        Ok(SsoLogin {
            session,
            provisioned,
        })
    }

    /// In one unit of work under the account lock: spends the assertion id, then creates the
    /// member (ACTIVE, under the user cap) or activates an invited one, and refreshes name and
    /// role from the assertion.
    async fn provision(
        &self,
        settings: &SsoSettings,
        accepted: &Accepted,
        now: DateTime<Utc>,
    ) -> Result<(Person, ActiveMembership, bool), Provision> {
        let account_id = settings.account_id;
        let email = &accepted.email;
        let display_name = settings.display_name_for(&accepted.attributes, email);
        // Roles come from the identity provider only when a role attribute is configured;
        // otherwise a new member gets the default role and a member keeps theirs.
        let asserted_role = if settings.role_attribute.is_empty() {
            None
        } else {
            let values: Vec<String> =
                rules::attribute_values(&accepted.attributes, &settings.role_attribute)
                    .into_iter()
                    .cloned()
                    .collect();
            settings.role_for(&values)
        };
        let tx = self.store.begin().await?;
        let account = crate::app::users::lock_account(&tx, account_id).await?;
        if !tx
            .remember_assertion(account_id, &accepted.assertion_id, accepted.remember_until)
            .await?
        {
            return Err(Provision::Refused(Refusal::Replay));
        }
        let person = tx.find_or_create_person(email, &display_name, now).await?;
        let actor = EventActor::system();
        let mut drafts = Vec::new();
        let provisioned = match tx.member(account_id, person.id).await? {
            None => {
                let role = asserted_role
                    .or(settings.default_role)
                    .unwrap_or(Role::MediaLibraryViewOnly);
                let mut membership = user_rules::admit(&account, &person, role, None, now)?;
                membership.status = MembershipStatus::Active;
                membership.accepted_at = Some(now);
                if !tx.insert_membership(&membership).await? {
                    return Err(DomainError::Aborted {
                        reason: reason::ETAG_MISMATCH,
                        message: "the user was added meanwhile: log in again".to_owned(),
                    }
                    .into());
                }
                tx.add_to_counter(account_id, Counter::Users, 1).await?;
                tx.record_access_change(
                    account_id,
                    &[AccessChange::member(
                        person.id,
                        role,
                        MembershipStatus::Active,
                    )],
                    now,
                )
                .await?;
                drafts.push(
                    Draft::new(action::USER_PROVISIONED, actor.clone())
                        .target(person_target(&person))
                        .changes([
                            Change::new("role", None::<&str>, Some(role.as_str())),
                            Change::new("status", None::<&str>, Some("active")),
                        ])
                        .meta("method", "saml"),
                );
                true
            }
            Some(member) => {
                if member.status() == MembershipStatus::Disabled {
                    return Err(membership_disabled().into());
                }
                if member.status() == MembershipStatus::Invited {
                    let role = member.role();
                    accept_invitation(&tx, account_id, &person, role, actor.clone(), "saml", now)
                        .await?;
                }
                if let Some(role) = asserted_role
                    && role != member.role()
                    && may_demote(&tx, &member).await?
                {
                    let active = MembershipStatus::Active;
                    change_role(&tx, account_id, person.id, role, active, now).await?;
                    drafts.push(
                        Draft::new(action::USER_ROLE_CHANGED, actor.clone())
                            .target(person_target(&person))
                            .changes([Change::new(
                                "role",
                                Some(member.role().as_str()),
                                Some(role.as_str()),
                            )])
                            .meta("method", "saml"),
                    );
                }
                if display_name != person.display_name
                    && tx
                        .rename_person(person.id, &display_name, person.version, now)
                        .await?
                {
                    drafts.push(
                        Draft::new(action::USER_UPDATED, actor.clone())
                            .target(person_target(&person))
                            .changes([Change::new(
                                "display_name",
                                Some(&person.display_name),
                                Some(&display_name),
                            )])
                            .meta("method", "saml"),
                    );
                }
                false
            }
        };
        audit::append(&tx, account_id, now, drafts).await?;
        let choice = tx
            .active_membership(person.id, account_id)
            .await?
            .ok_or_else(membership_disabled)?;
        let person = tx.person(person.id).await?.unwrap_or(person);
        tx.commit().await?;
        Ok((person, choice, provisioned))
    }
}

/// Whether `member`'s role may change: an SSO login never demotes the account's last
/// administrator, where an administrator's change would be refused.
async fn may_demote(tx: &Tx, member: &user_rules::Member) -> DomainResult<bool> {
    match keep_an_administrator(tx, member).await {
        Ok(()) => Ok(true),
        Err(DomainError::FailedPrecondition { reason: r, .. })
            if r == reason::LAST_ADMINISTRATOR =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Why provisioning stopped: a refusal of the response (recorded as such), or an error.
enum Provision {
    Refused(Refusal),
    Failed(DomainError),
}

impl From<DomainError> for Provision {
    fn from(err: DomainError) -> Self {
        Provision::Failed(err)
    }
}
