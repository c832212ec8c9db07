//! SAML single sign-on: an account's identity provider settings and the rules of changing them,
//! and what a verified response must say before it logs anyone in.
//!
//! The XML and its signatures are read elsewhere (`auth::saml`); what arrives here is the content
//! that signature covered, as plain facts, and the checks over them are plain functions of those
//! facts, the settings and the time.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{DomainError, DomainResult, Violations, reason};
use super::roles::Role;
use super::validate::{self, EmailAddress};

/// How long a StartSsoLogin request may be answered.
pub const REQUEST_TTL: Duration = Duration::minutes(10);
/// The clock difference allowed between the identity provider and this service.
pub const CLOCK_SKEW: Duration = Duration::seconds(60);
/// The longest an assertion id is remembered when the assertion sets no shorter end.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::hours(24);
pub const MAX_CERTIFICATES: usize = 5;
pub const MAX_MAPPINGS: usize = 64;
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 256;
pub const MAX_ENTITY_ID_LEN: usize = 1024;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// The largest SAMLResponse accepted, as posted (base64).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The SAML bindings' limit on RelayState.
pub const MAX_RELAY_STATE_BYTES: usize = 80;
/// The attribute read for the display name when none is configured.
pub const DEFAULT_DISPLAY_NAME_ATTRIBUTE: &str = "displayName";

/// Our service provider entity id for the account: `<public URL>/sso/saml/<account id>`.
pub fn sp_entity_id(public_url: &str, account_id: Uuid) -> String {
    format!("{}/sso/saml/{account_id}", public_url.trim_end_matches('/'))
}

/// Our Assertion Consumer Service URL for the account: the entity id followed by `/acs`.
pub fn acs_url(public_url: &str, account_id: Uuid) -> String {
    format!("{}/acs", sp_entity_id(public_url, account_id))
}

/// The longest assertion id remembered.
pub const MAX_ASSERTION_ID_LEN: usize = 256;

/// A certificate that may sign an identity provider's responses, with what the administrator is
/// shown of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpCertificate {
    pub pem: String,
    pub subject: String,
    pub sha256_fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// What an identity provider's metadata document says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_url: String,
    pub certificates: Vec<IdpCertificate>,
}

/// The usual attribute names of a kind of identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    EntraId,
    Okta,
    AdFs,
}

const MS_ROLE_CLAIM: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::EntraId, Preset::Okta, Preset::AdFs];

    /// The display name attribute and the role attribute.
    pub fn attributes(self) -> (&'static str, &'static str) {
        match self {
            Preset::EntraId => (
                "http://schemas.microsoft.com/identity/claims/displayname",
                MS_ROLE_CLAIM,
            ),
            Preset::Okta => ("displayName", "role"),
            Preset::AdFs => (
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                MS_ROLE_CLAIM,
            ),
        }
    }
}

/// An account's SAML settings. An account that never configured SSO has the `unconfigured` ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSettings {
    pub account_id: Uuid,
    pub enabled: bool,
    pub idp_metadata_xml: Option<String>,
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    pub idp_certificates: Vec<IdpCertificate>,
    pub display_name_attribute: String,
    pub role_attribute: String,
    /// Keys in lower case.
    pub role_mapping: BTreeMap<String, Role>,
    pub default_role: Option<Role>,
    pub allow_idp_initiated: bool,
    /// Moved on by every change; the etag. 0 before the first.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl SsoSettings {
    pub fn unconfigured(account_id: Uuid) -> Self {
        Self {
            account_id,
            enabled: false,
            idp_metadata_xml: None,
            idp_entity_id: String::new(),
            idp_sso_url: String::new(),
            idp_certificates: Vec::new(),
            display_name_attribute: String::new(),
            role_attribute: String::new(),
            role_mapping: BTreeMap::new(),
            default_role: None,
            allow_idp_initiated: false,
            version: 0,
            updated_at: None,
        }
    }

    /// The preset whose names the two attributes hold.
    pub fn preset(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|preset| {
            preset.attributes()
                == (
                    self.display_name_attribute.as_str(),
                    self.role_attribute.as_str(),
                )
        })
    }

    /// What enabling still lacks, by field name.
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.idp_entity_id.is_empty() {
            missing.push("idp_entity_id");
        }
        if self.idp_sso_url.is_empty() {
            missing.push("idp_sso_url");
        }
        if self.idp_certificates.is_empty() {
            missing.push("idp_certificates");
        }
        if self.default_role.is_none() {
            missing.push("default_role");
        }
        missing
    }

    /// The role a login gives for the role attribute's `values`: the mapped role that comes first
    /// in the role order, or the default role.
    pub fn role_for(&self, values: &[String]) -> Option<Role> {
        values
            .iter()
            .filter_map(|value| self.role_mapping.get(&value.trim().to_lowercase()))
            .min()
            .copied()
            .or(self.default_role)
    }

    /// The display name a login gives: the configured attribute's first usable value, else the
    /// email's local part.
    pub fn display_name_for(&self, attributes: &[SamlAttribute], email: &EmailAddress) -> String {
        let wanted = if self.display_name_attribute.is_empty() {
            DEFAULT_DISPLAY_NAME_ATTRIBUTE
        } else {
            &self.display_name_attribute
        };
        attribute_values(attributes, wanted)
            .iter()
            .find_map(|value| validate::name(value).ok())
            .unwrap_or_else(|| super::users::default_display_name(email))
    }

    /// The audit log's account of a change from `self` to `after`: each field that differs, with
    /// certificates by fingerprint and the mapping as `value=role` pairs.
    pub fn changes_to(&self, after: &SsoSettings) -> Vec<(&'static str, String, String)> {
        let certificates = |s: &SsoSettings| {
            s.idp_certificates
                .iter()
                .map(|c| c.sha256_fingerprint.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mapping = |s: &SsoSettings| {
            s.role_mapping
                .iter()
                .map(|(value, role)| format!("{value}={}", role.as_str()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let role = |s: &SsoSettings| s.default_role.map(Role::as_str).unwrap_or("").to_owned();
        [
            (
                "sso.enabled",
                self.enabled.to_string(),
                after.enabled.to_string(),
            ),
            (
                "sso.idp_entity_id",
                self.idp_entity_id.clone(),
                after.idp_entity_id.clone(),
            ),
            (
                "sso.idp_sso_url",
                self.idp_sso_url.clone(),
                after.idp_sso_url.clone(),
            ),
            (
                "sso.idp_certificates",
                certificates(self),
                certificates(after),
            ),
            (
                "sso.display_name_attribute",
                self.display_name_attribute.clone(),
                after.display_name_attribute.clone(),
            ),
            (
                "sso.role_attribute",
                self.role_attribute.clone(),
                after.role_attribute.clone(),
            ),
            ("sso.role_mapping", mapping(self), mapping(after)),
            ("sso.default_role", role(self), role(after)),
            (
                "sso.allow_idp_initiated",
                self.allow_idp_initiated.to_string(),
                after.allow_idp_initiated.to_string(),
            ),
        ]
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .collect()
    }
}

/// The values of the attribute `name` (several attributes of one name add up).
pub fn attribute_values<'a>(attributes: &'a [SamlAttribute], name: &str) -> Vec<&'a String> {
    attributes
        .iter()
        .filter(|attribute| attribute.name == name)
        .flat_map(|attribute| attribute.values.iter())
        .collect()
}

/// An update of the settings: each field present is a path of the update mask. Metadata and
/// certificates arrive read (`auth::saml` parses them).
#[derive(Debug, Clone, Default)]
pub struct SsoChange {
    pub enabled: Option<bool>,
    pub metadata: Option<(String, IdpMetadata)>,
    pub idp_entity_id: Option<String>,
    pub idp_sso_url: Option<String>,
    pub idp_certificates: Option<Vec<IdpCertificate>>,
    pub display_name_attribute: Option<String>,
    pub role_attribute: Option<String>,
    pub role_mapping: Option<BTreeMap<String, Role>>,
    pub default_role: Option<Role>,
    pub allow_idp_initiated: Option<bool>,
    pub preset: Option<Preset>,
}

impl SsoSettings {
    /// The settings after `change`: the metadata's values first, then the paths named on their
    /// own, then the preset for the attribute names not named. Enabled settings must be complete.
    pub fn apply(&self, change: SsoChange, now: DateTime<Utc>) -> DomainResult<SsoSettings> {
        let mut next = self.clone();
        if let Some((xml, metadata)) = change.metadata {
            next.idp_metadata_xml = Some(xml);
            next.idp_entity_id = metadata.entity_id;
            next.idp_sso_url = metadata.sso_url;
            next.idp_certificates = metadata.certificates;
        }
        if let Some(preset) = change.preset {
            let (display_name, role) = preset.attributes();
            next.display_name_attribute = display_name.to_owned();
            next.role_attribute = role.to_owned();
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = change.$field {
                    next.$field = value;
                }
            )*};
        }
        set!(
            enabled,
            idp_entity_id,
            idp_sso_url,
            idp_certificates,
            display_name_attribute,
            role_attribute,
            role_mapping,
            allow_idp_initiated
        );
        if let Some(role) = change.default_role {
            next.default_role = Some(role);
        }
        if next.enabled {
            let missing = next.missing();
            if !missing.is_empty() {
                return Err(DomainError::FailedPrecondition {
                    reason: reason::SSO_CONFIGURATION_INCOMPLETE,
                    message: format!("SSO cannot be enabled without {}", missing.join(", ")),
                });
            }
        }
        next.version = self.version + 1;
        next.updated_at = Some(now);
        Ok(next)
    }
}

/// Checks an entity id as given by an administrator.
pub fn entity_id(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > MAX_ENTITY_ID_LEN {
        return Err(format!("must be at most {MAX_ENTITY_ID_LEN} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(value.to_owned())
}

/// Checks the identity provider's SSO URL: https, or http on a loopback address for a development
/// identity provider.
pub fn sso_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let rest = if let Some(rest) = value.strip_prefix("https://") {
        rest
    } else if let Some(rest) = value.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err("must be an https URL".to_owned());
        }
        rest
    } else {
        return Err("must be an https URL".to_owned());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("is not a valid URL".to_owned());
    }
    Ok(value.to_owned())
}

/// Checks an attribute name (empty clears it).
pub fn attribute_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() > MAX_ATTRIBUTE_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_ATTRIBUTE_NAME_LEN} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(value.to_owned())
}

/// Whether SSO may give `role`: every role but the restricted one, which administrators give.
pub fn mappable(role: Role) -> Result<Role, String> {
    if role == Role::MediaLibraryRestricted {
        return Err("must not be ROLE_MEDIA_LIBRARY_RESTRICTED".to_owned());
    }
    Ok(role)
}

/// Checks a role mapping, reporting each bad entry as `field[key]`.
pub fn role_mapping(
    v: &mut Violations,
    field: &str,
    entries: impl IntoIterator<Item = (String, Option<Role>)>,
) -> Option<BTreeMap<String, Role>> {
    let mut mapping = BTreeMap::new();
    let mut ok = true;
    for (key, role) in entries {
        let path = format!("{field}[{key}]");
        let trimmed = key.trim().to_lowercase();
        if trimmed.is_empty() || trimmed.len() > MAX_ATTRIBUTE_NAME_LEN {
            v.add(
                &path,
                format!("keys must be 1 to {MAX_ATTRIBUTE_NAME_LEN} characters"),
            );
            ok = false;
            continue;
        }
        match role.ok_or_else(|| "must not be ROLE_UNSPECIFIED".to_owned()) {
            Ok(role) => match mappable(role) {
                Ok(role) => {
                    if mapping.insert(trimmed, role).is_some() {
                        v.add(&path, "repeats a key (keys are compared ignoring case)");
                        ok = false;
                    }
                }
                Err(e) => {
                    v.add(&path, e);
                    ok = false;
                }
            },
            Err(e) => {
                v.add(&path, e);
                ok = false;
            }
        }
    }
    if mapping.len() > MAX_MAPPINGS {
        v.add(field, format!("must have at most {MAX_MAPPINGS} entries"));
        ok = false;
    }
    ok.then_some(mapping)
}

/// Checks the default role.
pub fn default_role(role: Option<Role>) -> Result<Role, String> {
    match role {
        None => Err("must be a role".to_owned()),
        Some(Role::AccountAdministrator) => {
            Err("must not be ROLE_ACCOUNT_ADMINISTRATOR".to_owned())
        }
        Some(role) => mappable(role),
    }
}

mod response;

pub use response::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn settings() -> SsoSettings {
        let mut s = SsoSettings::unconfigured(Uuid::nil());
        s.role_mapping = BTreeMap::from([
            ("editors".to_owned(), Role::MediaLibraryFullAccess),
            ("admins".to_owned(), Role::AccountAdministrator),
        ]);
        s.default_role = Some(Role::MediaLibraryViewOnly);
        s
    }

    #[test]
    fn the_most_capable_mapped_role_wins_and_the_default_fills_in() {
        let s = settings();
        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            s.role_for(&values(&["Editors", "ADMINS"])),
            Some(Role::AccountAdministrator)
        );
        assert_eq!(
            s.role_for(&values(&[" editors "])),
            Some(Role::MediaLibraryFullAccess)
        );
        assert_eq!(
            s.role_for(&values(&["others"])),
            Some(Role::MediaLibraryViewOnly)
        );
        assert_eq!(s.role_for(&[]), Some(Role::MediaLibraryViewOnly));
    }

    #[test]
    fn enabling_needs_every_part_and_presets_fill_the_attributes() {
        let s = SsoSettings::unconfigured(Uuid::nil());
        let err = s
            .apply(
                SsoChange {
                    enabled: Some(true),
                    ..SsoChange::default()
                },
                at(0),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("idp_entity_id, idp_sso_url, idp_certificates, default_role"),
            "{err}"
        );
        let next = s
            .apply(
                SsoChange {
                    preset: Some(Preset::AdFs),
                    role_attribute: Some("groups".to_owned()),
                    ..SsoChange::default()
                },
                at(0),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next.display_name_attribute, Preset::AdFs.attributes().0);
        assert_eq!(next.role_attribute, "groups");
        assert_eq!(next.preset(), None);
        assert_eq!(next.version, 1);
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        assert!(sso_url("https://idp.example.com/sso").is_ok());
        assert!(sso_url("http://127.0.0.1:8080/sso").is_ok());
        assert!(sso_url("http://localhost/sso").is_ok());
        assert!(sso_url("http://[::1]:9/sso").is_ok());
        assert!(sso_url("http://idp.example.com/sso").is_err());
        assert!(sso_url("http://127.0.0.1.evil.test/sso").is_err());
        assert!(sso_url("http://127.0.0.1@evil.test/sso").is_err());
        assert!(sso_url("ftp://idp/sso").is_err());
        assert!(sso_url("https:///sso").is_err());
    }
}
