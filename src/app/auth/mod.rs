//! AuthService's use cases, one module per flow: `login` (passwords), `google`, `challenge`
//! (email codes), `selection` (the account choice), `session` (refresh, logout, revocation,
//! listing), `invitation`, `password` (reset and change) and `mfa` (personal MFA).
//!
//! What the flows share is here: checking a password against the throttle, the step after a
//! first factor, starting and signing a session, and the secrets the flows make (tokens, codes),
//! which the store only ever sees as hashes.

mod challenge;
mod google;
mod invitation;
mod login;
mod mfa;
mod password;
mod selection;
mod session;
mod sso;

pub use sso::{SsoLogin, StartedSso};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use uuid::Uuid;

use crate::auth::google::GoogleVerifier;
use crate::auth::keys::{KeySet, TokenSubject};
use crate::auth::password::{Password, PasswordHasher, Verified};
use crate::auth::secret_token;
use crate::clock::SharedClock;
use crate::domain::access_changes::AccessChange;
use crate::domain::actor::{Actor, PersonCaller};
use crate::domain::audit::{Change, Draft, EventActor, Target, action};

use super::audit;
use crate::domain::auth::login::throttled;
use crate::domain::auth::{
    ActiveMembership, Attempt, BUSY_WAIT, Client, FirstFactor, IssuedSession, LoginOutcome,
    NewSession, NextStep, Session,
};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::page::PageTokens;
use crate::domain::roles::Role;
use crate::domain::users::{MembershipStatus, Person};
use crate::store::{Store, Tx};

/// A person as the target of an authentication event.
fn person_target(person: &Person) -> Target {
    Target::new("user", person.id, &person.email)
}

fn person_of(actor: &Actor) -> DomainResult<&PersonCaller> {
    actor.require_person("this acts for a person")
}

/// Makes an invited membership ACTIVE in `tx` because an identity provider proved the person's
/// address, as the invitation link would have: the link dies, the access revision moves, and the
/// acceptance is recorded by `actor` with its `method`. False when it was not invited.
async fn accept_invitation(
    tx: &Tx,
    account_id: Uuid,
    person: &Person,
    role: Role,
    actor: EventActor,
    method: &str,
    now: DateTime<Utc>,
) -> DomainResult<bool> {
    if !tx.activate_membership(account_id, person.id, now).await? {
        return Ok(false);
    }
    let draft = Draft::new(action::USER_INVITATION_ACCEPTED, actor)
        .target(person_target(person))
        .changes([Change::new("status", Some("invited"), Some("active"))])
        .meta("method", method);
    audit::append(tx, account_id, now, [draft]).await?;
    tx.delete_invitation(account_id, person.id).await?;
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
    Ok(true)
}

/// A new secret token: the token goes to the person, its hash to the store.
struct Secret {
    token: String,
    hash: String,
}

impl Secret {
    /// 256 random bits after `prefix`, which tells an operator what kind of token leaked.
    fn new(prefix: &str) -> Self {
        let token = secret_token::generate(prefix);
        Self {
            hash: secret_token::digest_hex(&token),
            token,
        }
    }
}

/// The hash a presented token is looked up under.
fn hash_of(token: &str) -> String {
    secret_token::digest_hex(token)
}

/// Six digits from the OS CSPRNG.
fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

#[derive(Clone)]
pub struct Auth {
    google: Option<Arc<GoogleVerifier>>,
    store: Store,
    clock: SharedClock,
    keys: Arc<KeySet>,
    hasher: PasswordHasher,
    code_key: Arc<Vec<u8>>,
    pages: PageTokens,
    session_ttl: Duration,
    public_url: String,
}

impl Auth {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        google: Option<Arc<GoogleVerifier>>,
        store: Store,
        clock: SharedClock,
        keys: Arc<KeySet>,
        hasher: PasswordHasher,
        code_key: Vec<u8>,
        pages: PageTokens,
        session_ttl: std::time::Duration,
        public_url: String,
    ) -> Self {
        Self {
            google,
            store,
            clock,
            keys,
            hasher,
            code_key: Arc::new(code_key),
            pages,
            session_ttl: Duration::from_std(session_ttl).unwrap_or(Duration::days(30)),
            public_url,
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The stored form of an email code: an HMAC under the service's key, bound to the
    /// challenge, so a leaked table reveals no code and a code fits no other challenge.
    fn code_hash(&self, id_hash: &str, code: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.code_key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm is unreachable in practice.
            Err(_) => return String::new(),
        };
        mac.update(id_hash.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Checks a password with the per-person throttle: the attempt is admitted before the hash
    /// is computed, so parallel guesses cannot exceed the limit; a mismatch is recorded as a
    /// failure and a match forgets the failures. (`login` asks for its admission in its first
    /// statement and forgets the failures in the session's own statement instead.)
    async fn checked_password(
        &self,
        actor: &EventActor,
        person: &Person,
        password: &Password,
    ) -> DomainResult<bool> {
        let attempt = self
            .store
            .reserve_login_attempt(person.id, self.clock.now())
            .await?;
        self.admitted(actor, person, attempt).await?;
        let matches = self.password_matches(actor, person, password).await?;
        if matches {
            self.store.clear_login_failures(person.id).await?;
        }
        Ok(matches)
    }

    /// Waits for an attempt's admission: a busy throttle (as many of the person's attempts as
    /// may still fail are being checked) is asked again after a few milliseconds, up to
    /// `BUSY_WAIT`, so a right password waits for the checks under way instead of being refused.
    /// A pause, or a wait that lasts too long, is `LOGIN_THROTTLED`.
    async fn admitted(
        &self,
        actor: &EventActor,
        person: &Person,
        mut attempt: Attempt,
    ) -> DomainResult<()> {
        let person_id = person.id;
        let waited = std::time::Instant::now();
        let limit = BUSY_WAIT.to_std().unwrap_or_default();
        loop {
            let now = self.clock.now();
            match attempt.wait(now) {
                None => return Ok(()),
                Some(wait) if attempt != Attempt::Busy || waited.elapsed() >= limit => {
                    let draft = Draft::new(action::LOGIN_THROTTLED, actor.clone())
                        .target(person_target(person))
                        .meta("method", "password")
                        .meta("retry_after_seconds", wait.num_seconds().max(1));
                    let tx = self.store.begin().await?;
                    let accounts = tx.active_account_ids(person_id).await?;
                    tx.append_audit(&audit::events_for(&accounts, now, draft))
                        .await?;
                    tx.commit().await?;
                    crate::telemetry::record_throttle();
                    return Err(throttled(wait));
                }
                Some(_) => {}
            }
            let pause = rand::thread_rng().gen_range(5..25);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            attempt = self
                .store
                .reserve_login_attempt(person_id, self.clock.now())
                .await?;
        }
    }

    /// Checks the password of an admitted attempt, recording a mismatch as a failure; a match
    /// with old parameters stores a new hash.
    async fn password_matches(
        &self,
        actor: &EventActor,
        person: &Person,
        password: &Password,
    ) -> DomainResult<bool> {
        match self
            .hasher
            .verify(password, person.password_hash.as_ref().map(|h| h.as_str()))
            .await?
        {
            Verified::Mismatch => {
                let now = self.clock.now();
                let draft = Draft::new(action::LOGIN_FAILED, actor.clone())
                    .target(person_target(person))
                    .meta("method", "password")
                    .meta("reason", "wrong_password");
                let tx = self.store.begin().await?;
                tx.record_login_failure(person.id, now).await?;
                let accounts = tx.active_account_ids(person.id).await?;
                tx.append_audit(&audit::events_for(&accounts, now, draft))
                    .await?;
                tx.commit().await?;
                Ok(false)
            }
            Verified::Match { rehash } => {
                if let Some(hash) = rehash {
                    self.store
                        .set_password_hash(person.id, &hash, self.clock.now())
                        .await?;
                }
                Ok(true)
            }
        }
    }

    /// Takes the step the domain chose after `factor`: emails a code, offers the choice among
    /// `accounts`, or starts a session.
    async fn proceed(
        &self,
        factor: FirstFactor,
        person: &Person,
        accounts: &[ActiveMembership],
        step: NextStep<'_>,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        Ok(match step {
            NextStep::Code { account_id } => {
                LoginOutcome::Challenge(self.start_challenge(person, account_id).await?)
            }
            NextStep::Session(choice) => LoginOutcome::Tokens(
                self.start_session(person, choice, factor.amr(), factor.mfa_passed(), client)
                    .await?,
            ),
            NextStep::Select => {
                LoginOutcome::Selection(self.offer_selection(person, factor, accounts).await?)
            }
        })
    }

    /// Issues a session (access and refresh tokens) for one account: one statement.
    async fn start_session(
        &self,
        person: &Person,
        choice: &ActiveMembership,
        amr: Vec<String>,
        mfa_passed: bool,
        client: Client,
    ) -> DomainResult<IssuedSession> {
        let now = self.clock.now();
        let session = Session::open(
            NewSession {
                user_id: person.id,
                account_id: choice.account.id,
                amr,
                mfa_passed,
                user_agent: client.user_agent,
                ip_address: client.ip_address,
            },
            now,
            self.session_ttl,
        );
        let refresh = Secret::new("rt_");
        let draft = Draft::new(
            action::LOGIN_SUCCEEDED,
            EventActor::person(person.id, &person.email),
        )
        .target(person_target(person))
        .meta("method", FirstFactor::of_amr(&session.amr).name())
        .meta("amr", session.amr.join(","))
        .meta("session_id", session.id);
        let events = [audit::event(draft, choice.account.id, now)];
        self.store.log_in(&session, &refresh.hash, &events).await?;
        self.sign(person, session, refresh.token, choice.membership.role, now)
    }

    /// The session's access token, with `refresh_token`.
    fn sign(
        &self,
        person: &Person,
        session: Session,
        refresh_token: String,
        role: Role,
        now: DateTime<Utc>,
    ) -> DomainResult<IssuedSession> {
        let (access_token, access_expires_at) = self
            .keys
            .issue(
                &TokenSubject {
                    user_id: person.id,
                    account_id: session.account_id,
                    role,
                    session_id: session.id,
                    amr: session.amr.clone(),
                    email: person.email.clone(),
                },
                now,
            )
            .map_err(DomainError::internal)?;
        Ok(IssuedSession {
            access_token,
            access_expires_at,
            refresh_token,
            session,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn secrets_are_stored_as_their_hash() {
        let secret = Secret::new("rt_");
        assert!(secret.token.starts_with("rt_"));
        assert_eq!(secret.hash, hash_of(&secret.token));
        assert_ne!(secret.hash, secret.token);
    }
}
