//! OpenID Connect as any provider speaks it: verifies ID tokens and exchanges authorization codes
//! for them. What one provider adds (Google's two issuer forms, its `email_verified` rule, the
//! reasons its errors map to, its settings) lives in that provider's module, built on this one.
//!
//! The provider is found by OpenID discovery (`{issuer}/.well-known/openid-configuration`), so the
//! same code talks to the real provider in production and to a real OpenID provider on loopback in
//! tests. Discovery is fetched on first use and kept; the signing keys (JWKS) are kept for at most
//! an hour, and a token signed by a key we do not know makes us fetch them again, at most once per
//! 30 seconds, so a stream of forged key ids cannot turn us into a load generator against the
//! provider.
//!
//! Nothing here logs or returns a token, a code, a PKCE verifier or the client secret: errors say
//! which check failed, never what was presented.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use reqwest::Url;
use serde::{Deserialize, de::DeserializeOwned};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};

use crate::config::{Secret, secure_or_loopback};

/// Every request to the provider gives up after this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again before use (Google, for one, rotates keys over days and
/// serves the JWKS with a cache lifetime of a few hours).
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

/// How logs name a provider and the settings an operator would correct, so that a message about
/// one provider says which one and what to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// The provider as people call it: `Google`.
    pub provider: &'static str,
    /// The variable that sets the issuer: `IDENTITY_GOOGLE_ISSUER`.
    pub issuer_setting: &'static str,
    /// The variables that set our client's id and secret, in one phrase.
    pub client_settings: &'static str,
}

/// One OpenID provider, and our client registered with it.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub names: Names,
    /// Where discovery starts, without a trailing slash. The discovery document must name it.
    pub issuer: String,
    /// The `iss` values accepted in ID tokens, compared exactly: the issuer, and any other form in
    /// which the provider writes it.
    pub accepted_issuers: HashSet<String>,
    /// Our client id: the audience ID tokens must be issued to.
    pub client_id: String,
    /// Authenticates code exchanges (`client_secret_post`); without it no code is exchanged.
    pub client_secret: Option<Secret>,
    /// The redirect URIs a code may have been issued for, compared exactly. Empty: codes are not
    /// accepted.
    pub redirect_uris: Vec<String>,
}

/// Which check refused a credential. Only for logs and tests: the caller gets one reason per
/// provider (`GOOGLE_CREDENTIAL_INVALID` for Google), whatever the check.
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

/// Why a credential was not accepted. Never carries the credential. A provider's module maps it
/// to that provider's error, and so to its reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("the credential is invalid ({0:?})")]
    CredentialInvalid(Rejection),
    #[error("the identity provider could not be reached")]
    Unavailable,
    #[error("the redirect_uri is not configured")]
    RedirectUriNotAllowed,
}

/// An ID token whose signature, issuer, audience, times and nonce were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdToken<C> {
    /// The provider's stable id of the person (`sub`), never empty.
    pub subject: String,
    /// The other claims the caller asked for (profile claims such as `email`), as the token has
    /// them: nothing here checks them.
    pub claims: C,
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
        names: &Names,
    ) -> Option<Result<Arc<VerificationKey>, OidcError>> {
        let within = |at: Option<DateTime<Utc>>, age| at.is_some_and(|at| now - at < age);
        let fresh = within(self.fetched_at, JWKS_MAX_AGE);
        match self.keys.get(kid) {
            Some(key) if fresh => Some(Ok(key.clone())),
            // A fetch failed moments ago: answer from what we have rather than wait on the
            // provider again at every login.
            key if within(self.failed_at, FAILED_FETCH_BACKOFF) => Some(
                key.cloned()
                    .ok_or(OidcError::Unavailable)
                    .inspect(|_| tracing::debug!("using {} keys past their age", names.provider)),
            ),
            None if within(self.fetched_at, JWKS_REFETCH_INTERVAL) => {
                Some(Err(OidcError::CredentialInvalid(Rejection::UnknownKey)))
            }
            _ => None,
        }
    }
}

/// Verifies one provider's ID tokens and exchanges codes at its token endpoint. One per provider
/// and process: it holds the discovery document and the key cache, and is shared by every request.
pub struct Provider {
    config: ProviderConfig,
    http: reqwest::Client,
    /// Held while discovery is fetched, so concurrent first logins fetch it once.
    discovery: Mutex<Option<Arc<Discovery>>>,
    keys: RwLock<KeyCache>,
    /// Held while the JWKS is fetched, so concurrent logins fetch it once.
    fetching: Mutex<()>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("provider", &self.config.names.provider)
            .field("client_id", &self.config.client_id)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// The ID token claims every provider's tokens are checked on, and the caller's claims `C` beside
/// them. Everything else is ignored.
#[derive(Deserialize)]
struct IdTokenClaims<C> {
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
    #[serde(flatten)]
    rest: C,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
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

impl Provider {
    /// Builds the HTTP client (rustls with ring and the Mozilla roots). Nothing is fetched until
    /// the first login.
    pub fn new(config: ProviderConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            // A redirect could carry the client secret elsewhere, so none is followed (Google's
            // endpoints do not redirect).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("identity/", env!("CARGO_PKG_VERSION")))
            .build()
            .with_context(|| {
                format!(
                    "cannot build the HTTP client for {} login",
                    config.names.provider
                )
            })?;
        Ok(Self {
            config,
            http,
            discovery: Mutex::new(None),
            keys: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        })
    }

    /// Verifies an ID token: signature by a key the provider publishes, issuer (one of the accepted
    /// forms), audience (our client id, and `azp` when there are several audiences), expiry and
    /// issue time against `now` (with a minute of leeway), the nonce (compared in constant time),
    /// and a subject. Returns the subject and the claims `C`, which the caller checks: a token whose
    /// claims do not fit `C` is refused as [`Rejection::Malformed`], before any other check.
    pub async fn verify_id_token<C: DeserializeOwned>(
        &self,
        id_token: &str,
        expected_nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<IdToken<C>, OidcError> {
        use OidcError::CredentialInvalid as Invalid;
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
        let claims = jsonwebtoken::decode::<IdTokenClaims<C>>(id_token, &key.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Invalid(Rejection::Signature),
                _ => Invalid(Rejection::Malformed),
            })?
            .claims;

        if !self.config.accepted_issuers.contains(&claims.iss) {
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
        if claims.sub.is_empty() {
            return Err(Invalid(Rejection::Malformed));
        }
        Ok(IdToken {
            subject: claims.sub,
            claims: claims.rest,
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
    ) -> Result<String, OidcError> {
        if !self
            .config
            .redirect_uris
            .iter()
            .any(|uri| uri == redirect_uri)
        {
            return Err(OidcError::RedirectUriNotAllowed);
        }
        let Some(secret) = &self.config.client_secret else {
            // The configuration refuses redirect URIs without a secret.
            return Err(OidcError::RedirectUriNotAllowed);
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
            .map_err(|error| self.unavailable("token endpoint", &error))?;
        let status = response.status();
        let body = read_body(response)
            .await
            .map_err(|error| self.unavailable("token endpoint", &*error))?;
        let provider = self.config.names.provider;
        if status.is_client_error() {
            // `error` is an OAuth error code (invalid_grant, invalid_client...): safe to log.
            let code = serde_json::from_slice::<OAuthError>(&body)
                .ok()
                .and_then(|e| e.error)
                .unwrap_or_default();
            if code == "invalid_client" {
                tracing::error!(
                    status = status.as_u16(),
                    "{provider} refused our client credentials: check {}",
                    self.config.names.client_settings
                );
            } else {
                tracing::info!(status = status.as_u16(), error = %code, "{provider} refused an authorization code");
            }
            return Err(OidcError::CredentialInvalid(Rejection::CodeRefused));
        }
        if !status.is_success() {
            tracing::warn!(
                status = status.as_u16(),
                "the {provider} token endpoint answered with an error"
            );
            return Err(OidcError::Unavailable);
        }
        let token = serde_json::from_slice::<TokenResponse>(&body).map_err(|_| {
            tracing::warn!("the {provider} token endpoint answered something else than a token");
            OidcError::Unavailable
        })?;
        // No ID token: the authorization was not an OpenID one (no `openid` scope).
        token
            .id_token
            .filter(|token| !token.is_empty())
            .ok_or(OidcError::CredentialInvalid(Rejection::Malformed))
    }

    /// The discovery document, fetched on first use and kept. A failed fetch is not kept, so the
    /// next login tries again.
    async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        let mut cached = self.discovery.lock().await;
        if let Some(discovery) = cached.as_ref() {
            return Ok(discovery.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let body = self
            .get(&url)
            .await
            .map_err(|error| self.unavailable("discovery", &*error))?;
        let discovery: Discovery = serde_json::from_slice(&body).map_err(|error| {
            tracing::warn!(%url, %error, "the OpenID discovery document is not usable");
            OidcError::Unavailable
        })?;
        // OpenID Discovery 4.3: the document must name the issuer it was fetched from.
        if discovery.issuer.trim_end_matches('/') != self.config.issuer {
            tracing::error!(
                configured = %self.config.issuer,
                discovered = %discovery.issuer,
                "the OpenID discovery document names another issuer: check {}",
                self.config.names.issuer_setting
            );
            return Err(OidcError::Unavailable);
        }
        for endpoint in [&discovery.jwks_uri, &discovery.token_endpoint] {
            if !Url::parse(endpoint).is_ok_and(|url| secure_or_loopback(&url)) {
                tracing::error!(%endpoint, "the OpenID discovery document names an endpoint that is not https");
                return Err(OidcError::Unavailable);
            }
        }
        let discovery = Arc::new(discovery);
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// The key `kid`, from the cache while it is fresh; otherwise, or for a `kid` we do not know
    /// yet (a rotation), from a new fetch of the JWKS, paced by [`JWKS_REFETCH_INTERVAL`].
    async fn key(&self, kid: &str, now: DateTime<Utc>) -> Result<Arc<VerificationKey>, OidcError> {
        let names = &self.config.names;
        if let Some(answer) = self.keys.read().await.lookup(kid, now, names) {
            return answer;
        }
        let _fetching = self.fetching.lock().await;
        // Another login may have fetched while we waited.
        if let Some(answer) = self.keys.read().await.lookup(kid, now, names) {
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
                    .ok_or(OidcError::CredentialInvalid(Rejection::UnknownKey))
            }
            Err(error) => {
                cache.failed_at = Some(now);
                // The endpoints may have moved: discover them again next time.
                *self.discovery.lock().await = None;
                match cache.keys.get(kid) {
                    Some(key) => {
                        tracing::warn!(
                            "{}'s keys could not be refreshed; using the cached ones",
                            names.provider
                        );
                        Ok(key.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Fetches the JWKS and keeps the signing keys we can use: RSA for RS256, P-256 for ES256.
    async fn fetch_keys(&self) -> Result<HashMap<String, Arc<VerificationKey>>, OidcError> {
        #[derive(Deserialize)]
        struct JwkSet {
            keys: Vec<serde_json::Value>,
        }
        let discovery = self.discovery().await?;
        let body = self
            .get(&discovery.jwks_uri)
            .await
            .map_err(|error| self.unavailable("JWKS", &*error))?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| {
            tracing::warn!(%error, "the provider's JWKS is not a JWK set");
            OidcError::Unavailable
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
            return Err(OidcError::Unavailable);
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

    /// Logs why the provider could not be used (reqwest's errors name the URL, never a form body)
    /// and answers `Unavailable`.
    fn unavailable(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> OidcError {
        let mut cause = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        tracing::warn!(
            %cause,
            "{} login: the {what} request failed",
            self.config.names.provider
        );
        OidcError::Unavailable
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_claims_are_read_beside_the_checked_ones() {
        #[derive(Deserialize)]
        struct Profile {
            #[serde(default)]
            email: Option<String>,
            #[serde(default)]
            email_verified: Option<Verified>,
        }
        #[derive(Deserialize, PartialEq, Debug)]
        #[serde(untagged)]
        enum Verified {
            Bool(bool),
            Text(String),
        }
        let claims = |extra: serde_json::Value| {
            let mut json = serde_json::json!({
                "iss": "https://idp.example", "aud": ["a", "b"], "azp": "a", "sub": "s",
                "exp": 2, "iat": 1, "nonce": "n",
            });
            if let (Some(json), Some(extra)) = (json.as_object_mut(), extra.as_object()) {
                json.extend(extra.clone());
            }
            serde_json::from_value::<IdTokenClaims<Profile>>(json)
        };
        let read = claims(serde_json::json!({"email": "a@example.com", "email_verified": "true"}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((read.sub.as_str(), read.exp, read.nbf), ("s", 2, None));
        assert_eq!(read.rest.email.as_deref(), Some("a@example.com"));
        assert_eq!(
            read.rest.email_verified,
            Some(Verified::Text("true".into()))
        );
        let read = claims(serde_json::json!({"email_verified": true}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(read.rest.email, None);
        assert_eq!(read.rest.email_verified, Some(Verified::Bool(true)));
        // Claims that do not fit the caller's type make the token malformed.
        assert!(claims(serde_json::json!({"email": 7})).is_err());
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
