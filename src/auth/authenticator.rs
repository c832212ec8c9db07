//! Turns the `authorization` header into an `Actor`, and checks access tokens: the caller's own
//! and, for `ValidateToken`, the ones services forward. Both go through `check_access_token`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::actor::{Actor, PersonCaller};
use crate::domain::auth::{SessionRefusal, SessionStanding, session_refusal};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::roles::Role;

use super::keys::{AccessClaims, KeySet, TokenError};
use super::service_tokens::ServiceTokens;

/// Where sessions stand: ended, or live with the member's status. The replica's access data
/// answers it from memory.
pub trait Sessions: Send + Sync {
    fn standing(
        &self,
        session_id: Uuid,
        account_id: Uuid,
        user_id: Uuid,
    ) -> BoxFuture<'_, DomainResult<SessionStanding>>;
}

/// Why an access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token itself: malformed, not signed by a key of the set, of another issuer or
    /// audience, naming no known role, or expired.
    Token(TokenError),
    /// Its session: ended (logout, revocation, expiry), or live for a person who is not an
    /// ACTIVE member of the account.
    Session(SessionRefusal),
}

/// An access token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: AccessClaims,
    pub role: Role,
}

/// Most access tokens remembered as verified.
const VERIFIED_MAX: usize = 50_000;

pub struct Authenticator {
    /// Access tokens whose signature, issuer and audience were verified, by the SHA-256 of the
    /// token (never the token): a person presents one token on every call for up to its 15
    /// minutes, and its EdDSA verification costs more than the rest of a read. The key set is
    /// fixed for the process, so a verified token stays verified; expiry is checked every time.
    verified: Mutex<HashMap<[u8; 32], AccessClaims>>,
    keys: Arc<KeySet>,
    services: ServiceTokens,
    clock: SharedClock,
    sessions: Arc<dyn Sessions>,
}

impl Authenticator {
    pub fn new(
        keys: Arc<KeySet>,
        services: ServiceTokens,
        clock: SharedClock,
        sessions: Arc<dyn Sessions>,
    ) -> Self {
        Self {
            verified: Mutex::new(HashMap::new()),
            keys,
            services,
            clock,
            sessions,
        }
    }

    /// The one check of an access token, by its person or forwarded by a service alike: its
    /// signature, issuer, audience, expiry and role, then where its session stands (from the
    /// replica's memory, within the access staleness bound), which the domain judges
    /// (`session_refusal`). The caller turns a refusal into its own reasons.
    pub async fn check_access_token(
        &self,
        token: &str,
    ) -> DomainResult<Result<VerifiedToken, Refusal>> {
        let now = self.clock.now();
        let claims = match self.verify(token, now) {
            Ok(claims) => claims,
            Err(err) => return Ok(Err(Refusal::Token(err))),
        };
        let Some(role) = Role::parse(&claims.role) else {
            return Ok(Err(Refusal::Token(TokenError::Invalid)));
        };
        let standing = self
            .sessions
            .standing(claims.sid, claims.acc, claims.sub)
            .await?;
        if let Some(refusal) = session_refusal(standing) {
            return Ok(Err(Refusal::Session(refusal)));
        }
        Ok(Ok(VerifiedToken { claims, role }))
    }

    /// `KeySet::verify`, remembering tokens that passed.
    fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AccessClaims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.remembered().get(&digest).cloned();
        if let Some(claims) = remembered {
            return if claims.exp <= now.timestamp() {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.keys.verify(token, now)?;
        let mut verified = self.remembered();
        if verified.len() >= VERIFIED_MAX {
            verified.retain(|_, claims| claims.exp > now.timestamp());
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], AccessClaims>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caller presenting `bearer` (the token after `Bearer `). Access tokens are JWTs (three
    /// dot-separated parts); anything else is looked up as a service token.
    pub async fn authenticate(&self, bearer: &str) -> DomainResult<Actor> {
        if bearer.matches('.').count() == 2 {
            let checked = self.check_access_token(bearer).await?;
            let VerifiedToken { claims, role } = match checked {
                Ok(verified) => verified,
                Err(Refusal::Token(err)) => return Err(token_error(err)),
                Err(Refusal::Session(refusal)) => return Err(session_error(refusal)),
            };
            return Ok(Actor::Person(PersonCaller {
                user_id: claims.sub,
                account_id: claims.acc,
                role,
                session_id: claims.sid,
                amr: claims.amr,
                email: claims.email,
            }));
        }
        self.services
            .resolve(bearer)
            .map(|caller| Actor::Service(caller.clone()))
            .ok_or_else(|| {
                DomainError::unauthenticated(
                    reason::CREDENTIALS_INVALID,
                    "the bearer token is not valid",
                )
            })
    }
}

/// The caller's own bearer token was refused.
pub fn token_error(err: TokenError) -> DomainError {
    match err {
        TokenError::Expired => DomainError::unauthenticated(reason::TOKEN_EXPIRED, err.to_string()),
        TokenError::Invalid => {
            DomainError::unauthenticated(reason::CREDENTIALS_INVALID, err.to_string())
        }
    }
}

/// What a token's session refusal is called, for its own caller and for a service forwarding it.
pub fn session_error(refusal: SessionRefusal) -> DomainError {
    match refusal {
        SessionRefusal::Ended => DomainError::unauthenticated(
            reason::SESSION_REVOKED,
            "the session of this token has ended; log in again",
        ),
        SessionRefusal::MemberNotActive => DomainError::unauthenticated(
            reason::MEMBERSHIP_NOT_ACTIVE,
            "the token's person is not an active member of its account (invited and not yet \
             accepted, disabled, or removed)",
        ),
    }
}
