//! AuthService's use cases: password logins with email codes, Google login, account selection,
//! sessions with rotating refresh tokens, invitations, password resets and changes, personal MFA.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::google::GoogleVerifier;
use crate::auth::keys::{KeySet, TokenSubject};
use crate::auth::password::{self, Password, PasswordHasher, Verified};
use crate::auth::secret_token;
use crate::clock::SharedClock;
use crate::domain::actor::{Actor, PersonCaller};
use crate::domain::auth::{
    ActiveMembership, CODE_ATTEMPTS, CODE_RESENDS, CODE_TTL, Challenge, Client, EmailChallenge,
    GoogleCredential, InvitationView, IssuedSession, LoginOutcome, NewSession, RESEND_INTERVAL,
    RESET_INTERVAL, RESET_TTL, RefreshRefusal, SELECTION_TTL, Selection, Session,
    invalid_credentials, session_revoked,
};
use crate::domain::auth::{
    challenge::challenge_expired, links::invitation_invalid, login::throttled,
};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::page::{After, ListQuery, Page, PageTokens};
use crate::domain::roles::Role;
use crate::domain::users::{Member, MembershipStatus, Person, user_not_found};
use crate::email::templates::Email;
use crate::store::Store;

fn person_of(actor: &Actor) -> DomainResult<&PersonCaller> {
    actor.require_person("this acts for a person")
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

    /// Checks a password with the per-person throttle: the attempt is counted before the hash
    /// is computed, so parallel guesses cannot exceed the limit, and a match forgets the
    /// failures. (`login` counts its attempt in its first statement and forgets the failures
    /// in the session's own statement instead.)
    async fn checked_password(&self, person: &Person, password: &Password) -> DomainResult<bool> {
        let now = self.clock.now();
        if let Some(wait) = self
            .store
            .reserve_login_attempt(person.id, now)
            .await?
            .wait(now)
        {
            return Err(throttled(wait));
        }
        let matches = self.password_matches(person, password).await?;
        if matches {
            self.store.clear_login_failures(person.id).await?;
        }
        Ok(matches)
    }

    /// Checks a password whose attempt is already counted; a match with old parameters stores
    /// a new hash.
    async fn password_matches(&self, person: &Person, password: &Password) -> DomainResult<bool> {
        match self
            .hasher
            .verify(password, person.password_hash.as_ref().map(|h| h.as_str()))
            .await?
        {
            Verified::Mismatch => Ok(false),
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

    /// Password login, step 1.
    pub async fn login(
        &self,
        email_key: &str,
        password: Password,
        account_id: Option<Uuid>,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        let now = self.clock.now();
        let Some(start) = self.store.start_password_login(email_key, now).await? else {
            // Unknown email, or a person active nowhere: the same work as a wrong password,
            // the same answer.
            self.hasher.verify(&password, None).await?;
            return Err(invalid_credentials());
        };
        if let Some(wait) = start.attempt.wait(now) {
            return Err(throttled(wait));
        }
        let (person, accounts) = (start.person, start.accounts);
        // The attempt is counted, and stays counted until the login succeeds (below).
        if !self.password_matches(&person, &password).await? {
            return Err(invalid_credentials());
        }
        let person_id = person.id;
        let outcome = self
            .after_authentication(
                person,
                accounts,
                account_id,
                vec!["pwd".to_owned()],
                false,
                true,
                client,
            )
            .await?;
        if !matches!(outcome, LoginOutcome::Tokens(_)) {
            self.store.clear_login_failures(person_id).await?;
        }
        Ok(outcome)
    }

    /// Login with Google: the verified email of an invited or active user. An invited
    /// membership is accepted by this login. The identity provider's own MFA stands in for the
    /// email code.
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
        let identity = google
            .verify_id_token(&id_token, &nonce, self.clock.now())
            .await?;
        let no_user = || {
            DomainError::unauthenticated(
                reason::NO_MATCHING_USER,
                "no invited or active user has this Google account's email",
            )
        };
        let person = self
            .store
            .person_by_email(&identity.email.to_lowercase())
            .await?
            .ok_or_else(no_user)?;
        let mut candidates = self
            .store
            .memberships_in(
                person.id,
                &[MembershipStatus::Active, MembershipStatus::Invited],
            )
            .await?;
        if let Some(id) = account_id {
            candidates.retain(|c| c.account.id == id);
        }
        if candidates.is_empty() {
            return Err(no_user());
        }
        if let [only] = candidates.as_slice() {
            let choice = self.accept_if_invited(&person, only.clone()).await?;
            let session = self
                .start_session(&person, &choice, vec!["google".to_owned()], true, client)
                .await?;
            return Ok(LoginOutcome::Tokens(session));
        }
        let token = secret_token::generate("sel_");
        let now = self.clock.now();
        let expires_at = now + SELECTION_TTL;
        self.store
            .create_selection(
                &secret_token::digest_hex(&token),
                person.id,
                &["google".to_owned()],
                true,
                expires_at,
                now,
            )
            .await?;
        Ok(LoginOutcome::Selection(Selection {
            token,
            expires_at,
            accounts: candidates,
        }))
    }

    /// An invited membership chosen at a Google login becomes ACTIVE (the invitation is accepted).
    async fn accept_if_invited(
        &self,
        person: &Person,
        choice: ActiveMembership,
    ) -> DomainResult<ActiveMembership> {
        if choice.membership.status != MembershipStatus::Invited {
            return Ok(choice);
        }
        self.store
            .activate_invited(choice.account.id, person.id, self.clock.now())
            .await?;
        let mut choice = choice;
        choice.membership.status = MembershipStatus::Active;
        Ok(choice)
    }

    /// What follows a successful first factor: the email code, an account choice, or a session.
    #[allow(clippy::too_many_arguments)]
    async fn after_authentication(
        &self,
        person: Person,
        accounts: Vec<ActiveMembership>,
        requested: Option<Uuid>,
        amr: Vec<String>,
        mfa_passed: bool,
        password_login: bool,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        if accounts.is_empty() {
            return Err(invalid_credentials());
        }
        let chosen = match requested {
            Some(id) => Some(
                accounts
                    .iter()
                    .find(|a| a.account.id == id)
                    .cloned()
                    .ok_or_else(invalid_credentials)?,
            ),
            None if accounts.len() == 1 => accounts.first().cloned(),
            None => None,
        };
        let needs_code = password_login
            && !mfa_passed
            && (person.mfa_enabled
                || accounts.len() > 1
                || chosen.as_ref().is_some_and(|c| c.account.enforce_mfa));
        if needs_code {
            return Ok(LoginOutcome::Challenge(
                self.start_challenge(&person, chosen.map(|c| c.account.id))
                    .await?,
            ));
        }
        match chosen {
            Some(choice) => Ok(LoginOutcome::Tokens(
                self.start_session(&person, &choice, amr, mfa_passed || !password_login, client)
                    .await?,
            )),
            None => {
                let token = secret_token::generate("sel_");
                let now = self.clock.now();
                let expires_at = now + SELECTION_TTL;
                self.store
                    .create_selection(
                        &secret_token::digest_hex(&token),
                        person.id,
                        &amr,
                        mfa_passed,
                        expires_at,
                        now,
                    )
                    .await?;
                Ok(LoginOutcome::Selection(Selection {
                    token,
                    expires_at,
                    accounts,
                }))
            }
        }
    }

    async fn start_challenge(
        &self,
        person: &Person,
        account_id: Option<Uuid>,
    ) -> DomainResult<Challenge> {
        let id = secret_token::generate("mfa_");
        let id_hash = secret_token::digest_hex(&id);
        let code = new_code();
        let now = self.clock.now();
        let email = Email::MfaCode {
            code: code.clone(),
            expires_in_minutes: CODE_TTL.num_minutes(),
        };
        let row = self
            .store
            .create_challenge(
                &id_hash,
                person.id,
                account_id,
                &self.code_hash(&id_hash, &code),
                CODE_TTL,
                CODE_ATTEMPTS,
                CODE_RESENDS,
                (&person.email, &email),
                now,
            )
            .await?;
        Ok(Challenge::view(id, &row, &person.email))
    }

    /// Issues a session (access and refresh tokens) for one account.
    pub async fn start_session(
        &self,
        person: &Person,
        choice: &ActiveMembership,
        amr: Vec<String>,
        mfa_passed: bool,
        client: Client,
    ) -> DomainResult<IssuedSession> {
        let now = self.clock.now();
        let role = choice.membership.role;
        let (session, refresh_token) = self
            .store
            .log_in(
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
            )
            .await?;
        self.sign(person, session, refresh_token, role, now)
    }

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

    /// Password login, step 2.
    pub async fn verify_challenge(
        &self,
        challenge_id: &str,
        code: &str,
        client: Client,
    ) -> DomainResult<LoginOutcome> {
        let id_hash = secret_token::digest_hex(challenge_id);
        let now = self.clock.now();
        let presented = self.code_hash(&id_hash, code);
        let outcome = self
            .store
            .update_challenge(
                &id_hash,
                |row| {
                    if row.consumed_at.is_some()
                        || row.attempts_left <= 0
                        || row.code_expires_at <= now
                    {
                        return Err(challenge_expired());
                    }
                    let right: bool = presented.as_bytes().ct_eq(row.code_hash.as_bytes()).into();
                    if right {
                        let change = EmailChallenge {
                            consumed_at: Some(now),
                            ..row.clone()
                        };
                        return Ok((Some(change), None, Ok((row.user_id, row.account_id))));
                    }
                    let left = row.attempts_left - 1;
                    let change = EmailChallenge {
                        attempts_left: left,
                        ..row.clone()
                    };
                    let error = DomainError::unauthenticated(
                        reason::MFA_CODE_INVALID,
                        "the code is not correct",
                    )
                    .with_metadata("attempts_remaining", left.to_string());
                    Ok((Some(change), None, Err(error)))
                },
                now,
            )
            .await?
            .ok_or_else(challenge_expired)?;
        let (user_id, account_id) = outcome?;
        let person = self
            .store
            .person(user_id)
            .await?
            .ok_or_else(invalid_credentials)?;
        let accounts = self.store.active_memberships(person.id).await?;
        self.after_authentication(
            person,
            accounts,
            account_id,
            vec!["pwd".to_owned(), "otp".to_owned()],
            true,
            true,
            client,
        )
        .await
    }

    /// Emails a new code for a pending challenge; the old code stops working.
    pub async fn resend_code(&self, challenge_id: &str) -> DomainResult<Challenge> {
        let id_hash = secret_token::digest_hex(challenge_id);
        let now = self.clock.now();
        let pending = self
            .store
            .find_challenge(&id_hash)
            .await?
            .ok_or_else(challenge_expired)?;
        let person = self
            .store
            .person(pending.user_id)
            .await?
            .ok_or_else(challenge_expired)?;
        let code = new_code();
        let code_hash = self.code_hash(&id_hash, &code);
        let email = Email::MfaCode {
            code,
            expires_in_minutes: CODE_TTL.num_minutes(),
        };
        let row = self
            .store
            .update_challenge(
                &id_hash,
                |row| {
                    if row.consumed_at.is_some() || row.attempts_left <= 0 {
                        return Err(challenge_expired());
                    }
                    if row.resends_left <= 0 {
                        return Err(DomainError::ResourceExhausted {
                            reason: reason::MFA_RESEND_LIMIT_REACHED,
                            message: "no more codes can be sent for this login; log in again"
                                .to_owned(),
                            retry_after: None,
                        });
                    }
                    let next = row.last_sent_at + RESEND_INTERVAL;
                    if now < next {
                        return Err(DomainError::ResourceExhausted {
                            reason: reason::MFA_RESEND_TOO_SOON,
                            message: "a code was sent moments ago; wait before asking for another"
                                .to_owned(),
                            retry_after: (next - now).to_std().ok(),
                        });
                    }
                    let updated = EmailChallenge {
                        code_hash: code_hash.clone(),
                        code_expires_at: now + CODE_TTL,
                        last_sent_at: now,
                        resends_left: row.resends_left - 1,
                        ..row.clone()
                    };
                    Ok((
                        Some(updated.clone()),
                        Some((person.email.clone(), email.clone())),
                        updated,
                    ))
                },
                now,
            )
            .await?
            .ok_or_else(challenge_expired)?;
        Ok(Challenge::view(
            challenge_id.to_owned(),
            &row,
            &person.email,
        ))
    }

    /// Finishes a login that offered several accounts.
    pub async fn select_account(
        &self,
        token: &str,
        account_id: Uuid,
        client: Client,
    ) -> DomainResult<IssuedSession> {
        let now = self.clock.now();
        let selection = self
            .store
            .consume_selection(&secret_token::digest_hex(token), now)
            .await?
            .ok_or_else(|| DomainError::FailedPrecondition {
                reason: reason::ACCOUNT_SELECTION_EXPIRED,
                message: "this account selection is no longer valid; log in again".to_owned(),
            })?;
        let person = self
            .store
            .person(selection.user_id)
            .await?
            .ok_or_else(invalid_credentials)?;
        let accounts = self.store.active_memberships(person.id).await?;
        let choice = accounts
            .iter()
            .find(|a| a.account.id == account_id)
            .ok_or_else(invalid_credentials)?;
        if choice.account.enforce_mfa
            && !selection.mfa_passed
            && selection.amr.iter().any(|m| m == "pwd")
        {
            return Err(DomainError::FailedPrecondition {
                reason: reason::MFA_REQUIRED,
                message: "this account requires the email code; log in again".to_owned(),
            });
        }
        let amr = selection.amr;
        self.start_session(&person, choice, amr, selection.mfa_passed, client)
            .await
    }

    /// Rotates a refresh token into a new session token pair.
    pub async fn refresh(&self, refresh_token: &str) -> DomainResult<IssuedSession> {
        let now = self.clock.now();
        let (session, next) = match self.store.rotate_refresh_token(refresh_token, now).await? {
            Ok(pair) => pair,
            Err(RefreshRefusal::Unknown | RefreshRefusal::Expired) => {
                return Err(DomainError::unauthenticated(
                    reason::REFRESH_TOKEN_INVALID,
                    "the refresh token is not valid",
                ));
            }
            Err(RefreshRefusal::Reused) => {
                return Err(DomainError::unauthenticated(
                    reason::REFRESH_TOKEN_REUSED,
                    "this refresh token was already used; the session has been ended",
                ));
            }
            Err(RefreshRefusal::Revoked) => return Err(session_revoked()),
        };
        let person = self
            .store
            .person(session.user_id)
            .await?
            .ok_or_else(session_revoked)?;
        let membership = self
            .store
            .active_membership(person.id, session.account_id)
            .await?;
        let Some(choice) = membership else {
            self.store
                .revoke_session(session.id, "membership_inactive", now)
                .await?;
            return Err(session_revoked());
        };
        let password_session = session.by_password();
        if choice.account.enforce_mfa && password_session && !session.mfa_passed {
            return Err(DomainError::FailedPrecondition {
                reason: reason::MFA_REQUIRED,
                message: "the account now requires the email code; log in again".to_owned(),
            });
        }
        let role = choice.membership.role;
        self.sign(&person, session, next, role, now)
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, actor: &Actor) -> DomainResult<()> {
        let person = person_of(actor)?;
        self.store
            .revoke_session(person.session_id, "logout", self.clock.now())
            .await?;
        Ok(())
    }

    /// Ends one of the caller's own sessions.
    pub async fn revoke_own_session(&self, actor: &Actor, session_id: Uuid) -> DomainResult<()> {
        let person = person_of(actor)?;
        let now = self.clock.now();
        let session = self.store.find_session(session_id).await?;
        let live = session.filter(|s| s.user_id == person.user_id && s.is_live(now));
        if live.is_none() {
            return Err(DomainError::not_found(reason::SESSION_NOT_FOUND, "session"));
        }
        self.store
            .revoke_session(session_id, "revoked_by_user", now)
            .await?;
        Ok(())
    }

    /// The caller's live sessions, newest first, one page, with each session's account name;
    /// and the id of the caller's own session.
    pub async fn list_sessions(
        &self,
        actor: &Actor,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<(Page<(Session, String)>, Uuid)> {
        let person = person_of(actor)?;
        let query = ListQuery::new("ListMySessions", &[&person.user_id.to_string()]);
        let after = match self.pages.decode(&query, page_token)? {
            None => None,
            Some(After { key, id }) => {
                let created = key
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_micros)
                    .ok_or_else(|| {
                        DomainError::internal(anyhow::anyhow!("bad session position"))
                    })?;
                Some((created, id))
            }
        };
        let rows = self
            .store
            .list_live_sessions(person.user_id, after, page_size + 1, self.clock.now())
            .await?;
        let page = self.pages.page(&query, rows, page_size, |(s, _)| After {
            key: s.created_at.timestamp_micros().to_string(),
            id: s.id,
        });
        Ok((page, person.session_id))
    }

    /// Describes an invitation link.
    pub async fn invitation(&self, token: &str) -> DomainResult<InvitationView> {
        let invitation = self
            .store
            .find_invitation_by_token(&secret_token::digest_hex(token))
            .await?
            .ok_or_else(invitation_invalid)?;
        if invitation.expires_at <= self.clock.now() {
            return Err(DomainError::FailedPrecondition {
                reason: reason::INVITATION_EXPIRED,
                message: "this invitation has expired; ask an administrator to send a new one"
                    .to_owned(),
            });
        }
        let member = self
            .store
            .member(invitation.account_id, invitation.user_id)
            .await?
            .ok_or_else(invitation_invalid)?;
        if member.membership.status != MembershipStatus::Invited {
            return Err(invitation_invalid());
        }
        let account_name = self
            .store
            .account(invitation.account_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        Ok(InvitationView {
            member,
            account_name,
            expires_at: invitation.expires_at,
        })
    }

    /// Accepts an invitation and logs in to its account.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: Password,
        display_name: Option<String>,
        client: Client,
    ) -> DomainResult<(Member, IssuedSession)> {
        let view = self.invitation(token).await?;
        let person = view.member.person.clone();
        let new_hash = if person.has_password() {
            if !self.checked_password(&person, &password).await? {
                return Err(invalid_credentials());
            }
            None
        } else {
            let name = display_name.as_deref().unwrap_or(&person.display_name);
            password::check_policy(&password, &person.email, name)
                .map_err(|e| DomainError::invalid("password", e))?;
            Some(self.hasher.hash(&password).await?)
        };
        let invitation = self
            .store
            .find_invitation_by_token(&secret_token::digest_hex(token))
            .await?
            .ok_or_else(invitation_invalid)?;
        let now = self.clock.now();
        if !self
            .store
            .accept_invitation(
                &invitation,
                new_hash.as_deref(),
                display_name.as_deref(),
                now,
            )
            .await?
        {
            return Err(invitation_invalid());
        }
        let person = self
            .store
            .person(person.id)
            .await?
            .ok_or_else(invitation_invalid)?;
        let choice = self
            .store
            .active_membership(person.id, invitation.account_id)
            .await?
            .ok_or_else(invitation_invalid)?;
        // The emailed link proves control of the address: it counts as the second factor.
        let session = self
            .start_session(
                &person,
                &choice,
                vec!["pwd".to_owned(), "email".to_owned()],
                true,
                client,
            )
            .await?;
        let member = self
            .store
            .member(invitation.account_id, person.id)
            .await?
            .ok_or_else(user_not_found)?;
        Ok((member, session))
    }

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

    async fn send_reset(&self, email_key: &str) -> DomainResult<()> {
        let Some(person) = self.store.person_by_email(email_key).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        if let Some(last) = self.store.last_reset_at(person.id).await?
            && now - last < RESET_INTERVAL
        {
            return Ok(());
        }
        let token = secret_token::generate("rst_");
        let email = Email::PasswordReset {
            link: format!("{}/password/reset?token={token}", self.public_url),
            expires_in_minutes: RESET_TTL.num_minutes(),
        };
        self.store
            .create_reset(
                &secret_token::digest_hex(&token),
                person.id,
                now + RESET_TTL,
                (&person.email, &email),
                now,
            )
            .await
    }

    /// Sets a new password with a reset link. Revokes every session; does not log in.
    pub async fn reset_password(&self, token: &str, new_password: Password) -> DomainResult<()> {
        let token_hash = secret_token::digest_hex(token);
        let invalid = || DomainError::FailedPrecondition {
            reason: reason::RESET_TOKEN_INVALID,
            message: "this reset link is not valid; ask for a new one".to_owned(),
        };
        let reset = self
            .store
            .find_reset(&token_hash)
            .await?
            .ok_or_else(invalid)?;
        if reset.used_at.is_some() {
            return Err(invalid());
        }
        if reset.expires_at <= self.clock.now() {
            return Err(DomainError::FailedPrecondition {
                reason: reason::RESET_TOKEN_EXPIRED,
                message: "this reset link has expired; ask for a new one".to_owned(),
            });
        }
        let person = self
            .store
            .person(reset.user_id)
            .await?
            .ok_or_else(invalid)?;
        password::check_policy(&new_password, &person.email, &person.display_name)
            .map_err(|e| DomainError::invalid("new_password", e))?;
        let hash = self.hasher.hash(&new_password).await?;
        if !self
            .store
            .complete_reset(
                &token_hash,
                person.id,
                &hash,
                (&person.email, &Email::PasswordChanged),
                self.clock.now(),
            )
            .await?
        {
            return Err(invalid());
        }
        Ok(())
    }

    /// Changes the caller's password; the other sessions end.
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
        if !self.checked_password(&person, &current).await? {
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
        self.store
            .change_password(
                person.id,
                caller.session_id,
                &hash,
                (&person.email, &Email::PasswordChanged),
                self.clock.now(),
            )
            .await
    }

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
            if member.enforce_mfa {
                return Err(DomainError::FailedPrecondition {
                    reason: reason::MFA_ENFORCED,
                    message: "your account's administrator requires the email code for everyone"
                        .to_owned(),
                });
            }
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

/// Six digits from the OS CSPRNG.
fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
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
}
