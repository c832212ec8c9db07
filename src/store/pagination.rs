//! Keyset pagination: a page token is the last key of the previous page plus a fingerprint of the
//! request's filter, so page 1,000 costs what page 1 costs and a token cannot be replayed against
//! another filter.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::domain::error::{DomainError, DomainResult, reason};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// `page_size` as the API defines it: 0 means the default, more than the maximum is capped.
pub fn page_size(requested: i32) -> DomainResult<u64> {
    match requested {
        n if n < 0 => Err(DomainError::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// The fingerprint of a list request's filter (everything but the page size and token).
pub fn filter_fingerprint(parts: &[&str]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// The token that continues after `last_key`.
pub fn encode_token(fingerprint: [u8; 8], last_key: &str) -> String {
    let mut bytes = fingerprint.to_vec();
    bytes.extend_from_slice(last_key.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The last key a token continues after; `None` for the first page. A token of another filter
/// (or not one of ours) is `INVALID_ARGUMENT INVALID_PAGE_TOKEN`.
pub fn decode_token(token: &str, fingerprint: [u8; 8]) -> DomainResult<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        DomainError::invalid_with(
            reason::INVALID_PAGE_TOKEN,
            "page_token",
            "is not a token of this list with these filters; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() <= 8 || bytes[..8] != fingerprint {
        return Err(invalid());
    }
    String::from_utf8(bytes[8..].to_vec())
        .map(Some)
        .map_err(|_| invalid())
}

/// Splits a fetched page of `size + 1` rows into the page and the next token.
pub fn finish_page<T>(
    mut rows: Vec<T>,
    size: u64,
    fingerprint: [u8; 8],
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let more = rows.len() as u64 > size;
    rows.truncate(size as usize);
    let next = match (more, rows.last()) {
        (true, Some(last)) => encode_token(fingerprint, &key(last)),
        _ => String::new(),
    };
    (rows, next)
}

/// Rows after `(key, id)` in `(key_col, id_col)` order (before it when `descending`), written as
/// one row comparison, `(key_col, id_col) > (key, id)`: the database seeks to it on an index that
/// ends with the two columns, so a page deep in the list reads no more rows than the first.
pub fn keyset_after<K, I>(
    key_col: K,
    id_col: I,
    key: impl Into<sea_orm::Value>,
    id: uuid::Uuid,
    descending: bool,
) -> sea_orm::sea_query::Expr
where
    K: sea_orm::ColumnTrait,
    I: sea_orm::ColumnTrait,
{
    use sea_orm::sea_query::{Expr, ExprTrait};
    let columns = Expr::tuple([key_col.into_expr(), id_col.into_expr()]);
    let values = Expr::tuple([Expr::value(key), Expr::value(id)]);
    if descending {
        columns.lt(values)
    } else {
        columns.gt(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_belong_to_their_filter() {
        let a = filter_fingerprint(&["acct", "role=developer"]);
        let b = filter_fingerprint(&["acct", "role=finance"]);
        let token = encode_token(a, "0190-key");
        assert_eq!(
            decode_token(&token, a).unwrap().as_deref(),
            Some("0190-key")
        );
        assert!(matches!(
            decode_token(&token, b),
            Err(DomainError::InvalidArgument {
                reason: reason::INVALID_PAGE_TOKEN,
                ..
            })
        ));
        assert!(decode_token("%%%", a).is_err());
        assert_eq!(decode_token("", a).unwrap(), None);
    }

    #[test]
    fn pages_end_when_rows_run_out() {
        let f = filter_fingerprint(&[]);
        let (page, next) = finish_page(vec![1, 2, 3], 2, f, |n| n.to_string());
        assert_eq!(page, [1, 2]);
        assert_eq!(decode_token(&next, f).unwrap().as_deref(), Some("2"));
        let (page, next) = finish_page(vec![1, 2], 2, f, |n| n.to_string());
        assert_eq!(page, [1, 2]);
        assert!(next.is_empty());
    }
}
