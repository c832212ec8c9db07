//! Access tokens: signed JWTs (EdDSA over Ed25519) with a key id, from a key set that rotates.
//!
//! Rotation: every configured key is published by `GetJwks`; the newest key whose `not_before`
//! has passed signs. Publish a new key with a future `not_before` first (verifiers cache JWKS),
//! and drop an old key once the tokens it signed have expired.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::Jwk};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{Secret, SigningKeyConfig};
use crate::domain::roles::Role;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The person's id.
    pub sub: Uuid,
    /// The account the session is for.
    pub acc: Uuid,
    /// The person's role in that account when the token was issued.
    pub role: String,
    /// The session id; revocation is per session.
    pub sid: Uuid,
    /// How the person authenticated (RFC 8176 values: `pwd`, `otp`, `mfa`, `fed`...).
    pub amr: Vec<String>,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// Not before: never set by this service, honoured when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// How far a token's `iat` or `nbf` may lie ahead of this replica's clock (clocks of replicas
/// differ a little); further, the token is refused.
pub const CLOCK_LEEWAY_SECONDS: i64 = 60;

/// What is to be put into a new access token.
#[derive(Debug, Clone)]
pub struct TokenSubject {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
    pub amr: Vec<String>,
    pub email: String,
}

/// Why a token was refused. Never carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed or its signature is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
}

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
    not_before: Option<DateTime<Utc>>,
}

/// The signing and verification keys, with the issuer, audience and lifetime of tokens.
pub struct KeySet {
    /// Newest first.
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl KeySet {
    pub fn new(
        configs: &[SigningKeyConfig],
        issuer: String,
        audience: String,
        ttl: Duration,
    ) -> Result<Self> {
        if configs.is_empty() {
            bail!(
                "no signing key is configured (IDENTITY_SIGNING_KEYS); `identity keygen` makes one"
            );
        }
        let mut keys = Vec::with_capacity(configs.len());
        for config in configs {
            if config.alg != "EdDSA" {
                bail!(
                    "signing key {:?}: alg must be EdDSA, not {:?}",
                    config.kid,
                    config.alg
                );
            }
            let alg = Algorithm::EdDSA;
            let pem = config.private_key_pem.expose();
            // Errors below name the key, never its material.
            let not_a_key = || {
                anyhow!(
                    "signing key {:?} is not a PKCS#8 PEM Ed25519 private key",
                    config.kid
                )
            };
            let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| not_a_key())?;
            let public = {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|_| not_a_key())?
                    .verifying_key()
            };
            let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
            let jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": x,
                "kid": config.kid,
                "alg": "EdDSA",
                "use": "sig",
            }))?;
            let decoding = DecodingKey::from_ed_components(&x)
                .with_context(|| format!("signing key {:?}: unusable public key", config.kid))?;
            if keys.iter().any(|k: &Key| k.kid == config.kid) {
                bail!("signing key id {:?} appears twice", config.kid);
            }
            keys.push(Key {
                kid: config.kid.clone(),
                alg,
                encoding,
                decoding,
                jwk,
                not_before: config.not_before,
            });
        }
        keys.sort_by_key(|key| std::cmp::Reverse(key.not_before));
        Ok(Self {
            keys,
            issuer,
            audience,
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for `subject`, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        subject: &TokenSubject,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>)> {
        self.issue_for(subject, now, self.ttl)
    }

    /// Signs an access token with an explicit lifetime.
    pub fn issue_for(
        &self,
        subject: &TokenSubject,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>)> {
        let key = self
            .keys
            .iter()
            .find(|key| key.not_before.is_none_or(|nb| nb <= now))
            .ok_or_else(|| anyhow!("no signing key is active yet"))?;
        let expires = now + chrono::Duration::from_std(ttl)?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id,
            acc: subject.account_id,
            role: subject.role.as_str().to_owned(),
            sid: subject.session_id,
            amr: subject.amr.clone(),
            email: subject.email.clone(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
            jti: Uuid::new_v4(),
            nbf: None,
        };
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)?;
        Ok((token, expires))
    }

    /// Verifies signature, issuer, audience and expiry (against the injected `now`).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        if header.alg != key.alg {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the injected clock, not the library's wall clock.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        // Issued in the future, or not valid yet: not a token to accept now.
        let latest = now.timestamp() + CLOCK_LEEWAY_SECONDS;
        if data.claims.iat > latest || data.claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// The public keys, for `GetJwks`.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.keys.iter().map(|k| k.jwk.clone()).collect()
    }

    /// The `iss` of the tokens this set signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWS algorithms of the published keys, each once.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algorithms: Vec<&'static str> = self
            .keys
            .iter()
            .map(|k| match k.alg {
                Algorithm::ES256 => "ES256",
                _ => "EdDSA",
            })
            .collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        algorithms
    }
}

/// A new Ed25519 signing key as a config entry (`identity keygen`, and the embedded mode's own key).
pub fn generate_ed25519(kid: &str) -> Result<SigningKeyConfig> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    // PKCS#8 v1 (RFC 8410: the private key alone), which every reader takes: OpenSSL 3 and
    // Python's `cryptography` refuse the v2 form with the public key that `SigningKey` writes.
    let pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| anyhow!("cannot encode the key: {e}"))?;
    Ok(SigningKeyConfig {
        kid: kid.to_owned(),
        alg: "EdDSA".to_owned(),
        private_key_pem: Secret::new(pem.as_str()),
        not_before: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> TokenSubject {
        TokenSubject {
            user_id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            role: Role::Developer,
            session_id: Uuid::now_v7(),
            amr: vec!["pwd".into()],
            email: "dev@example.com".into(),
        }
    }

    fn keyset(keys: Vec<SigningKeyConfig>) -> KeySet {
        KeySet::new(&keys, "iss".into(), "aud".into(), Duration::from_secs(900)).unwrap()
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let keys = keyset(vec![generate_ed25519("k1").unwrap()]);
        let now = Utc::now();
        let (token, exp) = keys.issue(&subject(), now).unwrap();
        assert_eq!((exp - now).num_seconds(), 900);
        let claims = keys.verify(&token, now).unwrap();
        assert_eq!(claims.role, "developer");
        assert_eq!(keys.verify(&token, exp), Err(TokenError::Expired));
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(keys.verify(&tampered, now), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_from_the_future_are_refused() {
        let keys = keyset(vec![generate_ed25519("k1").unwrap()]);
        let now = Utc::now();
        // Issued by a clock ten minutes ahead: refused; a few seconds ahead: accepted.
        let (ahead, _) = keys
            .issue(&subject(), now + chrono::Duration::minutes(10))
            .unwrap();
        assert_eq!(keys.verify(&ahead, now), Err(TokenError::Invalid));
        let (skewed, _) = keys
            .issue(&subject(), now + chrono::Duration::seconds(5))
            .unwrap();
        assert!(keys.verify(&skewed, now).is_ok());
        // A `nbf` ahead of the clock: refused until then.
        let key = &keys.keys[0];
        let mut claims = keys.verify(&skewed, now).unwrap();
        claims.nbf = Some((now + chrono::Duration::minutes(5)).timestamp());
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let later = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        assert_eq!(keys.verify(&later, now), Err(TokenError::Invalid));
        assert!(
            keys.verify(&later, now + chrono::Duration::minutes(5))
                .is_ok()
        );
    }

    #[test]
    fn newest_active_key_signs_and_all_are_published() {
        let now = Utc::now();
        let old = generate_ed25519("old").unwrap();
        let mut future = generate_ed25519("future").unwrap();
        future.not_before = Some(now + chrono::Duration::hours(1));
        let mut current = generate_ed25519("current").unwrap();
        current.not_before = Some(now - chrono::Duration::hours(1));
        let keys = keyset(vec![old, future, current]);
        let (token, _) = keys.issue(&subject(), now).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("current"));
        assert_eq!(keys.jwks().len(), 3);
        let (later, _) = keys
            .issue(&subject(), now + chrono::Duration::hours(2))
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&later).unwrap().kid.as_deref(),
            Some("future")
        );
    }

    #[test]
    fn tokens_of_another_key_set_are_refused() {
        let now = Utc::now();
        let a = keyset(vec![generate_ed25519("same").unwrap()]);
        let b = keyset(vec![generate_ed25519("same").unwrap()]);
        let (token, _) = a.issue(&subject(), now).unwrap();
        assert_eq!(b.verify(&token, now), Err(TokenError::Invalid));
    }
}
