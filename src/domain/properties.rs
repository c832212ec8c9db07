//! Properties of every input rule, over generated input: none panics, whatever it is given, and
//! what one accepts is what the contract says it accepts (trimmed, bounded, free of control and
//! bidirectional formatting characters) and is accepted again as it is.

use proptest::prelude::*;

use super::validate::{self, is_hidden_format};
use super::{groups, page, sharing};

/// Text as callers and attackers send it: any character, with the ones rules care about often.
pub(crate) fn text(max: usize) -> impl Strategy<Value = String> {
    let interesting = prop_oneof![
        4 => any::<char>(),
        2 => prop::char::range('a', 'z'),
        1 => Just('@'),
        1 => Just('.'),
        1 => Just(' '),
        1 => Just('-'),
        1 => Just('\0'),
        1 => Just('\n'),
        1 => Just('\u{202E}'),
        1 => Just('\u{2066}'),
        1 => Just('\u{200F}'),
        1 => Just('"'),
    ];
    prop::collection::vec(interesting, 0..max).prop_map(String::from_iter)
}

proptest! {
    // 2,000 cases each by default (a few seconds in all); PROPTEST_CASES runs more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
    ))]

    #[test]
    fn an_accepted_email_is_trimmed_bounded_plain_and_keyed_by_its_lower_case(value in text(300)) {
        if let Ok(address) = validate::email(&value) {
            prop_assert_eq!(address.address(), value.trim());
            prop_assert!(address.address().chars().count() <= validate::MAX_EMAIL_LEN);
            prop_assert!(!address.address().chars().any(is_hidden_format));
            prop_assert!(!address.address().chars().any(char::is_whitespace));
            prop_assert_eq!(address.key(), address.address().to_lowercase());
            prop_assert_eq!(validate::email(address.address()), Ok(address.clone()));
        }
    }

    #[test]
    fn ordinary_emails_are_accepted(
        local in "[a-zA-Z0-9._+-]{1,30}",
        host in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        tld in "[a-z]{2,10}",
    ) {
        let value = format!("{local}@{host}.{tld}");
        prop_assert!(validate::email(&value).is_ok(), "{}", value);
    }

    #[test]
    fn a_looked_up_email_is_lower_case_and_plain_or_matches_nobody(value in text(300)) {
        if let Ok(Some(key)) = validate::email_lookup(&value) {
            prop_assert_eq!(&key, &value.trim().to_lowercase());
            prop_assert!(!key.chars().any(is_hidden_format));
        }
        // Whatever `email` accepts, a login finds under the same key.
        if let Ok(address) = validate::email(&value) {
            let lookup = validate::email_lookup(&value);
            prop_assert_eq!(lookup, Ok(Some(address.key().to_owned())));
        }
    }

    #[test]
    fn an_accepted_name_is_trimmed_bounded_and_plain(value in text(200)) {
        match validate::name(&value) {
            Ok(name) => {
                prop_assert_eq!(name.as_str(), value.trim());
                prop_assert!((1..=validate::MAX_NAME_LEN).contains(&name.chars().count()));
                prop_assert!(!name.chars().any(is_hidden_format));
                prop_assert_eq!(validate::name(&name), Ok(name.clone()));
            }
            Err(_) => prop_assert!(
                value.trim().is_empty()
                    || value.trim().chars().count() > validate::MAX_NAME_LEN
                    || value.trim().chars().any(is_hidden_format)
            ),
        }
    }

    #[test]
    fn ids_are_exactly_uuids(value in prop_oneof![text(60), any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())]) {
        prop_assert_eq!(validate::id(&value).ok(), uuid::Uuid::parse_str(&value).ok().filter(|_| !value.is_empty()));
    }

    #[test]
    fn request_ids_are_short_and_plain(value in text(150)) {
        if let Ok(Some(id)) = validate::request_id(&value) {
            prop_assert_eq!(&id, &value);
            prop_assert!(id.len() <= validate::MAX_REQUEST_ID_LEN);
            prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)));
        }
    }

    #[test]
    fn etags_round_trip(version in any::<i64>(), value in text(30)) {
        prop_assert_eq!(validate::etag(&validate::etag_of(version)), Ok(Some(version)));
        let _ = validate::etag(&value);
    }

    #[test]
    fn group_names_are_short_plain_ascii_keyed_by_lower_case(value in text(100)) {
        if let Ok(name) = groups::name(&value) {
            prop_assert_eq!(name.name(), value.trim());
            prop_assert!((1..=groups::MAX_NAME_CHARS).contains(&name.name().len()));
            prop_assert!(name.name().chars().all(|c| c.is_ascii_alphanumeric() || c == ' '));
            prop_assert_eq!(name.key(), name.name().to_ascii_lowercase());
            // A prefix of a name finds it.
            let prefix = &name.key()[..name.key().len() / 2];
            prop_assert!(groups::prefix_key(prefix).is_some());
        }
    }

    #[test]
    fn descriptions_allow_only_line_breaks_and_tabs_among_controls(value in text(1030)) {
        if let Ok(description) = groups::description(&value) {
            prop_assert!(description.chars().count() <= groups::MAX_DESCRIPTION_CHARS);
            prop_assert!(description
                .chars()
                .all(|c| !is_hidden_format(c) || matches!(c, '\n' | '\r' | '\t')));
        }
    }

    #[test]
    fn page_sizes_are_refused_only_when_negative(requested in any::<i32>()) {
        match page::page_size(requested) {
            Ok(size) => {
                prop_assert!(requested >= 0);
                prop_assert!((1..=page::MAX_PAGE_SIZE).contains(&size));
            }
            Err(_) => prop_assert!(requested < 0),
        }
    }

    #[test]
    fn resource_ids_are_printable_ascii_of_bounded_length(value in text(300)) {
        match sharing::resource_id(&value) {
            Ok(id) => {
                prop_assert_eq!(&id, &value);
                prop_assert!((1..=sharing::MAX_RESOURCE_ID_LEN).contains(&id.len()));
                prop_assert!(id.bytes().all(|b| (0x20..0x7f).contains(&b)));
            }
            Err(_) => prop_assert!(
                value.is_empty()
                    || value.len() > sharing::MAX_RESOURCE_ID_LEN
                    || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
            ),
        }
    }
}
