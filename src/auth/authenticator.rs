//! Turns the `authorization` header into an `Actor`.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::domain::actor::{Actor, PersonCaller};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::roles::Role;

use super::keys::{KeySet, TokenError};
use super::service_tokens::ServiceTokens;
use crate::store::Store;

pub struct Authenticator {
    keys: Arc<KeySet>,
    services: ServiceTokens,
    clock: SharedClock,
    store: Store,
}

impl Authenticator {
    pub fn new(
        keys: Arc<KeySet>,
        services: ServiceTokens,
        clock: SharedClock,
        store: Store,
    ) -> Self {
        Self {
            keys,
            services,
            clock,
            store,
        }
    }

    /// True while the session of an access token is live (not revoked, not expired): a logout,
    /// password change or removal takes effect at once, not when the token expires.
    pub async fn session_is_live(&self, session_id: uuid::Uuid) -> DomainResult<bool> {
        let now = self.clock.now();
        Ok(self
            .store
            .find_session(session_id)
            .await?
            .is_some_and(|s| s.is_live(now)))
    }

    /// The caller presenting `bearer` (the token after `Bearer `). Access tokens are JWTs (three
    /// dot-separated parts); anything else is looked up as a service token.
    pub async fn authenticate(&self, bearer: &str) -> DomainResult<Actor> {
        if bearer.matches('.').count() == 2 {
            let claims = self
                .keys
                .verify(bearer, self.clock.now())
                .map_err(token_error)?;
            let role = Role::parse(&claims.role).ok_or_else(|| token_error(TokenError::Invalid))?;
            if !self.session_is_live(claims.sid).await? {
                return Err(DomainError::unauthenticated(
                    reason::SESSION_REVOKED,
                    "the session of this token has ended; log in again",
                ));
            }
            return Ok(Actor::Person(PersonCaller {
                user_id: claims.sub,
                account_id: claims.acc,
                role,
                session_id: claims.sid,
                amr: claims.amr,
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
