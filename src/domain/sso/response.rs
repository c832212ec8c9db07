//! A SAML response's verified content against what this service expects: who sent it, to whom,
//! when, in answer to which request. Plain functions of the facts, the settings and the time.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{CLOCK_SKEW, MAX_ASSERTION_ID_LEN, MAX_ASSERTION_LIFETIME, SsoSettings};
use crate::domain::error::{DomainError, reason};
use crate::domain::validate::{self, EmailAddress};

/// Why a SAML response was refused. The reason names the check; it goes to the audit log, and
/// the message to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not signed, or not by a configured certificate, or changed after it was signed.
    Signature,
    /// Signed or digested with SHA-1 or another algorithm not allowed.
    Algorithm,
    /// Not the shape of a response: not XML, a DTD, a comment, not exactly one assertion, an ID
    /// twice, an encrypted assertion.
    Shape,
    Issuer,
    Audience,
    Destination,
    Recipient,
    Expired,
    NotYetValid,
    InResponseTo,
    RelayState,
    Replay,
    Status,
    NameId,
}

impl Refusal {
    /// The audit log's name of the check.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Signature => "signature",
            Refusal::Algorithm => "algorithm",
            Refusal::Shape => "shape",
            Refusal::Issuer => "issuer",
            Refusal::Audience => "audience",
            Refusal::Destination => "destination",
            Refusal::Recipient => "recipient",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::InResponseTo => "in_response_to",
            Refusal::RelayState => "relay_state",
            Refusal::Replay => "replay",
            Refusal::Status => "status",
            Refusal::NameId => "name_id",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Signature => {
                "the SAML response is not signed by a configured certificate of the identity provider"
            }
            Refusal::Algorithm => {
                "the SAML response is signed with an algorithm that is not accepted (SHA-256 or stronger is required)"
            }
            Refusal::Shape => {
                "the SAML response is not a single-assertion response without DTDs, comments or repeated IDs"
            }
            Refusal::Issuer => "the SAML response comes from another identity provider",
            Refusal::Audience => "the SAML assertion is not addressed to this service provider",
            Refusal::Destination => "the SAML response is addressed to another ACS URL",
            Refusal::Recipient => "the SAML assertion's recipient is another ACS URL",
            Refusal::Expired => "the SAML assertion has expired",
            Refusal::NotYetValid => "the SAML assertion is not valid yet",
            Refusal::InResponseTo => {
                "the SAML response does not answer a pending login of this account"
            }
            Refusal::RelayState => "the relay state is not the one of this login",
            Refusal::Replay => "the SAML assertion was already used",
            Refusal::Status => "the identity provider did not authenticate the user",
            Refusal::NameId => "the SAML assertion's NameID is not an email address",
        }
    }
}

impl From<Refusal> for DomainError {
    fn from(refusal: Refusal) -> Self {
        DomainError::unauthenticated(reason::SAML_RESPONSE_INVALID, refusal.message())
    }
}

/// A SAML attribute of the assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAttribute {
    pub name: String,
    pub values: Vec<String>,
}

/// A bearer SubjectConfirmationData.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bearer {
    pub recipient: Option<String>,
    pub in_response_to: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_on_or_after: Option<DateTime<Utc>>,
}

/// What the signed part of a response says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    /// The signature covers the whole response, not only its assertion.
    pub response_signed: bool,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub status: Option<String>,
    pub response_issuer: Option<String>,
    pub assertion_id: String,
    pub issuer: Option<String>,
    pub issue_instant: Option<DateTime<Utc>>,
    pub name_id: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_on_or_after: Option<DateTime<Utc>>,
    /// Each AudienceRestriction's audiences; every one must name us.
    pub audiences: Vec<Vec<String>>,
    pub bearers: Vec<Bearer>,
    pub attributes: Vec<SamlAttribute>,
}

/// Who a response must come from and be addressed to, and when it is checked.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub now: DateTime<Utc>,
}

/// A response that passed every check of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub assertion_id: String,
    pub email: EmailAddress,
    /// The StartSsoLogin request answered, if any.
    pub in_response_to: Option<String>,
    /// Until when the assertion id must be remembered.
    pub remember_until: DateTime<Utc>,
    pub attributes: Vec<SamlAttribute>,
}

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// The checks of a response's content (the signature was checked before): status, destination,
/// issuer, audience, time, recipient, request, and the NameID.
pub fn check(facts: &ResponseFacts, expected: &Expected) -> Result<Accepted, Refusal> {
    let now = expected.now;
    if facts.assertion_id.is_empty() || facts.assertion_id.len() > MAX_ASSERTION_ID_LEN {
        return Err(Refusal::Shape);
    }
    if facts
        .status
        .as_deref()
        .is_some_and(|status| status != SUCCESS)
    {
        return Err(Refusal::Status);
    }
    match &facts.destination {
        Some(destination) if destination != expected.acs_url => {
            return Err(Refusal::Destination);
        }
        None if facts.response_signed => return Err(Refusal::Destination),
        _ => {}
    }
    let from_idp = |issuer: &Option<String>| {
        issuer
            .as_deref()
            .is_some_and(|issuer| issuer.trim() == expected.idp_entity_id)
    };
    if facts.response_issuer.is_some() && !from_idp(&facts.response_issuer) {
        return Err(Refusal::Issuer);
    }
    if !from_idp(&facts.issuer) {
        return Err(Refusal::Issuer);
    }
    if facts.audiences.is_empty()
        || !facts
            .audiences
            .iter()
            .all(|audiences| audiences.iter().any(|a| a.trim() == expected.sp_entity_id))
    {
        return Err(Refusal::Audience);
    }
    if facts.issue_instant.is_some_and(|t| t - CLOCK_SKEW > now)
        || facts.not_before.is_some_and(|t| t - CLOCK_SKEW > now)
    {
        return Err(Refusal::NotYetValid);
    }
    if facts.not_on_or_after.is_some_and(|t| t + CLOCK_SKEW <= now) {
        return Err(Refusal::Expired);
    }
    let bearer = bearer(facts, expected)?;
    let in_response_to = match (&facts.in_response_to, &bearer.in_response_to) {
        (Some(a), Some(b)) if a != b => return Err(Refusal::InResponseTo),
        (Some(id), _) | (None, Some(id)) => Some(id.clone()),
        (None, None) => None,
    };
    let email = facts
        .name_id
        .as_deref()
        .and_then(|name_id| validate::email(name_id.trim()).ok())
        .ok_or(Refusal::NameId)?;
    let ends = [facts.not_on_or_after, bearer.not_on_or_after];
    let remember_until = ends
        .into_iter()
        .flatten()
        .min()
        .map_or(now + MAX_ASSERTION_LIFETIME, |end| end + CLOCK_SKEW)
        .min(now + MAX_ASSERTION_LIFETIME);
    Ok(Accepted {
        assertion_id: facts.assertion_id.clone(),
        email,
        in_response_to,
        remember_until,
        attributes: facts.attributes.clone(),
    })
}

/// The bearer confirmation that lets the assertion in: for our ACS URL, with an end, within its
/// window. The refusal of the first one otherwise.
fn bearer<'a>(facts: &'a ResponseFacts, expected: &Expected) -> Result<&'a Bearer, Refusal> {
    let now = expected.now;
    let mut first = None;
    for bearer in &facts.bearers {
        let refusal = if bearer.recipient.as_deref().map(str::trim) != Some(expected.acs_url) {
            Refusal::Recipient
        } else if bearer.not_before.is_some_and(|t| t - CLOCK_SKEW > now) {
            Refusal::NotYetValid
        } else {
            match bearer.not_on_or_after {
                None => Refusal::Expired,
                Some(end) if end + CLOCK_SKEW <= now => Refusal::Expired,
                Some(_) => return Ok(bearer),
            }
        };
        first.get_or_insert(refusal);
    }
    Err(first.unwrap_or(Refusal::Recipient))
}

/// A remembered StartSsoLogin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub id: String,
    pub account_id: Uuid,
    pub relay_state_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// How a response relates to the logins this account started: it answers `request` (taken from
/// the store, so answered once), or it is IdP-initiated.
pub fn check_request(
    settings: &SsoSettings,
    accepted: &Accepted,
    request: Option<&PendingRequest>,
    relay_state_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    match (&accepted.in_response_to, request) {
        (None, _) if settings.allow_idp_initiated => Ok(()),
        (None, _) => Err(Refusal::InResponseTo),
        (Some(_), None) => Err(Refusal::InResponseTo),
        (Some(_), Some(request)) => {
            if request.account_id != settings.account_id || request.expires_at <= now {
                Err(Refusal::InResponseTo)
            } else if !bool::from(
                request
                    .relay_state_hash
                    .as_bytes()
                    .ct_eq(relay_state_hash.as_bytes()),
            ) {
                Err(Refusal::RelayState)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::roles::Role;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn good() -> ResponseFacts {
        ResponseFacts {
            response_signed: true,
            destination: Some("https://app/acs".into()),
            in_response_to: Some("_r1".into()),
            status: Some(SUCCESS.into()),
            response_issuer: Some("https://idp".into()),
            assertion_id: "_a1".into(),
            issuer: Some("https://idp".into()),
            issue_instant: Some(at(0)),
            name_id: Some("Ada@Example.com".into()),
            not_before: Some(at(-10)),
            not_on_or_after: Some(at(300)),
            audiences: vec![vec!["https://app/sp".into()]],
            bearers: vec![Bearer {
                recipient: Some("https://app/acs".into()),
                in_response_to: Some("_r1".into()),
                not_before: None,
                not_on_or_after: Some(at(300)),
            }],
            attributes: vec![],
        }
    }

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            idp_entity_id: "https://idp",
            sp_entity_id: "https://app/sp",
            acs_url: "https://app/acs",
            now: at(now),
        }
    }

    #[test]
    fn a_good_response_is_accepted_with_its_email_and_request() {
        let accepted = check(&good(), &expected(5)).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(accepted.email.key(), "ada@example.com");
        assert_eq!(accepted.in_response_to.as_deref(), Some("_r1"));
        assert_eq!(accepted.remember_until, at(360));
    }

    #[test]
    fn each_wrong_field_is_refused_by_its_check() {
        type Case = (fn(&mut ResponseFacts), Refusal);
        let cases: Vec<Case> = vec![
            (
                |f| f.status = Some("urn:oasis:names:tc:SAML:2.0:status:Requester".into()),
                Refusal::Status,
            ),
            (
                |f| f.destination = Some("https://evil/acs".into()),
                Refusal::Destination,
            ),
            (|f| f.destination = None, Refusal::Destination),
            (|f| f.issuer = Some("https://evil".into()), Refusal::Issuer),
            (|f| f.issuer = None, Refusal::Issuer),
            (
                |f| f.response_issuer = Some("https://evil".into()),
                Refusal::Issuer,
            ),
            (|f| f.audiences = vec![], Refusal::Audience),
            (
                |f| f.audiences = vec![vec!["https://app/sp".into()], vec!["https://other".into()]],
                Refusal::Audience,
            ),
            (|f| f.not_before = Some(at(100)), Refusal::NotYetValid),
            (|f| f.issue_instant = Some(at(100)), Refusal::NotYetValid),
            (|f| f.not_on_or_after = Some(at(-60)), Refusal::Expired),
            (
                |f| f.bearers[0].recipient = Some("https://evil/acs".into()),
                Refusal::Recipient,
            ),
            (|f| f.bearers[0].not_on_or_after = None, Refusal::Expired),
            (|f| f.bearers = vec![], Refusal::Recipient),
            (
                |f| f.bearers[0].in_response_to = Some("_other".into()),
                Refusal::InResponseTo,
            ),
            (
                |f| f.name_id = Some("victim@example.com<".into()),
                Refusal::NameId,
            ),
            (|f| f.name_id = None, Refusal::NameId),
        ];
        for (change, refusal) in cases {
            let mut facts = good();
            change(&mut facts);
            assert_eq!(check(&facts, &expected(5)), Err(refusal), "{facts:?}");
        }
    }

    #[test]
    fn the_skew_is_sixty_seconds_either_way() {
        assert!(check(&good(), &expected(359)).is_ok());
        assert_eq!(check(&good(), &expected(360)), Err(Refusal::Expired));
        let mut early = good();
        early.not_before = Some(at(60));
        assert!(check(&early, &expected(0)).is_ok());
        early.not_before = Some(at(61));
        assert_eq!(check(&early, &expected(0)), Err(Refusal::NotYetValid));
    }

    #[test]
    fn an_unsigned_response_shell_may_omit_its_destination() {
        let mut facts = good();
        facts.response_signed = false;
        facts.destination = None;
        assert!(check(&facts, &expected(5)).is_ok());
    }

    fn settings() -> SsoSettings {
        let mut s = SsoSettings::unconfigured(Uuid::nil());
        s.role_mapping = BTreeMap::from([("admins".to_owned(), Role::AccountAdministrator)]);
        s.default_role = Some(Role::MediaLibraryViewOnly);
        s
    }

    #[test]
    fn a_response_answers_a_live_request_of_its_account_with_its_relay_state() {
        let mut s = settings();
        let accepted = check(&good(), &expected(5)).unwrap_or_else(|r| panic!("{r:?}"));
        let request = PendingRequest {
            id: "_r1".into(),
            account_id: Uuid::nil(),
            relay_state_hash: "h".into(),
            expires_at: at(600),
        };
        assert_eq!(
            check_request(&s, &accepted, Some(&request), "h", at(5)),
            Ok(())
        );
        assert_eq!(
            check_request(&s, &accepted, Some(&request), "x", at(5)),
            Err(Refusal::RelayState)
        );
        assert_eq!(
            check_request(&s, &accepted, Some(&request), "h", at(600)),
            Err(Refusal::InResponseTo)
        );
        assert_eq!(
            check_request(&s, &accepted, None, "h", at(5)),
            Err(Refusal::InResponseTo)
        );
        let other = PendingRequest {
            account_id: Uuid::from_u128(7),
            ..request
        };
        assert_eq!(
            check_request(&s, &accepted, Some(&other), "h", at(5)),
            Err(Refusal::InResponseTo)
        );
        let unsolicited = Accepted {
            in_response_to: None,
            ..accepted
        };
        assert_eq!(
            check_request(&s, &unsolicited, None, "", at(5)),
            Err(Refusal::InResponseTo)
        );
        s.allow_idp_initiated = true;
        assert_eq!(check_request(&s, &unsolicited, None, "", at(5)), Ok(()));
    }
}
