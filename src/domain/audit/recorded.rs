//! The rules for the events the DAM records through RecordAuditEvents.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    MAX_FUTURE, MAX_LABEL_CHARS, MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS, MAX_PAST,
    whole_micros,
};

/// A dotted lowercase verb: 1 to 128 characters of `[a-z0-9_.]`.
pub fn action_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.len() > 128
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err("must be 1 to 128 characters of [a-z0-9_.], e.g. \"file.deleted\"".to_owned());
    }
    Ok(value.to_owned())
}

/// A target type or metadata key: 1 to 64 characters of `[a-z0-9_]`.
pub fn key_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 64 {
        return Err("must be 1 to 64 characters of [a-z0-9_]".to_owned());
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("must be 1 to 64 characters of [a-z0-9_]".to_owned());
    }
    Ok(value.to_owned())
}

/// A label of at most 256 characters.
pub fn label(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("must be at most {MAX_LABEL_CHARS} characters"));
    }
    Ok(value.to_owned())
}

/// An IP address in text form, or empty.
pub fn ip_address(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    value
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| "must be an IPv4 or IPv6 address".to_owned())
}

/// A recorded event's time: unset means `now`; at most 5 minutes ahead and 7 days back.
pub fn recorded_time(
    value: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let time = value.unwrap_or(now);
    if time > now + MAX_FUTURE {
        return Err("must be at most 5 minutes in the future".to_owned());
    }
    if time < now - MAX_PAST {
        return Err("must be at most 7 days in the past".to_owned());
    }
    Ok(whole_micros(time))
}

/// Metadata: at most 32 entries, keys of `[a-z0-9_]`, values of at most 1,024 characters. Each
/// problem is `(key or "", description)`.
pub fn metadata_problems(metadata: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if metadata.len() > MAX_METADATA_ENTRIES {
        problems.push((
            String::new(),
            format!("must have at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (key, value) in metadata {
        if let Err(description) = key_name(key) {
            problems.push((key.clone(), format!("key {description}")));
        } else if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            problems.push((
                key.clone(),
                format!("must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::audit::clip;

    #[test]
    fn recorded_fields_are_checked() {
        assert!(action_name("file.deleted").is_ok());
        assert!(action_name("File.Deleted").is_err());
        assert!(action_name("").is_err());
        assert!(key_name("file").is_ok());
        assert!(key_name("a.b").is_err());
        assert_eq!(ip_address("::1"), Ok("::1".to_owned()));
        assert!(ip_address("1.2.3").is_err());
        let now = Utc::now();
        assert!(recorded_time(Some(now + Duration::minutes(6)), now).is_err());
        assert!(recorded_time(Some(now - Duration::days(8)), now).is_err());
        assert!(recorded_time(None, now).is_ok());
        assert_eq!(clip("héllo", 2), "hé");
    }
}
