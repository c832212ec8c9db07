//! `SsoSettings` in and out: the paths of an update read into a domain change (metadata and
//! certificates parsed, every bad field reported at once), and the settings with our service
//! provider's side for the administrator.

use crate::app::sso::SsoView;
use crate::auth::saml;
use crate::domain::error::Violations;
use crate::domain::sso::{self as rules, MAX_CERTIFICATES, Preset, SsoChange};
use crate::domain::validate;
use crate::proto;

use super::convert;

/// The `update_mask` paths of UpdateSsoSettings.
pub const PATHS: &[&str] = &[
    "enabled",
    "idp_metadata_xml",
    "idp_entity_id",
    "idp_sso_url",
    "idp_certificates",
    "display_name_attribute",
    "role_attribute",
    "role_mapping",
    "default_role",
    "allow_idp_initiated",
    "attribute_preset",
];

fn preset_to_proto(preset: Option<Preset>) -> proto::SsoAttributePreset {
    match preset {
        None => proto::SsoAttributePreset::Unspecified,
        Some(Preset::EntraId) => proto::SsoAttributePreset::EntraId,
        Some(Preset::Okta) => proto::SsoAttributePreset::Okta,
        Some(Preset::AdFs) => proto::SsoAttributePreset::AdFs,
    }
}

fn preset_from_proto(value: i32) -> Result<Preset, String> {
    match proto::SsoAttributePreset::try_from(value) {
        Ok(proto::SsoAttributePreset::EntraId) => Ok(Preset::EntraId),
        Ok(proto::SsoAttributePreset::Okta) => Ok(Preset::Okta),
        Ok(proto::SsoAttributePreset::AdFs) => Ok(Preset::AdFs),
        Ok(proto::SsoAttributePreset::Unspecified) => Err("is required".to_owned()),
        Err(_) => Err(format!("{value} is not a known preset")),
    }
}

/// The domain change the named `paths` ask for.
pub fn change(v: &mut Violations, paths: &[String], input: proto::SsoSettings) -> SsoChange {
    let field = |name: &str| format!("sso_settings.{name}");
    let mut change = SsoChange::default();
    for path in paths {
        match path.as_str() {
            "enabled" => change.enabled = Some(input.enabled),
            "allow_idp_initiated" => change.allow_idp_initiated = Some(input.allow_idp_initiated),
            "idp_metadata_xml" => {
                let xml = input.idp_metadata_xml.trim().to_owned();
                change.metadata = v
                    .check(&field(path), saml::metadata(&xml))
                    .map(|metadata| (xml, metadata));
            }
            "idp_entity_id" => {
                change.idp_entity_id =
                    v.check(&field(path), rules::entity_id(&input.idp_entity_id));
            }
            "idp_sso_url" => {
                change.idp_sso_url = v.check(&field(path), rules::sso_url(&input.idp_sso_url));
            }
            "idp_certificates" => {
                if input.idp_certificates.len() > MAX_CERTIFICATES {
                    v.add(
                        field(path),
                        format!("must have at most {MAX_CERTIFICATES} certificates"),
                    );
                    continue;
                }
                let certificates: Vec<_> = input
                    .idp_certificates
                    .iter()
                    .enumerate()
                    .map(|(i, pem)| {
                        v.check(&format!("{}[{i}]", field(path)), saml::certificate(pem))
                    })
                    .collect();
                change.idp_certificates = certificates.into_iter().collect();
            }
            "display_name_attribute" => {
                change.display_name_attribute = v.check(
                    &field(path),
                    rules::attribute_name(&input.display_name_attribute),
                );
            }
            "role_attribute" => {
                change.role_attribute =
                    v.check(&field(path), rules::attribute_name(&input.role_attribute));
            }
            "role_mapping" => {
                let entries = input
                    .role_mapping
                    .iter()
                    .map(|(key, role)| (key.clone(), convert::role_from_proto(*role).ok()));
                change.role_mapping = rules::role_mapping(v, &field(path), entries);
            }
            "default_role" => {
                change.default_role = v.check(
                    &field(path),
                    rules::default_role(convert::role_from_proto(input.default_role).ok()),
                );
            }
            "attribute_preset" => {
                // The domain applies it before the attribute paths named alongside it.
                change.preset = v.check(&field(path), preset_from_proto(input.attribute_preset));
            }
            _ => {}
        }
    }
    change
}

/// The settings as the administrator sees them.
pub fn settings(view: &SsoView) -> proto::SsoSettings {
    let s = &view.settings;
    proto::SsoSettings {
        account_id: s.account_id.to_string(),
        enabled: s.enabled,
        idp_metadata_xml: s.idp_metadata_xml.clone().unwrap_or_default(),
        idp_entity_id: s.idp_entity_id.clone(),
        idp_sso_url: s.idp_sso_url.clone(),
        idp_certificates: s.idp_certificates.iter().map(|c| c.pem.clone()).collect(),
        display_name_attribute: s.display_name_attribute.clone(),
        role_attribute: s.role_attribute.clone(),
        role_mapping: s
            .role_mapping
            .iter()
            .map(|(value, role)| (value.clone(), convert::role_to_proto(*role) as i32))
            .collect(),
        default_role: s
            .default_role
            .map_or(proto::Role::Unspecified, convert::role_to_proto) as i32,
        sp_entity_id: view.sp_entity_id.clone(),
        sp_acs_url: view.sp_acs_url.clone(),
        sp_metadata_xml: view.sp_metadata_xml.clone(),
        update_time: s.updated_at.map(convert::timestamp),
        etag: validate::etag_of(s.version),
        allow_idp_initiated: s.allow_idp_initiated,
        idp_certificate_details: s
            .idp_certificates
            .iter()
            .map(|c| proto::SsoCertificate {
                subject: c.subject.clone(),
                sha256_fingerprint: c.sha256_fingerprint.clone(),
                not_before: Some(convert::timestamp(c.not_before)),
                not_after: Some(convert::timestamp(c.not_after)),
            })
            .collect(),
        attribute_preset: preset_to_proto(s.preset()) as i32,
    }
}
