//! "Log in with Google": verifies Google ID tokens, and exchanges authorization codes for them.
//!
//! The provider is found by OpenID discovery (`{issuer}/.well-known/openid-configuration`), so the
//! same code talks to Google in production and to a real OpenID provider on loopback in tests.
//! Discovery is fetched on first use and kept; the signing keys (JWKS) are kept for at most an hour,
//! and a token signed by a key we do not know makes us fetch them again, at most once per 30
//! seconds, so a stream of forged key ids cannot turn us into a load generator against Google.
//!
//! Nothing here logs or returns a token, a code, a PKCE verifier or the client secret: errors say
//! which check failed, never what was presented.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use reqwest::Url;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};

use crate::config::secure_or_loopback;
pub use crate::config::{GOOGLE_ISSUER, GoogleConfig};
use crate::domain::error::{DomainError, reason};

/// The scheme-less form of [`GOOGLE_ISSUER`] that Google also puts in `iss`.
pub const GOOGLE_BARE_ISSUER: &str = "accounts.google.com";

/// Every request to the provider gives up after this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again before use (Google rotates keys over days and serves
/// the JWKS with a cache lifetime of a few hours).
const JWKS_MAX_AGE: chrono::Duration = chrono::Duration::hours(1);
/// An unknown `kid` fetches the keys again only if the last fetch is at least this old.
const JWKS_REFETCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(30);
/// After a failed fetch, logins use the keys they have (or answer `Unavailable`) for this long
/// before the provider is asked again.
const FAILED_FETCH_BACKOFF: chrono::Duration = chrono::Duration::seconds(5);
/// Clock skew tolerated on `exp`, `iat` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;
/// ID tokens are a few KiB; anything much larger is refused before parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Discovery documents, JWKS and token responses are small; larger bodies are refused.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The `iss` values accepted: the issuer, and for Google also its bare form.
fn accepts_issuer(config: &GoogleConfig, iss: &str) -> bool {
    iss == config.issuer || (config.issuer == GOOGLE_ISSUER && iss == GOOGLE_BARE_ISSUER)
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

/// Which check refused a credential. Only for logs and tests: the caller gets one reason,
/// `GOOGLE_CREDENTIAL_INVALID`, whatever the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT, too large, unsupported algorithm, no `kid`, or claims missing.
    Malformed,
    /// Signed by a key the provider does not publish.
    UnknownKey,
    Signature,
    Issuer,
    Audience,
    Expired,
    /// Issued in the future, or not valid yet.
    NotYetValid,
    Nonce,
    /// The token endpoint refused the code (unknown, used, expired, or wrong PKCE verifier).
    CodeRefused,
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

/// The parts of the discovery document we use.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
}

struct VerificationKey {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<VerificationKey>>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<DateTime<Utc>>,
    /// When the last fetch failed, if it did.
    failed_at: Option<DateTime<Utc>>,
}

impl KeyCache {
    /// `None` when the keys must be fetched; otherwise the answer the cache gives on its own.
    fn lookup(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Option<Result<Arc<VerificationKey>, GoogleError>> {
        let within = |at: Option<DateTime<Utc>>, age| at.is_some_and(|at| now - at < age);
        let fresh = within(self.fetched_at, JWKS_MAX_AGE);
        match self.keys.get(kid) {
            Some(key) if fresh => Some(Ok(key.clone())),
            // A fetch failed moments ago: answer from what we have rather than wait on the
            // provider again at every login.
            key if within(self.failed_at, FAILED_FETCH_BACKOFF) => Some(
                key.cloned()
                    .ok_or(GoogleError::Unavailable)
                    .inspect(|_| tracing::debug!("using Google keys past their age")),
            ),
            None if within(self.fetched_at, JWKS_REFETCH_INTERVAL) => {
                Some(Err(GoogleError::CredentialInvalid(Rejection::UnknownKey)))
            }
            _ => None,
        }
    }
}

/// Verifies Google ID tokens and exchanges authorization codes. One per process: it holds the
/// discovery document and the key cache, and is shared by every request.
pub struct GoogleVerifier {
    config: GoogleConfig,
    http: reqwest::Client,
    /// Held while discovery is fetched, so concurrent first logins fetch it once.
    discovery: Mutex<Option<Arc<Discovery>>>,
    keys: RwLock<KeyCache>,
    /// Held while the JWKS is fetched, so concurrent logins fetch it once.
    fetching: Mutex<()>,
}

impl fmt::Debug for GoogleVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleVerifier")
            .field("client_id", &self.config.client_id)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// The ID token claims we read. Everything else is ignored.
#[derive(Deserialize)]
struct IdTokenClaims {
    iss: String,
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Flag>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
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

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: Option<String>,
}

impl GoogleVerifier {
    /// Builds the HTTP client (rustls with ring and the Mozilla roots). Nothing is fetched until
    /// the first login.
    pub fn new(config: GoogleConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            // A redirect could carry the client secret elsewhere; Google's endpoints do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("identity/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client for Google login")?;
        Ok(Self {
            config,
            http,
            discovery: Mutex::new(None),
            keys: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &GoogleConfig {
        &self.config
    }

    /// Verifies an ID token: signature by a key the provider publishes, issuer, audience (our client
    /// id, and `azp` when there are several audiences), expiry and issue time against `now` (with a
    /// minute of leeway), the nonce (compared in constant time), and a verified email.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<GoogleIdentity, GoogleError> {
        use GoogleError::CredentialInvalid as Invalid;
        if id_token.len() > MAX_TOKEN_BYTES {
            return Err(Invalid(Rejection::Malformed));
        }
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|_| Invalid(Rejection::Malformed))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Invalid(Rejection::Malformed));
        }
        let kid = header.kid.ok_or(Invalid(Rejection::Malformed))?;
        let key = self.key(&kid, now).await?;
        if key.alg != header.alg {
            return Err(Invalid(Rejection::Signature));
        }

        // The library checks the signature only; every claim is checked below against `now`.
        let mut validation = Validation::new(key.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<IdTokenClaims>(id_token, &key.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Invalid(Rejection::Signature),
                _ => Invalid(Rejection::Malformed),
            })?
            .claims;

        if !accepts_issuer(&self.config, &claims.iss) {
            return Err(Invalid(Rejection::Issuer));
        }
        let client_id = self.config.client_id.as_str();
        let audience_ok = match &claims.aud {
            Audience::One(aud) => aud == client_id,
            Audience::Many(auds) => {
                // Several audiences: the token must have been issued to us (OIDC Core 3.1.3.7).
                // With one audience `azp` may name another of our clients (Google's cross-client
                // sign-in, e.g. an Android app), so it is not checked then.
                auds.iter().any(|aud| aud == client_id) && claims.azp.as_deref() == Some(client_id)
            }
        };
        if !audience_ok {
            return Err(Invalid(Rejection::Audience));
        }
        let now_s = now.timestamp();
        if claims.exp + LEEWAY_SECONDS <= now_s {
            return Err(Invalid(Rejection::Expired));
        }
        if claims.iat - LEEWAY_SECONDS > now_s
            || claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECONDS > now_s)
        {
            return Err(Invalid(Rejection::NotYetValid));
        }
        let nonce_ok = match claims.nonce.as_deref() {
            Some(nonce) if !expected_nonce.is_empty() => {
                bool::from(nonce.as_bytes().ct_eq(expected_nonce.as_bytes()))
            }
            _ => false,
        };
        if !nonce_ok {
            return Err(Invalid(Rejection::Nonce));
        }
        let email = match claims.email {
            Some(email) if !email.is_empty() => email,
            _ => return Err(Invalid(Rejection::Malformed)),
        };
        if claims.sub.is_empty() {
            return Err(Invalid(Rejection::Malformed));
        }
        if !claims.email_verified.as_ref().is_some_and(Flag::is_true) {
            return Err(GoogleError::EmailNotVerified);
        }
        Ok(GoogleIdentity {
            subject: claims.sub,
            email,
            email_verified: true,
            name: claims.name.filter(|name| !name.is_empty()),
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token, at the token
    /// endpoint, authenticating with the client secret (`client_secret_post`). The redirect URI must
    /// be one configured; it is checked before anything is sent. Verify the result with
    /// [`Self::verify_id_token`].
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, GoogleError> {
        if !self
            .config
            .redirect_uris
            .iter()
            .any(|uri| uri == redirect_uri)
        {
            return Err(GoogleError::RedirectUriNotAllowed);
        }
        let Some(secret) = &self.config.client_secret else {
            // The configuration refuses redirect URIs without a secret.
            return Err(GoogleError::RedirectUriNotAllowed);
        };
        let discovery = self.discovery().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", code_verifier),
            ("redirect_uri", redirect_uri),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", secret.expose()),
        ];
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| unavailable("token endpoint", &error))?;
        let status = response.status();
        let body = read_body(response)
            .await
            .map_err(|error| unavailable("token endpoint", &*error))?;
        if status.is_client_error() {
            // `error` is an OAuth error code (invalid_grant, invalid_client...): safe to log.
            let code = serde_json::from_slice::<OAuthError>(&body)
                .ok()
                .and_then(|e| e.error)
                .unwrap_or_default();
            if code == "invalid_client" {
                tracing::error!(
                    status = status.as_u16(),
                    "Google refused our client credentials: check IDENTITY_GOOGLE_CLIENT_ID and \
                     IDENTITY_GOOGLE_CLIENT_SECRET"
                );
            } else {
                tracing::info!(status = status.as_u16(), error = %code, "Google refused an authorization code");
            }
            return Err(GoogleError::CredentialInvalid(Rejection::CodeRefused));
        }
        if !status.is_success() {
            tracing::warn!(
                status = status.as_u16(),
                "the Google token endpoint answered with an error"
            );
            return Err(GoogleError::Unavailable);
        }
        let token = serde_json::from_slice::<TokenResponse>(&body).map_err(|_| {
            tracing::warn!("the Google token endpoint answered something else than a token");
            GoogleError::Unavailable
        })?;
        // No ID token: the authorization was not an OpenID one (no `openid` scope).
        token
            .id_token
            .filter(|token| !token.is_empty())
            .ok_or(GoogleError::CredentialInvalid(Rejection::Malformed))
    }

    /// The discovery document, fetched on first use and kept. A failed fetch is not kept, so the
    /// next login tries again.
    async fn discovery(&self) -> Result<Arc<Discovery>, GoogleError> {
        let mut cached = self.discovery.lock().await;
        if let Some(discovery) = cached.as_ref() {
            return Ok(discovery.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let body = self
            .get(&url)
            .await
            .map_err(|error| unavailable("discovery", &*error))?;
        let discovery: Discovery = serde_json::from_slice(&body).map_err(|error| {
            tracing::warn!(%url, %error, "the OpenID discovery document is not usable");
            GoogleError::Unavailable
        })?;
        // OpenID Discovery 4.3: the document must name the issuer it was fetched from.
        if discovery.issuer.trim_end_matches('/') != self.config.issuer {
            tracing::error!(
                configured = %self.config.issuer,
                discovered = %discovery.issuer,
                "the OpenID discovery document names another issuer: check IDENTITY_GOOGLE_ISSUER"
            );
            return Err(GoogleError::Unavailable);
        }
        for endpoint in [&discovery.jwks_uri, &discovery.token_endpoint] {
            if !Url::parse(endpoint).is_ok_and(|url| secure_or_loopback(&url)) {
                tracing::error!(%endpoint, "the OpenID discovery document names an endpoint that is not https");
                return Err(GoogleError::Unavailable);
            }
        }
        let discovery = Arc::new(discovery);
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// The key `kid`, from the cache while it is fresh; otherwise, or for a `kid` we do not know
    /// yet (a rotation), from a new fetch of the JWKS, paced by [`JWKS_REFETCH_INTERVAL`].
    async fn key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<VerificationKey>, GoogleError> {
        if let Some(answer) = self.keys.read().await.lookup(kid, now) {
            return answer;
        }
        let _fetching = self.fetching.lock().await;
        // Another login may have fetched while we waited.
        if let Some(answer) = self.keys.read().await.lookup(kid, now) {
            return answer;
        }
        let fetched = self.fetch_keys().await;
        let mut cache = self.keys.write().await;
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.failed_at = None;
                cache
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or(GoogleError::CredentialInvalid(Rejection::UnknownKey))
            }
            Err(error) => {
                cache.failed_at = Some(now);
                // The endpoints may have moved: discover them again next time.
                *self.discovery.lock().await = None;
                match cache.keys.get(kid) {
                    Some(key) => {
                        tracing::warn!(
                            "Google's keys could not be refreshed; using the cached ones"
                        );
                        Ok(key.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Fetches the JWKS and keeps the signing keys we can use: RSA for RS256, P-256 for ES256.
    async fn fetch_keys(&self) -> Result<HashMap<String, Arc<VerificationKey>>, GoogleError> {
        #[derive(Deserialize)]
        struct JwkSet {
            keys: Vec<serde_json::Value>,
        }
        let discovery = self.discovery().await?;
        let body = self
            .get(&discovery.jwks_uri)
            .await
            .map_err(|error| unavailable("JWKS", &*error))?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| {
            tracing::warn!(%error, "the provider's JWKS is not a JWK set");
            GoogleError::Unavailable
        })?;
        let keys: HashMap<_, _> = set
            .keys
            .into_iter()
            // A key of a type we do not know is skipped, not an error for the whole set.
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| {
                let (kid, key) = verification_key(&jwk)?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            tracing::warn!("the provider's JWKS has no RS256 or ES256 signing key");
            return Err(GoogleError::Unavailable);
        }
        Ok(keys)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status} from {url}").into());
        }
        read_body(response).await
    }
}

/// A key of the JWKS we can verify with, under its `kid`.
fn verification_key(jwk: &Jwk) -> Option<(String, VerificationKey)> {
    let common = &jwk.common;
    let kid = common.key_id.clone()?;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match (&jwk.algorithm, common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, VerificationKey { alg, key }))
}

/// Reads a response body of at most [`MAX_BODY_BYTES`].
async fn read_body(
    mut response: reqwest::Response,
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("response body too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Logs why the provider could not be used (reqwest's errors name the URL, never a form body)
/// and answers `Unavailable`.
fn unavailable(what: &str, error: &(dyn std::error::Error + 'static)) -> GoogleError {
    let mut cause = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        cause.push_str(": ");
        cause.push_str(&inner.to_string());
        source = inner.source();
    }
    tracing::warn!(%cause, "Google login: the {what} request failed");
    GoogleError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_issuer_is_accepted_in_both_forms_and_others_only_exactly() {
        let mut config = GoogleConfig {
            client_id: "c".into(),
            client_secret: None,
            issuer: GOOGLE_ISSUER.into(),
            redirect_uris: vec![],
        };
        assert!(accepts_issuer(&config, "https://accounts.google.com"));
        assert!(accepts_issuer(&config, "accounts.google.com"));
        assert!(!accepts_issuer(
            &config,
            "https://accounts.google.com.evil.example"
        ));
        config.issuer = "http://127.0.0.1:4000".into();
        assert!(accepts_issuer(&config, "http://127.0.0.1:4000"));
        assert!(!accepts_issuer(&config, "127.0.0.1:4000"));
        assert!(!accepts_issuer(&config, "accounts.google.com"));
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
    fn only_signing_keys_of_the_two_algorithms_are_kept() {
        let jwk = |json: serde_json::Value| serde_json::from_value::<Jwk>(json).ok();
        let rsa = serde_json::json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"});
        let mut encryption = rsa.clone();
        encryption["use"] = "enc".into();
        let hmac = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        let p384 =
            serde_json::json!({"kty": "EC", "kid": "e", "crv": "P-384", "x": "AQAB", "y": "AQAB"});
        assert!(
            jwk(rsa)
                .and_then(|k| verification_key(&k))
                .is_some_and(|(_, key)| key.alg == Algorithm::RS256)
        );
        assert!(jwk(encryption).and_then(|k| verification_key(&k)).is_none());
        assert!(jwk(hmac).and_then(|k| verification_key(&k)).is_none());
        assert!(jwk(p384).and_then(|k| verification_key(&k)).is_none());
    }
}
