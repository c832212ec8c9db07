//! Input rules shared by every service. Each returns the cleaned value or a description of what
//! is wrong, for `Violations::check`.

use uuid::Uuid;

pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_REQUEST_ID_LEN: usize = 100;

/// A required id.
pub fn id(value: &str) -> Result<Uuid, String> {
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    Uuid::parse_str(value).map_err(|_| "must be a UUID".to_owned())
}

/// A checked email address: as given (trimmed), and its lower-cased key, under which it is unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    address: String,
    key: String,
}

impl EmailAddress {
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// An email address: trimmed, at most 254 characters, `local@domain` with a dotted ASCII domain.
pub fn email(value: &str) -> Result<EmailAddress, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.chars().count() > MAX_EMAIL_LEN {
        return Err(format!("must be at most {MAX_EMAIL_LEN} characters"));
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err("must be an email address (name@example.com)".to_owned());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !is_hidden_format(c) && c != '"');
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !local_ok || !domain_ok {
        return Err("must be an email address (name@example.com)".to_owned());
    }
    Ok(EmailAddress {
        address: value.to_owned(),
        key: value.to_lowercase(),
    })
}

/// An email presented to be looked up (Login, RequestPasswordReset): trimmed and lower-cased,
/// required, at most 254 characters. `None` when it holds a control character (NUL, say), which
/// no stored address has (`email` refuses them): such an address matches nobody, and the
/// database is never asked about it.
pub fn email_lookup(value: &str) -> Result<Option<String>, String> {
    let key = value.trim().to_lowercase();
    if key.is_empty() {
        return Err("is required".to_owned());
    }
    if key.chars().count() > MAX_EMAIL_LEN {
        return Err(format!("must be at most {MAX_EMAIL_LEN} characters"));
    }
    Ok((!key.chars().any(is_hidden_format)).then_some(key))
}

/// A control character, or a bidirectional formatting character (U+061C, U+200E, U+200F,
/// U+202A to U+202E, U+2066 to U+2069), which can make text read other than it is ("Trojan
/// source"): an email, a name or a description shown to other people must hold none.
pub fn is_hidden_format(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A human name (display name, account name): trimmed, 1 to 128 characters, no control characters.
pub fn name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if value.chars().any(is_hidden_format) {
        return Err("must not contain control or bidirectional formatting characters".to_owned());
    }
    Ok(value.to_owned())
}

/// An optional idempotency key: empty, or up to 100 of `A-Z a-z 0-9 - _ . :`.
pub fn request_id(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_REQUEST_ID_LEN {
        return Err(format!("must be at most {MAX_REQUEST_ID_LEN} characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err("may contain only letters, digits and - _ . :".to_owned());
    }
    Ok(Some(value.to_owned()))
}

/// An etag as returned by this service: empty (no check) or a version number.
pub fn etag(value: &str) -> Result<Option<i64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .parse::<i64>()
        .map(Some)
        .map_err(|_| "is not an etag returned by this service".to_owned())
}

/// The etag of a resource at `version`.
pub fn etag_of(version: i64) -> String {
    version.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_checked_and_keyed_case_insensitively() {
        let address = email("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(address.address(), "Ada.Lovelace@Example.COM");
        assert_eq!(address.key(), "ada.lovelace@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@exa mple.com",
            "a b@example.com",
            "ada@-x.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn looked_up_emails_with_control_characters_match_nobody() {
        assert_eq!(
            email_lookup(" Ada@Example.com ").unwrap().as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(email_lookup("a\u{0}b@example.com").unwrap(), None);
        assert_eq!(email_lookup("a\u{7}@example.com").unwrap(), None);
        assert!(email_lookup("  ").is_err());
        assert!(email_lookup(&"a".repeat(255)).is_err());
    }

    #[test]
    fn names_and_ids() {
        assert_eq!(name("  Ada ").unwrap(), "Ada");
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(129)).is_err());
        assert!(name(&"x".repeat(128)).is_ok());
        assert!(name("a\u{0007}").is_err());
        // Bidirectional formatting characters reorder what people read.
        for hidden in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{061C}',
        ] {
            assert!(name(&format!("Ada{hidden}evil")).is_err(), "{hidden:?}");
            assert!(
                email(&format!("ada{hidden}@example.com")).is_err(),
                "{hidden:?}"
            );
        }
        assert!(name("Zoë Ω 李").is_ok());
        assert!(id("").is_err());
        assert!(id("42").is_err());
        assert!(id(&Uuid::now_v7().to_string()).is_ok());
    }

    #[test]
    fn request_ids_and_etags() {
        assert_eq!(request_id("").unwrap(), None);
        assert_eq!(request_id("abc-1").unwrap().as_deref(), Some("abc-1"));
        assert!(request_id("a b").is_err());
        assert!(request_id(&"a".repeat(101)).is_err());
        assert_eq!(etag("").unwrap(), None);
        assert_eq!(etag(&etag_of(7)).unwrap(), Some(7));
        assert_eq!(etag("\"7\"").unwrap(), Some(7));
        assert!(etag("W/abc").is_err());
    }
}
