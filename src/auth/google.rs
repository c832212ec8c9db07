//! "Log in with Google": verifies Google ID tokens, and exchanges authorization codes for them.
//!
//! Discovery, the key cache and the checks every OpenID provider's tokens get are the
//! provider-neutral [`crate::auth::oidc`]; this module adds what is Google's own: the two forms of
//! its issuer, the verified email it must vouch for (`email_verified`, which it has been seen to
//! send as a string), the `GOOGLE_*` reasons its errors map to, and its settings
//! ([`GoogleConfig`], read by `config`). Discovery starts at the configured issuer, so the same
//! code talks to Google in production and to a real OpenID provider on loopback in tests.
//!
//! Nothing here logs or returns a token, a code, a PKCE verifier or the client secret: errors say
//! which check failed, never what was presented.

use std::{collections::HashSet, fmt};

use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use crate::auth::oidc::Rejection;
use crate::auth::oidc::{Names, OidcError, Provider, ProviderConfig};
pub use crate::config::{GOOGLE_ISSUER, GoogleConfig};
use crate::domain::error::{DomainError, reason};

/// The scheme-less form of [`GOOGLE_ISSUER`] that Google also puts in `iss`.
pub const GOOGLE_BARE_ISSUER: &str = "accounts.google.com";

/// How logs name Google and the settings to check.
const NAMES: Names = Names {
    provider: "Google",
    issuer_setting: "IDENTITY_GOOGLE_ISSUER",
    client_settings: "IDENTITY_GOOGLE_CLIENT_ID and IDENTITY_GOOGLE_CLIENT_SECRET",
};

/// The `iss` values accepted: the issuer, and for Google also its bare form. Another issuer (the
/// test provider) is accepted only exactly.
fn accepted_issuers(issuer: &str) -> HashSet<String> {
    let mut issuers = HashSet::from([issuer.to_owned()]);
    if issuer == GOOGLE_ISSUER {
        issuers.insert(GOOGLE_BARE_ISSUER.to_owned());
    }
    issuers
}

/// The person Google vouched for. `email_verified` is always true here: an unverified email is
/// refused with [`GoogleError::EmailNotVerified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdentity {
    /// Google's stable id of the person (`sub`).
    pub subject: String,
    /// As written in the token; the caller compares it with the user's email its own way.
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Why a Google credential was not accepted. Never carries the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GoogleError {
    #[error("the Google credential is invalid ({0:?})")]
    CredentialInvalid(Rejection),
    #[error("the Google account's email is not verified")]
    EmailNotVerified,
    #[error("Google could not be reached")]
    Unavailable,
    #[error("the redirect_uri is not configured")]
    RedirectUriNotAllowed,
}

impl From<OidcError> for GoogleError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::CredentialInvalid(why) => GoogleError::CredentialInvalid(why),
            OidcError::Unavailable => GoogleError::Unavailable,
            OidcError::RedirectUriNotAllowed => GoogleError::RedirectUriNotAllowed,
        }
    }
}

impl From<GoogleError> for DomainError {
    fn from(error: GoogleError) -> Self {
        match error {
            GoogleError::CredentialInvalid(_) => DomainError::unauthenticated(
                reason::GOOGLE_CREDENTIAL_INVALID,
                "the Google credential is invalid or expired",
            ),
            GoogleError::EmailNotVerified => DomainError::unauthenticated(
                reason::GOOGLE_EMAIL_NOT_VERIFIED,
                "the Google account's email is not verified",
            ),
            GoogleError::Unavailable => DomainError::Unavailable {
                reason: reason::GOOGLE_UNAVAILABLE,
                message: "Google could not be reached; retry".to_owned(),
            },
            GoogleError::RedirectUriNotAllowed => DomainError::invalid(
                "authorization_code.redirect_uri",
                "this redirect_uri is not configured on the server",
            ),
        }
    }
}

/// The profile claims read from Google's ID tokens, beside those every provider's are checked on.
#[derive(Deserialize)]
struct ProfileClaims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Flag>,
    #[serde(default)]
    name: Option<String>,
}

/// `email_verified` is a JSON boolean, but Google has been seen sending the string `"true"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Flag::Bool(value) => *value,
            Flag::Text(value) => value == "true",
        }
    }
}

/// Verifies Google ID tokens and exchanges authorization codes. One per process: its
/// [`Provider`] holds the discovery document and the key cache, and is shared by every request.
pub struct GoogleVerifier {
    config: GoogleConfig,
    provider: Provider,
}

impl fmt::Debug for GoogleVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleVerifier")
            .field("client_id", &self.config.client_id)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl GoogleVerifier {
    /// Builds the HTTP client (rustls with ring and the Mozilla roots). Nothing is fetched until
    /// the first login.
    pub fn new(config: GoogleConfig) -> anyhow::Result<Self> {
        let provider = Provider::new(ProviderConfig {
            names: NAMES,
            issuer: config.issuer.clone(),
            accepted_issuers: accepted_issuers(&config.issuer),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uris: config.redirect_uris.clone(),
        })?;
        Ok(Self { config, provider })
    }

    pub fn config(&self) -> &GoogleConfig {
        &self.config
    }

    /// Verifies an ID token as any OpenID provider's ([`Provider::verify_id_token`]: signature by a
    /// key Google publishes, issuer in either of Google's forms, audience, expiry and issue time
    /// against `now`, the nonce), then that it names an email Google verified. The email is
    /// checked last, so [`GoogleError::EmailNotVerified`] is only told about tokens otherwise valid.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<GoogleIdentity, GoogleError> {
        let token = self
            .provider
            .verify_id_token::<ProfileClaims>(id_token, expected_nonce, now)
            .await?;
        let claims = token.claims;
        let email = match claims.email {
            Some(email) if !email.is_empty() => email,
            _ => return Err(GoogleError::CredentialInvalid(Rejection::Malformed)),
        };
        if !claims.email_verified.as_ref().is_some_and(Flag::is_true) {
            return Err(GoogleError::EmailNotVerified);
        }
        Ok(GoogleIdentity {
            subject: token.subject,
            email,
            email_verified: true,
            name: claims.name.filter(|name| !name.is_empty()),
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token at Google's token
    /// endpoint ([`Provider::exchange_code`]: `client_secret_post`, and only for a configured
    /// redirect URI, checked before anything is sent). Verify the result with
    /// [`Self::verify_id_token`].
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, GoogleError> {
        Ok(self
            .provider
            .exchange_code(code, code_verifier, redirect_uri)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_issuer_is_accepted_in_both_forms_and_others_only_exactly() {
        let google = accepted_issuers(GOOGLE_ISSUER);
        assert!(google.contains("https://accounts.google.com"));
        assert!(google.contains("accounts.google.com"));
        assert!(!google.contains("https://accounts.google.com.evil.example"));
        let other = accepted_issuers("http://127.0.0.1:4000");
        assert!(other.contains("http://127.0.0.1:4000"));
        assert!(!other.contains("127.0.0.1:4000"));
        assert!(!other.contains("accounts.google.com"));
    }

    #[test]
    fn errors_map_to_the_documented_reasons() {
        let reason_of = |error: GoogleError| match DomainError::from(error) {
            DomainError::Unauthenticated { reason, .. } => reason,
            DomainError::Unavailable { reason, .. } => reason,
            DomainError::InvalidArgument { violations, reason } => {
                assert_eq!(violations[0].field, "authorization_code.redirect_uri");
                reason
            }
            other => unreachable!("{other:?}"),
        };
        assert_eq!(
            reason_of(GoogleError::CredentialInvalid(Rejection::Nonce)),
            reason::GOOGLE_CREDENTIAL_INVALID
        );
        assert_eq!(
            reason_of(GoogleError::EmailNotVerified),
            reason::GOOGLE_EMAIL_NOT_VERIFIED
        );
        assert_eq!(
            reason_of(GoogleError::Unavailable),
            reason::GOOGLE_UNAVAILABLE
        );
        assert_eq!(
            reason_of(GoogleError::RedirectUriNotAllowed),
            reason::INVALID_ARGUMENT
        );
    }

    #[test]
    fn provider_errors_become_the_google_errors_of_the_same_meaning() {
        for (from, to) in [
            (
                OidcError::CredentialInvalid(Rejection::UnknownKey),
                GoogleError::CredentialInvalid(Rejection::UnknownKey),
            ),
            (OidcError::Unavailable, GoogleError::Unavailable),
            (
                OidcError::RedirectUriNotAllowed,
                GoogleError::RedirectUriNotAllowed,
            ),
        ] {
            assert_eq!(GoogleError::from(from), to);
        }
    }
}
