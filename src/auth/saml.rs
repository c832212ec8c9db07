//! SAML 2.0 on the service provider's side: reading an identity provider's metadata and
//! certificates, writing our AuthnRequest and metadata, and turning a posted response into the
//! facts its signature covers.
//!
//! Signatures are checked by libxmlsec1 through `samael`, against the configured certificates only
//! (never a key or certificate the message carries), with RSA or ECDSA over SHA-256 or stronger;
//! what it returns is only the signed part of the document, so content outside the signature can
//! never be read as the assertion. Before any signature is looked at, the document's shape is
//! checked: no DTD, entity, comment or processing instruction, exactly one assertion, no ID twice,
//! no SHA-1 or MD5 anywhere. The checks of the content (issuer, audience, time, recipient, request)
//! are the domain's (`domain::sso::check`).

use std::collections::HashSet;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::{Compression, write::DeflateEncoder};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::x509::X509;
use quick_xml::events::Event;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::metadata::EntityDescriptor;
use samael::schema::{Assertion, Response};
use sha2::{Digest, Sha256};

use crate::domain::sso::{
    Bearer, IdpCertificate, IdpMetadata, MAX_METADATA_BYTES, Refusal, ResponseFacts, SamlAttribute,
};

const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// The signature algorithms accepted: RSA and ECDSA with SHA-256, -384 or -512.
const ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Reads one PEM X.509 certificate.
pub fn certificate(pem: &str) -> Result<IdpCertificate, String> {
    let pem = pem.trim();
    if !pem.starts_with("-----BEGIN CERTIFICATE-----") {
        return Err("is not a PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    let certs = X509::stack_from_pem(pem.as_bytes())
        .map_err(|_| "is not a valid PEM X.509 certificate".to_owned())?;
    let [cert] = certs.as_slice() else {
        return Err("must hold exactly one certificate".to_owned());
    };
    of_x509(cert)
}

/// Reads a certificate as metadata carries it: base64 DER.
fn certificate_of_base64(text: &str) -> Result<IdpCertificate, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(compact)
        .map_err(|_| "has a certificate that is not base64".to_owned())?;
    let cert = X509::from_der(&der)
        .map_err(|_| "has a certificate that is not a valid X.509 certificate".to_owned())?;
    of_x509(&cert)
}

fn of_x509(cert: &X509) -> Result<IdpCertificate, String> {
    let invalid = |_| "is not a valid X.509 certificate".to_owned();
    let der = cert.to_der().map_err(invalid)?;
    let pem =
        String::from_utf8(cert.to_pem().map_err(invalid)?).map_err(|_| "is not PEM".to_owned())?;
    let subject = cert
        .subject_name()
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = String::from_utf8_lossy(entry.data().as_slice()).into_owned();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(IdpCertificate {
        pem: pem.trim().to_owned(),
        subject,
        sha256_fingerprint: hex(&Sha256::digest(&der)),
        not_before: time_of(cert.not_before())?,
        not_after: time_of(cert.not_after())?,
    })
}

fn time_of(time: &Asn1TimeRef) -> Result<DateTime<Utc>, String> {
    let invalid = || "has a validity time that cannot be read".to_owned();
    let epoch = Asn1Time::from_unix(0).map_err(|_| invalid())?;
    let diff = epoch.diff(time).map_err(|_| invalid())?;
    DateTime::from_timestamp(i64::from(diff.days) * 86_400 + i64::from(diff.secs), 0)
        .ok_or_else(invalid)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an identity provider's metadata: its entity id, its HTTP-Redirect SSO URL and its
/// signing certificates (those marked for signing, or unmarked ones when none is). Metadata
/// without a signing certificate is refused: nothing could verify its responses.
pub fn metadata(xml: &str) -> Result<IdpMetadata, String> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(format!("must be at most {} KiB", MAX_METADATA_BYTES / 1024));
    }
    shape_of_metadata(xml)?;
    let descriptor: EntityDescriptor = xml
        .parse()
        .map_err(|_| "is not SAML metadata with an EntityDescriptor".to_owned())?;
    let entity_id = descriptor
        .entity_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| "has no entityID".to_owned())?;
    let idps = descriptor.idp_sso_descriptors.unwrap_or_default();
    if idps.is_empty() {
        return Err(
            "has no IDPSSODescriptor: it is not an identity provider's metadata".to_owned(),
        );
    }
    let sso_url = idps
        .iter()
        .flat_map(|idp| idp.single_sign_on_services.iter())
        .find(|service| service.binding == HTTP_REDIRECT)
        .map(|service| service.location.trim().to_owned())
        .ok_or_else(|| "has no SingleSignOnService with the HTTP-Redirect binding".to_owned())?;
    let entity_id = crate::domain::sso::entity_id(entity_id)
        .map_err(|e| format!("has an entityID that {e}"))?;
    let sso_url = crate::domain::sso::sso_url(&sso_url)
        .map_err(|e| format!("has a SingleSignOnService Location that {e}"))?;
    let keys: Vec<_> = idps
        .iter()
        .flat_map(|idp| idp.key_descriptors.iter())
        .collect();
    let signing: Vec<_> = keys
        .iter()
        .filter(|key| key.key_use.as_deref() == Some("signing"))
        .collect();
    let chosen: Vec<_> = if signing.is_empty() {
        keys.iter()
            .filter(|key| key.key_use.as_deref().is_none_or(str::is_empty))
            .collect()
    } else {
        signing
    };
    let mut certificates = Vec::new();
    for key in chosen {
        for text in key
            .key_info
            .x509_data
            .iter()
            .flat_map(|data| data.certificates.iter())
        {
            let certificate = certificate_of_base64(text)?;
            if !certificates
                .iter()
                .any(|c: &IdpCertificate| c.sha256_fingerprint == certificate.sha256_fingerprint)
            {
                certificates.push(certificate);
            }
        }
    }
    if certificates.is_empty() {
        return Err("has no signing certificate: responses could not be verified".to_owned());
    }
    if certificates.len() > crate::domain::sso::MAX_CERTIFICATES {
        return Err(format!(
            "has more than {} signing certificates",
            crate::domain::sso::MAX_CERTIFICATES
        ));
    }
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        certificates,
    })
}

/// Metadata is XML an administrator pasted: no DTD or entity either.
fn shape_of_metadata(xml: &str) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return Ok(()),
            Ok(Event::DocType(_)) => return Err("must not contain a DTD".to_owned()),
            Ok(Event::GeneralRef(r)) if !predefined(&r) => {
                return Err("must not use entities".to_owned());
            }
            Ok(_) => {}
            Err(_) => return Err("is not well-formed XML".to_owned()),
        }
    }
}

/// `&lt;` and the other four, or a character reference.
fn predefined(reference: &quick_xml::events::BytesRef) -> bool {
    reference.is_char_ref()
        || matches!(
            reference.as_ref(),
            b"lt" | b"gt" | b"amp" | b"apos" | b"quot"
        )
}

/// Escapes text for an XML attribute or element.
fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The identity provider's URL carrying our AuthnRequest (HTTP-Redirect binding: raw DEFLATE,
/// base64, in the query) and the relay state.
pub fn authn_request_url(
    idp_sso_url: &str,
    request_id: &str,
    sp_entity_id: &str,
    acs_url: &str,
    issue_instant: DateTime<Utc>,
    relay_state: &str,
) -> Result<String, String> {
    let xml = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
            r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{instant}" Destination="{destination}" ProtocolBinding="{binding}" "#,
            r#"AssertionConsumerServiceURL="{acs}"><saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<samlp:NameIDPolicy Format="{format}" AllowCreate="true"/></samlp:AuthnRequest>"#
        ),
        id = escape(request_id),
        instant = issue_instant.to_rfc3339_opts(SecondsFormat::Secs, true),
        destination = escape(idp_sso_url),
        binding = HTTP_POST,
        acs = escape(acs_url),
        issuer = escape(sp_entity_id),
        format = EMAIL_FORMAT,
    );
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(xml.as_bytes())
        .map_err(|e| e.to_string())?;
    let deflated = encoder.finish().map_err(|e| e.to_string())?;
    let mut url = url::Url::parse(idp_sso_url).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("SAMLRequest", &STANDARD.encode(deflated))
        .append_pair("RelayState", relay_state);
    Ok(url.into())
}

/// Our service provider metadata, for identity providers that import it.
pub fn sp_metadata(sp_entity_id: &str, acs_url: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">"#,
            "\n  ",
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" "#,
            r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            "\n    <md:NameIDFormat>{format}</md:NameIDFormat>\n    ",
            r#"<md:AssertionConsumerService Binding="{binding}" Location="{acs}" index="0" isDefault="true"/>"#,
            "\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n"
        ),
        entity = escape(sp_entity_id),
        format = EMAIL_FORMAT,
        binding = HTTP_POST,
        acs = escape(acs_url),
    )
}

/// Decodes the posted SAMLResponse (base64, whitespace allowed) into its XML text.
pub fn decode_response(posted: &str) -> Result<String, String> {
    let compact: String = posted.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = STANDARD
        .decode(compact)
        .map_err(|_| "is not base64".to_owned())?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 XML".to_owned())
}

/// Verifies a response's signature against `certificates` and returns what its signed part says.
pub fn verify(xml: &str, certificates: &[IdpCertificate]) -> Result<ResponseFacts, Refusal> {
    let root = shape(xml)?;
    if root != "Response" {
        return Err(Refusal::Shape);
    }
    let ders = certificates
        .iter()
        .filter_map(|c| X509::from_pem(c.pem.as_bytes()).ok())
        .filter_map(|c| c.to_der().ok())
        .map(CertificateDer::from)
        .collect::<Vec<_>>();
    if ders.is_empty() {
        return Err(Refusal::Signature);
    }
    let signed = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &ders,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(ALLOWED),
    )
    .map_err(|_| Refusal::Signature)?;
    match shape(&signed)?.as_str() {
        "Response" => {
            let response: Response = signed.parse().map_err(|_| Refusal::Shape)?;
            let assertion = response.assertion.clone().ok_or(Refusal::Shape)?;
            Ok(facts(true, &response, &assertion))
        }
        "Assertion" => {
            let assertion: Assertion = signed.parse().map_err(|_| Refusal::Shape)?;
            // Only the assertion is signed: the response around it says where it was sent and
            // what it answers, which the assertion's own confirmation must agree with.
            let response: Response = xml.parse().map_err(|_| Refusal::Shape)?;
            Ok(facts(false, &response, &assertion))
        }
        _ => Err(Refusal::Signature),
    }
}

fn facts(response_signed: bool, response: &Response, assertion: &Assertion) -> ResponseFacts {
    let subject = assertion.subject.as_ref();
    let conditions = assertion.conditions.as_ref();
    ResponseFacts {
        response_signed,
        destination: response.destination.clone(),
        in_response_to: response.in_response_to.clone(),
        status: response
            .status
            .as_ref()
            .and_then(|status| status.status_code.value.clone()),
        response_issuer: response.issuer.as_ref().and_then(|i| i.value.clone()),
        assertion_id: assertion.id.clone(),
        issuer: assertion.issuer.value.clone(),
        issue_instant: Some(assertion.issue_instant),
        name_id: subject
            .and_then(|s| s.name_id.as_ref())
            .map(|name_id| name_id.value.clone()),
        not_before: conditions.and_then(|c| c.not_before),
        not_on_or_after: conditions.and_then(|c| c.not_on_or_after),
        audiences: conditions
            .and_then(|c| c.audience_restrictions.as_ref())
            .map(|restrictions| restrictions.iter().map(|r| r.audience.clone()).collect())
            .unwrap_or_default(),
        bearers: subject
            .and_then(|s| s.subject_confirmations.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.method.as_deref() == Some(BEARER))
            .map(|c| match &c.subject_confirmation_data {
                Some(data) => Bearer {
                    recipient: data.recipient.clone(),
                    in_response_to: data.in_response_to.clone(),
                    not_before: data.not_before,
                    not_on_or_after: data.not_on_or_after,
                },
                None => Bearer::default(),
            })
            .collect(),
        attributes: assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|statement| statement.attributes.iter())
            .filter_map(|attribute| {
                Some(SamlAttribute {
                    name: attribute.name.clone()?,
                    values: attribute
                        .values
                        .iter()
                        .filter_map(|v| v.value.clone())
                        .collect(),
                })
            })
            .collect(),
    }
}

/// The shape a response must have before its signature is looked at; returns the root element's
/// local name. Refuses DTDs, entities, comments and processing instructions (the NameID comment
/// trick of CVE-2017-11427 needs one), more or fewer than one assertion anywhere (signature
/// wrapping moves a second one into the document), an ID used twice, an encrypted assertion, and
/// SHA-1 or MD5 in any algorithm.
fn shape(xml: &str) -> Result<String, Refusal> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut root = None;
    let mut assertions = 0;
    let mut ids = HashSet::new();
    // The first StatusCode's value: a response that failed carries no assertion to check.
    let mut status: Option<String> = None;
    loop {
        let event = reader.read_event().map_err(|_| Refusal::Shape)?;
        match event {
            Event::Eof => break,
            Event::DocType(_) | Event::Comment(_) | Event::PI(_) | Event::CData(_) => {
                return Err(Refusal::Shape);
            }
            Event::GeneralRef(r) if !predefined(&r) => return Err(Refusal::Shape),
            Event::Start(ref element) | Event::Empty(ref element) => {
                let name = element.local_name();
                let name = std::str::from_utf8(name.as_ref()).map_err(|_| Refusal::Shape)?;
                if root.is_none() {
                    root = Some(name.to_owned());
                }
                match name {
                    "Assertion" => assertions += 1,
                    "StatusCode" if status.is_none() => {
                        status = Some(attribute_value(element, b"Value")?.unwrap_or_default());
                    }
                    "EncryptedAssertion" => return Err(Refusal::Shape),
                    _ => {}
                }
                for attribute in element.attributes() {
                    let attribute = attribute.map_err(|_| Refusal::Shape)?;
                    let key = attribute.key.local_name();
                    if key.as_ref() == b"ID" && !ids.insert(text_of(&attribute)?) {
                        return Err(Refusal::Shape);
                    }
                    if key.as_ref() == b"Algorithm"
                        && matches!(name, "SignatureMethod" | "DigestMethod")
                    {
                        let value = text_of(&attribute)?.to_ascii_lowercase();
                        if value.contains("sha1") || value.contains("md5") {
                            return Err(Refusal::Algorithm);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if assertions != 1 && root.as_deref() == Some("Response") {
        if assertions == 0 && status.is_some_and(|status| status != SUCCESS) {
            return Err(Refusal::Status);
        }
        return Err(Refusal::Shape);
    }
    root.ok_or(Refusal::Shape)
}

/// The value of the attribute `key` of `element`, if it has one.
fn attribute_value(
    element: &quick_xml::events::BytesStart,
    key: &[u8],
) -> Result<Option<String>, Refusal> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|_| Refusal::Shape)?;
        if attribute.key.local_name().as_ref() == key {
            return text_of(&attribute).map(Some);
        }
    }
    Ok(None)
}

/// An attribute's value with its references resolved.
fn text_of(attribute: &quick_xml::events::attributes::Attribute) -> Result<String, Refusal> {
    attribute
        .normalized_value(quick_xml::XmlVersion::default())
        .map(|value| value.into_owned())
        .map_err(|_| Refusal::Shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(inner: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r">{inner}</samlp:Response>"#
        )
    }

    #[test]
    fn the_shape_refuses_what_signature_tricks_need() {
        let one = r#"<saml:Assertion ID="_a"><saml:Subject/></saml:Assertion>"#;
        assert_eq!(shape(&wrapped(one)), Ok("Response".to_owned()));
        let cases = [
            (
                format!("<!DOCTYPE r [<!ENTITY x \"y\">]>{}", wrapped(one)),
                Refusal::Shape,
            ),
            (wrapped(&format!("{one}<!-- c -->")), Refusal::Shape),
            (
                wrapped(
                    r#"<saml:Assertion ID="_a"><saml:NameID>a@b.c<!---->.evil</saml:NameID></saml:Assertion>"#,
                ),
                Refusal::Shape,
            ),
            (wrapped(&format!("{one}{one}")), Refusal::Shape),
            (
                wrapped(
                    r#"<saml:Assertion ID="_a"/><samlp:Extensions><saml:Assertion ID="_b"/></samlp:Extensions>"#,
                ),
                Refusal::Shape,
            ),
            (wrapped(""), Refusal::Shape),
            (
                wrapped(
                    r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/></samlp:Status>"#,
                ),
                Refusal::Status,
            ),
            (wrapped(r#"<saml:Assertion ID="_r"/>"#), Refusal::Shape),
            (wrapped(r#"<saml:EncryptedAssertion/>"#), Refusal::Shape),
            (
                wrapped(
                    r#"<saml:Assertion ID="_a"><ds:SignatureMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/></saml:Assertion>"#,
                ),
                Refusal::Algorithm,
            ),
            (
                wrapped(r#"<saml:Assertion ID="_a">&ent;</saml:Assertion>"#),
                Refusal::Shape,
            ),
            ("<not xml".to_owned(), Refusal::Shape),
        ];
        for (xml, refusal) in cases {
            assert_eq!(shape(&xml), Err(refusal), "{xml}");
        }
    }

    #[test]
    fn the_authn_request_travels_deflated_in_the_query() {
        let url = authn_request_url(
            "https://idp.example.com/sso?tenant=a",
            "_abc",
            "https://app/sso/saml/1",
            "https://app/sso/saml/1/acs",
            DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            "rs_1",
        )
        .unwrap_or_default();
        let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{e}"));
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs.get("tenant").map(String::as_str), Some("a"));
        assert_eq!(pairs.get("RelayState").map(String::as_str), Some("rs_1"));
        let deflated = STANDARD
            .decode(pairs.get("SAMLRequest").cloned().unwrap_or_default())
            .unwrap_or_default();
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::DeflateDecoder::new(deflated.as_slice()),
            &mut xml,
        )
        .unwrap_or_default();
        assert!(xml.contains(r#"ID="_abc""#), "{xml}");
        assert!(xml.contains(r#"AssertionConsumerServiceURL="https://app/sso/saml/1/acs""#));
        assert!(xml.contains("<saml:Issuer>https://app/sso/saml/1</saml:Issuer>"));
    }

    #[test]
    fn metadata_without_a_signing_certificate_or_with_a_dtd_is_refused() {
        let md = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;
        let err = metadata(md).err().unwrap_or_default();
        assert!(err.contains("no signing certificate"), "{err}");
        let err = metadata(&format!("<!DOCTYPE x>{md}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("DTD"), "{err}");
        assert!(metadata("<x").is_err());
        let plain_http = md.replace("https://idp/sso", "http://idp.example.com/sso");
        let err = metadata(&plain_http).err().unwrap_or_default();
        assert!(err.contains("Location that must be an https URL"), "{err}");
        assert!(certificate("not a pem").is_err());
    }
}
