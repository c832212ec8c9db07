//! Consistency tokens (Zanzibar's zookies): an account's access revision after a write, bound
//! to the account and authenticated with the service's secret key. A check carrying one is
//! answered from data at least that fresh; a token not made by this service, or made for
//! another account, is refused.
//!
//! Layout, base64url without padding: version (1 byte) | account id (16) | revision (8, big
//! endian) | tag (the first 16 bytes of HMAC-SHA256 over everything before it).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::Mac;
use uuid::Uuid;

use super::error::{DomainError, DomainResult, reason};
use super::page::mac;

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 8;
const TAG_LEN: usize = 16;

/// Makes and reads consistency tokens with a key derived from the service's secret key.
#[derive(Clone)]
pub struct ConsistencyTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for ConsistencyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsistencyTokens(..)")
    }
}

impl ConsistencyTokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut derive = mac(secret);
        derive.update(b"identity consistency tokens v1");
        Self {
            key: derive.finalize().into_bytes().to_vec(),
        }
    }

    /// The token of `revision` of `account_id`.
    pub fn encode(&self, account_id: Uuid, revision: i64) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + TAG_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(account_id.as_bytes());
        bytes.extend_from_slice(&revision.to_be_bytes());
        let mut tag = mac(&self.key);
        tag.update(&bytes);
        bytes.extend_from_slice(&tag.finalize().into_bytes()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The revision `token` names for `account_id`: `None` for an empty token. `field` is the
    /// request's field, for the violation.
    pub fn decode(&self, account_id: Uuid, token: &str, field: &str) -> DomainResult<Option<i64>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || invalid(field);
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != BODY_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut check = mac(&self.key);
        check.update(body);
        check.verify_truncated_left(tag).map_err(|_| invalid())?;
        if body[1..17] != account_id.as_bytes()[..] {
            return Err(invalid());
        }
        let mut revision = [0u8; 8];
        revision.copy_from_slice(&body[17..25]);
        Ok(Some(i64::from_be_bytes(revision)))
    }
}

fn invalid(field: &str) -> DomainError {
    DomainError::invalid_with(
        reason::CONSISTENCY_TOKEN_INVALID,
        field,
        "is not a consistency token of this account",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: Uuid = Uuid::from_u128(7);

    #[test]
    fn a_token_reads_back_for_its_account_only() {
        let tokens = ConsistencyTokens::new(b"secret");
        let token = tokens.encode(ACCOUNT, 42);
        assert_eq!(tokens.decode(ACCOUNT, &token, "t").ok(), Some(Some(42)));
        assert_eq!(tokens.decode(ACCOUNT, "", "t").ok(), Some(None));
        let other = tokens.decode(Uuid::from_u128(8), &token, "t");
        assert!(matches!(
            other,
            Err(DomainError::InvalidArgument {
                reason: reason::CONSISTENCY_TOKEN_INVALID,
                ..
            })
        ));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let tokens = ConsistencyTokens::new(b"secret");
        let forged = ConsistencyTokens::new(b"other").encode(ACCOUNT, 42);
        let mut bytes = URL_SAFE_NO_PAD
            .decode(tokens.encode(ACCOUNT, 42))
            .unwrap_or_default();
        bytes[20] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        for bad in [forged.as_str(), tampered.as_str(), "42", "!!", "AAAA"] {
            assert!(tokens.decode(ACCOUNT, bad, "t").is_err(), "{bad}");
        }
    }
}
