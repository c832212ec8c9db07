//! Keyset pages, and the one page-token format of every list.
//!
//! A token carries where the next page starts (the last row's sort key and id), bound to the list
//! and its filters and authenticated with the service's secret key: a token is refused when it was
//! not made by this service, or was made for another list or other filters. Page 1,000 costs what
//! page 1 costs, since the store seeks to the position.
//!
//! Layout, base64url without padding: version (1 byte) | id (16 bytes) | sort key (UTF-8) | tag
//! (the first 16 bytes of HMAC-SHA256 over the filter and everything before the tag).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::error::{DomainError, DomainResult, reason};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

/// `page_size` as the API defines it: 0 means the default, more than the maximum is capped.
pub fn page_size(requested: i32) -> Result<u64, String> {
    match requested {
        n if n < 0 => Err("must not be negative".to_owned()),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// Where a page starts: after the row with this sort key and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub key: String,
    pub id: Uuid,
}

/// One page of a list and the token of the next one (empty on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// A list request's identity: the RPC and every filter (not the page size or token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery(Vec<String>);

impl ListQuery {
    pub fn new(list: &str, filters: &[&str]) -> Self {
        let mut parts = vec![list.to_owned()];
        parts.extend(filters.iter().map(|f| (*f).to_owned()));
        Self(parts)
    }
}

/// Makes and reads page tokens with the service's secret key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

impl PageTokens {
    /// `secret` is the service's secret key; the tokens' key is derived from it, so it serves no
    /// other purpose.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = mac(secret);
        mac.update(b"identity page tokens v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn tag(&self, query: &ListQuery, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = mac(&self.key);
        for part in &query.0 {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(body);
        mac
    }

    /// The token that continues `query` after `after`.
    pub fn encode(&self, query: &ListQuery, after: &After) -> String {
        let mut bytes = Vec::with_capacity(1 + 16 + after.key.len() + TAG_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(after.id.as_bytes());
        bytes.extend_from_slice(after.key.as_bytes());
        let tag = self.tag(query, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where `token` continues `query`; `None` for the first page (an empty token). A token not
    /// made by this service for this query is `INVALID_ARGUMENT INVALID_PAGE_TOKEN`.
    pub fn decode(&self, query: &ListQuery, token: &str) -> DomainResult<Option<After>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() < 1 + 16 + TAG_LEN || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        self.tag(query, body)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        let id = Uuid::from_slice(&body[1..17]).map_err(|_| invalid())?;
        let key = String::from_utf8(body[17..].to_vec()).map_err(|_| invalid())?;
        Ok(Some(After { key, id }))
    }

    /// Splits `size + 1` fetched rows into the page and the token of the next one.
    pub fn page<T>(
        &self,
        query: &ListQuery,
        mut rows: Vec<T>,
        size: u64,
        position: impl Fn(&T) -> After,
    ) -> Page<T> {
        let more = rows.len() as u64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => self.encode(query, &position(last)),
            _ => String::new(),
        };
        Page {
            items: rows,
            next_page_token,
        }
    }
}

/// HMAC-SHA256 keyed with `key`.
pub(super) fn mac(key: &[u8]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => unreachable_hmac(),
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 accepts keys of any length")
}

fn invalid() -> DomainError {
    DomainError::invalid_with(
        reason::INVALID_PAGE_TOKEN,
        "page_token",
        "is not a token of this list with these filters; start again without it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(&[7; 32])
    }

    fn after(key: &str) -> After {
        After {
            key: key.to_owned(),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_within_their_query() {
        let query = ListQuery::new("ListUsers", &["acct", "role=developer"]);
        let position = after("ada@example.com");
        let token = tokens().encode(&query, &position);
        assert_eq!(tokens().decode(&query, &token).unwrap(), Some(position));
        assert_eq!(tokens().decode(&query, "").unwrap(), None);
    }

    #[test]
    fn tokens_of_other_queries_keys_or_bytes_are_refused() {
        let query = ListQuery::new("ListUsers", &["acct", "role=developer"]);
        let token = tokens().encode(&query, &after("k"));
        let other = ListQuery::new("ListUsers", &["acct", "role=finance"]);
        let invalid = |result: DomainResult<Option<After>>| {
            matches!(
                result,
                Err(DomainError::InvalidArgument {
                    reason: reason::INVALID_PAGE_TOKEN,
                    ..
                })
            )
        };
        assert!(invalid(tokens().decode(&other, &token)));
        assert!(invalid(PageTokens::new(&[8; 32]).decode(&query, &token)));
        assert!(invalid(tokens().decode(&query, "%%%")));
        assert!(invalid(tokens().decode(&query, "AAAA")));
        // One flipped bit anywhere breaks the tag.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[20] ^= 1;
        assert!(invalid(
            tokens().decode(&query, &URL_SAFE_NO_PAD.encode(bytes))
        ));
    }

    #[test]
    fn pages_end_when_rows_run_out() {
        let query = ListQuery::new("L", &[]);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let position = |id: &Uuid| After {
            key: String::new(),
            id: *id,
        };
        let page = tokens().page(&query, ids.clone(), 2, position);
        assert_eq!(page.items, ids[..2]);
        let next = tokens().decode(&query, &page.next_page_token).unwrap();
        assert_eq!(next.map(|a| a.id), Some(ids[1]));
        let last = tokens().page(&query, ids[..2].to_vec(), 2, position);
        assert!(last.next_page_token.is_empty());
    }
}
