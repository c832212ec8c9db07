//! A client of the identity service for calling teams: the generated gRPC stubs and message types
//! (`proto`), without any of the server's dependencies, and what a caller needs around them:
//!
//! - [`Bearer`]: an interceptor that sends `authorization: Bearer <token>` on every call;
//! - [`Verifier`]: verifies access tokens offline against the service's key set (`GetJwks`), with
//!   the claims `auth_service.proto` documents ([`AccessClaims`]);
//! - [`AccessChecker`]: access checks that carry the newest consistency token seen per account, so
//!   a check right after a share, revoke or membership change sees that change.
//!
//! ```no_run
//! use identity_client::{AccessChecker, Bearer, Verifier, proto};
//!
//! # async fn run(dam_token: &str, person_token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let channel = tonic::transport::Channel::from_static("http://identity:50051").connect().await?;
//! let verifier = Verifier::fetch(channel.clone(), "identity", "identity").await?;
//! let claims = verifier.verify(person_token)?;
//! let access = AccessChecker::new(channel, Bearer::new(dam_token)?);
//! let answer = access.check(proto::CheckAccessRequest {
//!     account_id: claims.acc.clone(),
//!     user_id: claims.sub.clone(),
//!     ..Default::default()
//! }).await?;
//! println!("allowed: {}", answer.allowed);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The generated stubs and messages of package `identity.v1`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("identity.v1");
}

pub use tonic;

/// Sends `authorization: Bearer <token>` on every call of a client it wraps:
/// `UserServiceClient::with_interceptor(channel, Bearer::new(token)?)`.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// Fails when `token` cannot be a header value (it holds a control character, say).
    pub fn new(token: &str) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The claims of an access token, as `auth_service.proto` documents them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The person id.
    pub sub: String,
    /// The account id of the session.
    pub acc: String,
    /// The role at issue, e.g. `account_administrator`.
    pub role: String,
    /// The session id.
    pub sid: String,
    /// How the person authenticated: `pwd`, `otp`, `email`, `google`, `saml`, `dev`.
    pub amr: Vec<String>,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a token or a key set was refused.
#[derive(Debug)]
pub enum Error {
    /// The key set could not be read (a malformed document, or a key of an unknown kind).
    KeySet(String),
    /// `GetJwks` failed.
    Rpc(tonic::Status),
    /// The token: malformed, signed by no key of the set, expired, or of another issuer or audience.
    Token(jsonwebtoken::errors::Error),
    /// The token's header names no key of the set (fetch the set again: keys rotate).
    UnknownKey,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::KeySet(why) => write!(f, "the key set cannot be read: {why}"),
            Error::Rpc(status) => write!(f, "GetJwks failed: {}", status.message()),
            Error::Token(err) => write!(f, "the access token is refused: {err}"),
            Error::UnknownKey => write!(f, "the access token names no key of the set"),
        }
    }
}

impl std::error::Error for Error {}

/// Verifies access tokens offline. It does not see revocation: a logout or a role change takes
/// effect at the token's expiry (15 minutes at most); call `ValidateToken` where that matters.
pub struct Verifier {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

impl Verifier {
    /// From the key set's JSON (`GetJwksResponse.jwks_json`, or `/.well-known/jwks.json`).
    pub fn from_jwks_json(json: &str, issuer: &str, audience: &str) -> Result<Self, Error> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| Error::KeySet(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| Error::KeySet("a key without kid".to_owned()))?;
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => return Err(Error::KeySet(format!("key {kid:?} is of an unknown kind"))),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| Error::KeySet(e.to_string()))?;
            keys.insert(kid, (algorithm, key));
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Reads the key set with `GetJwks` (no credentials needed).
    pub async fn fetch(channel: Channel, issuer: &str, audience: &str) -> Result<Self, Error> {
        let jwks = proto::auth_service_client::AuthServiceClient::new(channel)
            .get_jwks(proto::GetJwksRequest {})
            .await
            .map_err(Error::Rpc)?
            .into_inner();
        Self::from_jwks_json(&jwks.jwks_json, issuer, audience)
    }

    /// The token's claims, once its signature, issuer, audience and times check out.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(Error::Token)?;
        let (algorithm, key) = header
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(Error::UnknownKey)?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(Error::Token)
    }
}

type AccessClient =
    proto::access_service_client::AccessServiceClient<InterceptedService<Channel, Bearer>>;

/// Access checks that carry consistency tokens: each check sends the newest token this checker has
/// seen for the account (from an earlier check, or given with [`AccessChecker::observe`] after a
/// write), unless the request names one itself.
#[derive(Clone)]
pub struct AccessChecker {
    client: AccessClient,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl AccessChecker {
    pub fn new(channel: Channel, bearer: Bearer) -> Self {
        Self {
            client: proto::access_service_client::AccessServiceClient::with_interceptor(
                channel, bearer,
            ),
            tokens: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Remembers the consistency token a write of `account_id` returned (ShareResource,
    /// RevokeShare, a user or group change).
    pub fn observe(&self, account_id: &str, token: &str) {
        if !token.is_empty() {
            self.remembered()
                .insert(account_id.to_owned(), token.to_owned());
        }
    }

    /// The newest consistency token seen for `account_id`.
    pub fn token(&self, account_id: &str) -> Option<String> {
        self.remembered().get(account_id).cloned()
    }

    pub async fn check(
        &self,
        mut request: proto::CheckAccessRequest,
    ) -> Result<proto::CheckAccessResponse, tonic::Status> {
        if request.consistency_token.is_empty() {
            request.consistency_token = self.token(&request.account_id).unwrap_or_default();
        }
        let account_id = request.account_id.clone();
        let answer = self
            .client
            .clone()
            .check_access(request)
            .await?
            .into_inner();
        self.observe(&account_id, &answer.consistency_token);
        Ok(answer)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
