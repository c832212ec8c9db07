//! SAML single sign-on against a real identity provider on loopback (`tests/saml/idp.py`, pysaml2
//! signing with xmlsec1), started per test: the settings an administrator keeps, SP-initiated and
//! IdP-initiated logins with just-in-time provisioning, and the forged, stale, misaddressed and
//! replayed responses the service must refuse, each recorded in the account's audit log.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use identity::domain::roles::Role;
use identity::proto::{self, AuditCategory};
use prost_types::FieldMask;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;

use crate::harness::{
    NowUtc, OPERATOR, READER, TestServer, assert_error, scope_token, violated_fields, with_token,
};

/// A person who is not a member of the account yet.
const NEWCOMER: &str = "newcomer@acme.test";
/// The address the IdP's wrapped responses put in their unsigned assertion.
const EVIL: &str = "evil@evil.test";
/// The role of users no mapping matches, in every account these tests configure.
const DEFAULT_ROLE: proto::Role = proto::Role::MediaLibraryViewOnly;

// ---------------------------------------------------------------------------------------------
// The identity provider

/// The test identity provider's process; stopped when dropped.
pub(crate) struct Idp {
    /// `http://127.0.0.1:PORT`
    base: String,
    child: Child,
}

/// The Python that runs the IdP: `$SAML_IDP_PYTHON` (tests/run sets it), else the tools venv's,
/// else `python3`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SAML_IDP_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

impl Idp {
    pub(crate) async fn start() -> Self {
        let python = python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/saml/idp.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} for the test SAML identity provider ({e}): run the suite with \
                     tests/run, which installs it and sets SAML_IDP_PYTHON",
                    python.display()
                )
            });
        // Its log goes to the test's output, and its last lines into a panic if it dies early.
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[saml idp] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stdout.next_line().await.expect("read the IdP's stdout") {
                if let Some(port) = line.strip_prefix("READY ") {
                    return port.trim().parse::<u16>().expect("READY <port>");
                }
            }
            // Let the stderr reader take in the last lines.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = log.lock().unwrap().join("\n");
            if log.contains("No module named") {
                panic!(
                    "pysaml2 is not installed for {}: run the suite with tests/run, which installs \
                     tests/saml/requirements.txt into target/tools/venv and sets SAML_IDP_PYTHON, or \
                     point SAML_IDP_PYTHON at a Python that has them\n{log}",
                    python.display()
                );
            }
            panic!("the test SAML identity provider exited before it was ready:\n{log}")
        })
        .await
        .expect("the test SAML identity provider did not start within 30 s");
        // Keep reading stdout so the IdP never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Its metadata, with `certs` signing certificates (0, 1, or 2 for a rotation).
    pub(crate) async fn metadata(&self, certs: u8) -> String {
        fetch(&format!("{}/metadata?certs={certs}", self.base)).await
    }

    /// Its signing certificate, PEM.
    async fn certificate(&self) -> String {
        fetch(&format!("{}/cert", self.base)).await
    }

    /// What its form posts for an IdP-initiated login into `settings`' service provider.
    pub(crate) async fn initiate(&self, settings: &proto::SsoSettings, answer: &Answer) -> Posted {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sp", &settings.sp_entity_id)
            .append_pair("acs", &settings.sp_acs_url)
            .finish();
        posted(&fetch(&format!("{}/start?{query}&{}", self.base, answer.query())).await)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        // SIGTERM lets it remove its keys' temporary directory; kill_on_drop ends it otherwise.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// GET, as a browser without redirects; the body of a 200 answer.
pub(crate) async fn fetch(url: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    body
}

/// How the IdP is to answer: for whom, with which attributes, signed how, which variant (the
/// query parameters of its /sso and /start).
#[derive(Clone)]
pub(crate) struct Answer(Vec<(String, String)>);

impl Answer {
    pub(crate) fn user(email: &str) -> Self {
        Self(vec![("email".to_owned(), email.to_owned())])
    }

    pub(crate) fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_owned(), value.to_owned()));
        self
    }

    fn attr(self, name: &str, value: &str) -> Self {
        self.with(&format!("attr.{name}"), value)
    }

    /// `both`, `assertion` or `response`.
    fn sign(self, what: &str) -> Self {
        self.with("sign", what)
    }

    /// One of the IdP's variants (`tests/saml/idp.py`); `good` when not given.
    fn variant(self, name: &str) -> Self {
        self.with("variant", name)
    }

    pub(crate) fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish()
    }
}

/// The two fields the IdP's auto-submitting form posts to our ACS URL.
#[derive(Clone, Debug)]
pub(crate) struct Posted {
    pub(crate) saml_response: String,
    pub(crate) relay_state: String,
}

pub(crate) fn posted(page: &str) -> Posted {
    Posted {
        saml_response: hidden_input(page, "SAMLResponse"),
        relay_state: hidden_input(page, "RelayState"),
    }
}

/// The value of the form's hidden input `name`, unescaped.
fn hidden_input(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} input in the IdP's answer:\n{page}"))
        + marker.len();
    let end = start + page[start..].find('"').expect("a closing quote");
    html_unescape(&page[start..end])
}

/// HTML character references (`&quot;`, `&amp;`, `&#x27;`...) back to characters.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "quot" => Some('"'),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// The service's side

/// What an account's SSO settings hold besides the IdP's metadata, the default role and `enabled`.
#[derive(Default)]
pub(crate) struct Options {
    /// Metadata with the IdP's certificate and the other one (a rotation in progress).
    pub(crate) both_certificates: bool,
    pub(crate) role_attribute: &'static str,
    pub(crate) role_mapping: &'static [(&'static str, proto::Role)],
    pub(crate) display_name_attribute: &'static str,
    pub(crate) allow_idp_initiated: bool,
}

fn update_request(
    account_id: &str,
    sso_settings: proto::SsoSettings,
    paths: &[&str],
) -> proto::UpdateSsoSettingsRequest {
    proto::UpdateSsoSettingsRequest {
        account_id: account_id.to_owned(),
        sso_settings: Some(sso_settings),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        etag: String::new(),
    }
}

async fn update(
    server: &TestServer,
    token: &str,
    request: proto::UpdateSsoSettingsRequest,
) -> Result<proto::SsoSettings, tonic::Status> {
    server
        .accounts()
        .update_sso_settings(with_token(token, request))
        .await
        .map(|r| r.into_inner().sso_settings.expect("sso_settings"))
}

pub(crate) async fn get_settings(
    server: &TestServer,
    token: &str,
    account_id: &str,
) -> Result<proto::SsoSettings, tonic::Status> {
    server
        .accounts()
        .get_sso_settings(with_token(
            token,
            proto::GetSsoSettingsRequest {
                account_id: account_id.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().sso_settings.expect("sso_settings"))
}

/// Turns SSO on for `account_id` with `idp`'s metadata, as the caller of `token`.
pub(crate) async fn configure(
    server: &TestServer,
    idp: &Idp,
    account_id: &str,
    token: &str,
    options: Options,
) -> proto::SsoSettings {
    let certs = if options.both_certificates { 2 } else { 1 };
    let mut settings = proto::SsoSettings {
        idp_metadata_xml: idp.metadata(certs).await,
        default_role: DEFAULT_ROLE as i32,
        enabled: true,
        ..Default::default()
    };
    let mut paths = vec!["idp_metadata_xml", "default_role", "enabled"];
    if !options.role_attribute.is_empty() {
        settings.role_attribute = options.role_attribute.to_owned();
        paths.push("role_attribute");
    }
    if !options.role_mapping.is_empty() {
        settings.role_mapping = options
            .role_mapping
            .iter()
            .map(|(value, role)| (value.to_string(), *role as i32))
            .collect();
        paths.push("role_mapping");
    }
    if !options.display_name_attribute.is_empty() {
        settings.display_name_attribute = options.display_name_attribute.to_owned();
        paths.push("display_name_attribute");
    }
    if options.allow_idp_initiated {
        settings.allow_idp_initiated = true;
        paths.push("allow_idp_initiated");
    }
    update(server, token, update_request(account_id, settings, &paths))
        .await
        .expect("configure SSO")
}

/// An IdP, a server, and its account "Acme" (administrator admin@acme.test, invited) with SSO on.
async fn sso_account(options: Options) -> (Idp, TestServer, proto::Account) {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    configure(&server, &idp, &account.id, OPERATOR, options).await;
    (idp, server, account)
}

async fn start_login(
    server: &TestServer,
    account_id: &str,
) -> Result<proto::StartSsoLoginResponse, tonic::Status> {
    server
        .auth()
        .start_sso_login(proto::StartSsoLoginRequest {
            account_id: account_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Starts an SP-initiated login and sends the browser to the IdP, which answers as `answer` says:
/// what its form posts back.
pub(crate) async fn idp_response(server: &TestServer, account_id: &str, answer: &Answer) -> Posted {
    let start = start_login(server, account_id)
        .await
        .expect("start an SSO login");
    posted(&fetch(&format!("{}&{}", start.redirect_url, answer.query())).await)
}

/// LoginWithSso with what the IdP's form posted.
async fn post(
    server: &TestServer,
    account_id: &str,
    posted: &Posted,
) -> Result<proto::LoginWithSsoResponse, tonic::Status> {
    server
        .auth()
        .login_with_sso(proto::LoginWithSsoRequest {
            account_id: account_id.to_owned(),
            saml_response: posted.saml_response.clone(),
            relay_state: posted.relay_state.clone(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A whole SP-initiated login: StartSsoLogin, the IdP answering as `answer` says, LoginWithSso.
async fn login_via_idp(
    server: &TestServer,
    account_id: &str,
    answer: &Answer,
) -> Result<proto::LoginWithSsoResponse, tonic::Status> {
    post(
        server,
        account_id,
        &idp_response(server, account_id, answer).await,
    )
    .await
}

/// The tokens of a login that must have succeeded.
fn tokens(result: Result<proto::LoginWithSsoResponse, tonic::Status>) -> proto::SessionTokens {
    result
        .expect("the SSO login succeeds")
        .tokens
        .expect("a successful login has tokens")
}

/// The claims of an access token (its payload, unverified).
fn claims(access_token: &str) -> serde_json::Value {
    let payload = access_token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn member(server: &TestServer, account_id: &str, user_id: &str) -> proto::User {
    server
        .users()
        .get_user(with_token(
            READER,
            proto::GetUserRequest {
                account_id: account_id.to_owned(),
                user_id: user_id.to_owned(),
            },
        ))
        .await
        .expect("get the member")
        .into_inner()
        .user
        .unwrap()
}

/// The person with `email`, if there is one.
async fn person(
    server: &TestServer,
    email: &str,
) -> Option<identity::store::entities::user::Model> {
    use identity::store::entities::user;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    user::Entity::find()
        .filter(user::Column::EmailKey.eq(email.to_lowercase()))
        .one(server.app.store.connection())
        .await
        .unwrap()
}

/// The sessions ever opened for the person with `email` (none when there is no such person).
pub(crate) async fn sessions_of(server: &TestServer, email: &str) -> u64 {
    use identity::store::entities::session;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let Some(person) = person(server, email).await else {
        return 0;
    };
    session::Entity::find()
        .filter(session::Column::UserId.eq(person.id))
        .count(server.app.store.connection())
        .await
        .unwrap()
}

/// The account's events with `action`, newest first.
async fn audit_events(
    server: &TestServer,
    account_id: &str,
    action: &str,
) -> Vec<proto::AuditEvent> {
    let mut request = proto::ListAuditEventsRequest {
        account_id: account_id.to_owned(),
        action: action.to_owned(),
        page_size: 1000,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = proto::audit_service_client::AuditServiceClient::new(server.channel())
            .list_audit_events(with_token(&scope_token("audit.read"), request.clone()))
            .await
            .expect("list audit events")
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

fn meta<'a>(event: &'a proto::AuditEvent, key: &str) -> &'a str {
    event.metadata.get(key).map_or("", String::as_str)
}

/// Asserts `result` is the SAML refusal and that the account's newest failed login is an SSO one
/// whose reason is one of `reasons`.
async fn assert_refused<T: std::fmt::Debug>(
    server: &TestServer,
    account_id: &str,
    result: Result<T, tonic::Status>,
    reasons: &[&str],
) {
    assert_error(result, Code::Unauthenticated, "SAML_RESPONSE_INVALID");
    let failures = audit_events(server, account_id, "auth.login_failed").await;
    let newest = failures
        .first()
        .expect("the refusal is recorded as auth.login_failed");
    assert_eq!(newest.category, AuditCategory::Authentication as i32);
    assert_eq!(meta(newest, "method"), "saml", "{newest:?}");
    assert!(
        reasons.contains(&meta(newest, "reason")),
        "recorded reason {:?}, expected one of {reasons:?}: {newest:?}",
        meta(newest, "reason")
    );
}

/// A newcomer's login answered with the IdP's `variant` is refused for one of `reasons`, and
/// nobody is created or logged in: neither the newcomer nor the address a wrapped response names.
async fn assert_variant_refused(variant: &str, reasons: &[&str]) {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let result = login_via_idp(
        &server,
        &account.id,
        &Answer::user(NEWCOMER).variant(variant),
    )
    .await;
    assert_refused(&server, &account.id, result, reasons).await;
    for email in [NEWCOMER, EVIL] {
        assert!(
            person(&server, email).await.is_none(),
            "{variant}: {email} was provisioned"
        );
    }
}

/// A call failed with INVALID_ARGUMENT naming one field, which starts with `field`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields = violated_fields(&status);
    assert!(
        fields.len() == 1 && fields[0].starts_with(field),
        "expected a violation of {field}, got {fields:?}: {status:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a PEM certificate's DER, lower-case hex.
fn fingerprint(pem: &str) -> String {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    hex(&Sha256::digest(STANDARD.decode(body.trim()).unwrap()))
}

// ---------------------------------------------------------------------------------------------
// Settings

#[tokio::test]
async fn an_unconfigured_account_shows_what_to_register_at_the_idp() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let settings = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert_eq!(settings.account_id, account.id);
    assert!(!settings.enabled);
    let suffix = format!("/sso/saml/{}", account.id);
    assert!(
        settings.sp_entity_id.ends_with(&suffix),
        "{}",
        settings.sp_entity_id
    );
    assert_eq!(
        settings.sp_acs_url,
        format!("{}/acs", settings.sp_entity_id)
    );
    assert!(settings.sp_metadata_xml.contains(&settings.sp_entity_id));
    assert!(settings.sp_metadata_xml.contains(&settings.sp_acs_url));
    assert_eq!(settings.idp_metadata_xml, "");
    assert_eq!(settings.idp_entity_id, "");
    assert_eq!(settings.idp_sso_url, "");
    assert!(settings.idp_certificates.is_empty());
    assert!(settings.idp_certificate_details.is_empty());
}

#[tokio::test]
async fn the_idps_metadata_sets_its_entity_id_url_and_certificate() {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let metadata = idp.metadata(1).await;
    let settings = update(
        &server,
        OPERATOR,
        update_request(
            &account.id,
            proto::SsoSettings {
                idp_metadata_xml: metadata.clone(),
                ..Default::default()
            },
            &["idp_metadata_xml"],
        ),
    )
    .await
    .unwrap();
    assert_eq!(settings.idp_entity_id, format!("{}/metadata", idp.base));
    assert_eq!(settings.idp_sso_url, format!("{}/sso", idp.base));
    assert_eq!(settings.idp_certificates.len(), 1);
    assert_eq!(settings.idp_certificate_details.len(), 1);
    let details = &settings.idp_certificate_details[0];
    assert_eq!(details.sha256_fingerprint.len(), 64);
    assert!(
        details
            .sha256_fingerprint
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{details:?}"
    );
    assert_eq!(
        details.sha256_fingerprint,
        fingerprint(&idp.certificate().await)
    );
    assert!(details.subject.contains("CN=saml-test-idp"), "{details:?}");
    let not_after = details.not_after.expect("not_after");
    assert!(not_after.seconds > server.clock.now_utc().timestamp());
    assert!(!settings.enabled, "only `enabled` turns SSO on");
    // The same, read back.
    let read = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert_eq!(read.idp_metadata_xml, metadata.trim());
    assert_eq!(read.idp_entity_id, settings.idp_entity_id);
    assert_eq!(
        read.idp_certificate_details,
        settings.idp_certificate_details
    );
}

#[tokio::test]
async fn metadata_without_a_signing_certificate_or_not_metadata_at_all_is_refused() {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    for metadata in [
        idp.metadata(0).await,
        "this is not metadata".to_owned(),
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"x\"/>"
            .to_owned(),
    ] {
        let result = update(
            &server,
            OPERATOR,
            update_request(
                &account.id,
                proto::SsoSettings {
                    idp_metadata_xml: metadata,
                    ..Default::default()
                },
                &["idp_metadata_xml"],
            ),
        )
        .await;
        assert_invalid(result, "sso_settings.idp_metadata_xml");
    }
    let settings = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert_eq!(settings.idp_entity_id, "", "nothing was kept");
}

#[tokio::test]
async fn bad_certificates_urls_and_roles_are_refused_field_by_field() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let refused = [
        (
            proto::SsoSettings {
                idp_certificates: vec!["not a certificate".to_owned()],
                ..Default::default()
            },
            "idp_certificates",
        ),
        (
            proto::SsoSettings {
                idp_sso_url: "http://idp.example.com/sso".to_owned(),
                ..Default::default()
            },
            "idp_sso_url",
        ),
        (
            proto::SsoSettings {
                default_role: proto::Role::AccountAdministrator as i32,
                ..Default::default()
            },
            "default_role",
        ),
        (
            proto::SsoSettings {
                role_mapping: [(
                    "restricted".to_owned(),
                    proto::Role::MediaLibraryRestricted as i32,
                )]
                .into(),
                ..Default::default()
            },
            "role_mapping",
        ),
    ];
    for (settings, path) in refused {
        let result = update(
            &server,
            OPERATOR,
            update_request(&account.id, settings, &[path]),
        )
        .await;
        assert_invalid(result, &format!("sso_settings.{path}"));
    }
}

#[tokio::test]
async fn sso_cannot_be_turned_on_before_the_idp_and_a_default_role_are_configured() {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let enable = || {
        update_request(
            &account.id,
            proto::SsoSettings {
                enabled: true,
                ..Default::default()
            },
            &["enabled"],
        )
    };
    assert_error(
        update(&server, OPERATOR, enable()).await,
        Code::FailedPrecondition,
        "SSO_CONFIGURATION_INCOMPLETE",
    );
    // The IdP alone is not enough: a default role is needed too.
    update(
        &server,
        OPERATOR,
        update_request(
            &account.id,
            proto::SsoSettings {
                idp_metadata_xml: idp.metadata(1).await,
                ..Default::default()
            },
            &["idp_metadata_xml"],
        ),
    )
    .await
    .unwrap();
    assert_error(
        update(&server, OPERATOR, enable()).await,
        Code::FailedPrecondition,
        "SSO_CONFIGURATION_INCOMPLETE",
    );
    assert!(
        !get_settings(&server, OPERATOR, &account.id)
            .await
            .unwrap()
            .enabled
    );
}

#[tokio::test]
async fn an_attribute_preset_fills_the_providers_attribute_names() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let preset = |extra: &[&str], display_name_attribute: &str| {
        let mut paths = vec!["attribute_preset"];
        paths.extend_from_slice(extra);
        update_request(
            &account.id,
            proto::SsoSettings {
                attribute_preset: proto::SsoAttributePreset::EntraId as i32,
                display_name_attribute: display_name_attribute.to_owned(),
                ..Default::default()
            },
            &paths,
        )
    };
    let settings = update(&server, OPERATOR, preset(&[], "")).await.unwrap();
    assert_eq!(
        settings.display_name_attribute,
        "http://schemas.microsoft.com/identity/claims/displayname"
    );
    assert_eq!(
        settings.role_attribute,
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    );
    assert_eq!(
        settings.attribute_preset,
        proto::SsoAttributePreset::EntraId as i32
    );
    let read = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert_eq!(
        read.attribute_preset,
        proto::SsoAttributePreset::EntraId as i32
    );

    // A path named alongside the preset keeps its own value; the names then match no preset.
    let settings = update(
        &server,
        OPERATOR,
        preset(&["display_name_attribute"], "fullName"),
    )
    .await
    .unwrap();
    assert_eq!(settings.display_name_attribute, "fullName");
    assert_eq!(
        settings.role_attribute,
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    );
    assert_eq!(
        settings.attribute_preset,
        proto::SsoAttributePreset::Unspecified as i32
    );
}

#[tokio::test]
async fn a_settings_change_based_on_a_stale_etag_is_refused() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let before = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    let mut request = update_request(
        &account.id,
        proto::SsoSettings {
            display_name_attribute: "cn".to_owned(),
            ..Default::default()
        },
        &["display_name_attribute"],
    );
    request.etag = before.etag.clone();
    let changed = update(&server, OPERATOR, request.clone()).await.unwrap();
    assert_ne!(changed.etag, before.etag);
    request
        .sso_settings
        .as_mut()
        .unwrap()
        .display_name_attribute = "name".to_owned();
    assert_error(
        update(&server, OPERATOR, request).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let read = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert_eq!(read.display_name_attribute, "cn");
}

#[tokio::test]
async fn an_administrators_settings_change_is_audited_with_certificate_fingerprints() {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let token = server.token_for(&admin).await;
    let settings = configure(&server, &idp, &account.id, &token, Options::default()).await;
    assert!(settings.enabled);
    let fingerprint = &settings.idp_certificate_details[0].sha256_fingerprint;

    let events = audit_events(&server, &account.id, "account.sso_settings_changed").await;
    let event = events
        .first()
        .expect("an account.sso_settings_changed event");
    assert_eq!(event.category, AuditCategory::Account as i32);
    let actor = event.actor.clone().unwrap();
    assert_eq!(actor.r#type, proto::ActorType::User as i32);
    assert_eq!(actor.id, admin.id);
    let recorded = format!("{event:?}");
    assert!(
        recorded.contains(fingerprint.as_str()),
        "the certificate is named by its fingerprint: {recorded}"
    );
    assert!(
        !recorded.contains("BEGIN CERTIFICATE"),
        "no certificate in the log: {recorded}"
    );
}

#[tokio::test]
async fn members_without_user_management_cannot_read_the_sso_settings() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let developer = server
        .add_member(&account.id, "dev@acme.test", Role::Developer)
        .await;
    let token = server.token_for(&developer).await;
    assert_error(
        get_settings(&server, &token, &account.id).await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    assert_error(
        update(
            &server,
            &token,
            update_request(
                &account.id,
                proto::SsoSettings {
                    enabled: true,
                    ..Default::default()
                },
                &["enabled"],
            ),
        )
        .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
}

// ---------------------------------------------------------------------------------------------
// Starting a login

#[tokio::test]
async fn starting_a_login_sends_the_browser_to_the_idp_with_a_request_and_relay_state() {
    let (idp, server, account) = sso_account(Options::default()).await;
    let now = server.clock.now_utc();
    let start = start_login(&server, &account.id).await.unwrap();
    let url = url::Url::parse(&start.redirect_url).unwrap();
    assert_eq!(
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        format!("{}/sso", idp.base)
    );
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(params.contains_key("SAMLRequest"), "{params:?}");
    assert_eq!(params.get("RelayState"), Some(&start.relay_state));
    assert!(!start.relay_state.is_empty() && start.relay_state.len() <= 80);
    let expires = start.expire_time.expect("expire_time").seconds;
    assert!(
        (expires - (now + chrono::Duration::minutes(10)).timestamp()).abs() <= 2,
        "the request is remembered for 10 minutes"
    );
    // The IdP understands the request and posts back the same relay state.
    let page = fetch(&format!(
        "{}&{}",
        start.redirect_url,
        Answer::user(NEWCOMER).query()
    ))
    .await;
    assert_eq!(posted(&page).relay_state, start.relay_state);
}

#[tokio::test]
async fn sso_logins_need_sso_turned_on_and_turning_it_off_keeps_the_settings() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let pending = idp_response(&server, &account.id, &Answer::user(NEWCOMER)).await;
    let off = update(
        &server,
        OPERATOR,
        update_request(&account.id, proto::SsoSettings::default(), &["enabled"]),
    )
    .await
    .unwrap();
    assert!(!off.enabled);
    assert!(!off.idp_entity_id.is_empty() && off.idp_certificates.len() == 1);
    assert_error(
        start_login(&server, &account.id).await,
        Code::FailedPrecondition,
        "SSO_NOT_ENABLED",
    );
    assert_error(
        post(&server, &account.id, &pending).await,
        Code::FailedPrecondition,
        "SSO_NOT_ENABLED",
    );
    assert_eq!(sessions_of(&server, NEWCOMER).await, 0);
    // An unknown account answers the same, so existence is not revealed.
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(
        start_login(&server, &unknown).await,
        Code::FailedPrecondition,
        "SSO_NOT_ENABLED",
    );
    assert_error(
        post(&server, &unknown, &pending).await,
        Code::FailedPrecondition,
        "SSO_NOT_ENABLED",
    );
}

#[tokio::test]
async fn a_response_that_is_not_base64_or_too_large_is_an_invalid_argument() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let start = start_login(&server, &account.id).await.unwrap();
    let with = |saml_response: String, relay_state: &str| Posted {
        saml_response,
        relay_state: relay_state.to_owned(),
    };
    assert_invalid(
        post(
            &server,
            &account.id,
            &with("not base64 at all!".to_owned(), &start.relay_state),
        )
        .await,
        "saml_response",
    );
    assert_invalid(
        post(
            &server,
            &account.id,
            &with(STANDARD.encode(vec![b'<'; 1024 * 1024]), &start.relay_state),
        )
        .await,
        "saml_response",
    );
    assert_invalid(
        post(
            &server,
            &account.id,
            &with(STANDARD.encode("<samlp:Response/>"), &"r".repeat(81)),
        )
        .await,
        "relay_state",
    );
}

// ---------------------------------------------------------------------------------------------
// Logging in

#[tokio::test]
async fn a_new_user_is_provisioned_at_the_first_sso_login() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let response = login_via_idp(
        &server,
        &account.id,
        &Answer::user(NEWCOMER).attr("displayName", "Nell Newcomer"),
    )
    .await
    .expect("the SSO login succeeds");
    assert!(response.user_provisioned);
    let tokens = response.tokens.expect("tokens");
    assert_eq!(tokens.account_id, account.id);
    assert_eq!(tokens.role, DEFAULT_ROLE as i32);
    assert_eq!(
        claims(&tokens.access_token)["amr"],
        serde_json::json!(["saml"])
    );

    let user = member(&server, &account.id, &tokens.user_id).await;
    assert_eq!(user.email, NEWCOMER);
    assert_eq!(user.display_name, "Nell Newcomer");
    assert_eq!(user.role, DEFAULT_ROLE as i32);
    assert_eq!(user.status, proto::MembershipStatus::Active as i32);
    assert!(!user.has_password);

    let provisioned = audit_events(&server, &account.id, "user.provisioned").await;
    let provisioned = provisioned.first().expect("a user.provisioned event");
    assert_eq!(provisioned.category, AuditCategory::UserManagement as i32);
    assert_eq!(
        provisioned.actor.clone().unwrap().r#type,
        proto::ActorType::System as i32
    );
    let logins = audit_events(&server, &account.id, "auth.login_succeeded").await;
    let login = logins.first().expect("an auth.login_succeeded event");
    assert_eq!(meta(login, "method"), "saml", "{login:?}");
    assert_eq!(sessions_of(&server, NEWCOMER).await, 1);

    // The next login finds the member.
    let again = login_via_idp(&server, &account.id, &Answer::user(NEWCOMER))
        .await
        .expect("the second SSO login succeeds");
    assert!(!again.user_provisioned);
    assert_eq!(again.tokens.unwrap().user_id, tokens.user_id);
}

#[tokio::test]
async fn roles_come_from_the_mapping_whatever_the_case_else_from_the_default_role() {
    let (_idp, server, account) = sso_account(Options {
        role_attribute: "role",
        role_mapping: &[
            ("Developers", proto::Role::Developer),
            ("finance", proto::Role::Finance),
        ],
        ..Default::default()
    })
    .await;
    let mapped = tokens(
        login_via_idp(
            &server,
            &account.id,
            &Answer::user("dev@acme.test").attr("role", "DEVELOPERS"),
        )
        .await,
    );
    assert_eq!(mapped.role, proto::Role::Developer as i32);
    let unmapped = tokens(
        login_via_idp(
            &server,
            &account.id,
            &Answer::user("other@acme.test").attr("role", "Contractors"),
        )
        .await,
    );
    assert_eq!(unmapped.role, DEFAULT_ROLE as i32);
    assert_eq!(
        member(&server, &account.id, &unmapped.user_id).await.role,
        DEFAULT_ROLE as i32
    );
}

#[tokio::test]
async fn name_and_role_are_refreshed_at_each_login() {
    let (_idp, server, account) = sso_account(Options {
        role_attribute: "role",
        role_mapping: &[("developers", proto::Role::Developer)],
        ..Default::default()
    })
    .await;
    let first = login_via_idp(
        &server,
        &account.id,
        &Answer::user(NEWCOMER)
            .attr("displayName", "Nell")
            .attr("role", "developers"),
    )
    .await
    .unwrap();
    assert!(first.user_provisioned);
    let user_id = first.tokens.unwrap().user_id;
    assert_eq!(
        member(&server, &account.id, &user_id).await.role,
        proto::Role::Developer as i32
    );

    let second = login_via_idp(
        &server,
        &account.id,
        &Answer::user(NEWCOMER)
            .attr("displayName", "Nell Newcomer")
            .attr("role", "interns"),
    )
    .await
    .unwrap();
    assert!(!second.user_provisioned);
    assert_eq!(second.tokens.unwrap().role, DEFAULT_ROLE as i32);
    let user = member(&server, &account.id, &user_id).await;
    assert_eq!(user.display_name, "Nell Newcomer");
    assert_eq!(user.role, DEFAULT_ROLE as i32);
}

#[tokio::test]
async fn the_display_name_comes_from_the_configured_attribute_else_the_email() {
    let (_idp, server, account) = sso_account(Options {
        display_name_attribute: "cn",
        ..Default::default()
    })
    .await;
    let named = tokens(
        login_via_idp(
            &server,
            &account.id,
            &Answer::user("grace@acme.test")
                .attr("cn", "Grace Hopper")
                .attr("displayName", "Not This One"),
        )
        .await,
    );
    assert_eq!(
        member(&server, &account.id, &named.user_id)
            .await
            .display_name,
        "Grace Hopper"
    );
    let unnamed =
        tokens(login_via_idp(&server, &account.id, &Answer::user("alan@acme.test")).await);
    assert_eq!(
        member(&server, &account.id, &unnamed.user_id)
            .await
            .display_name,
        "alan"
    );
}

#[tokio::test]
async fn an_invited_member_becomes_active_at_the_first_sso_login() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let invited = server
        .invite_member(&account.id, "invited@acme.test", Role::Developer)
        .await;
    assert_eq!(invited.status, proto::MembershipStatus::Invited as i32);
    let response = login_via_idp(&server, &account.id, &Answer::user("invited@acme.test"))
        .await
        .expect("the invited member logs in");
    assert!(!response.user_provisioned, "the person existed already");
    assert_eq!(response.tokens.unwrap().user_id, invited.id);
    assert_eq!(
        member(&server, &account.id, &invited.id).await.status,
        proto::MembershipStatus::Active as i32
    );
}

#[tokio::test]
async fn a_disabled_member_cannot_log_in_with_sso() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let user = server
        .add_member(&account.id, "disabled@acme.test", Role::Developer)
        .await;
    server
        .users()
        .disable_user(with_token(
            &scope_token("users.manage"),
            proto::DisableUserRequest {
                account_id: account.id.clone(),
                user_id: user.id.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    assert_error(
        login_via_idp(&server, &account.id, &Answer::user("disabled@acme.test")).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(sessions_of(&server, "disabled@acme.test").await, 0);
    assert_eq!(
        member(&server, &account.id, &user.id).await.status,
        proto::MembershipStatus::Disabled as i32
    );
}

#[tokio::test]
async fn at_the_user_limit_new_people_are_refused_and_members_still_log_in() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    server
        .add_member(&account.id, "member@acme.test", Role::Developer)
        .await;
    // The administrator and the member: the account is full.
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: account.id.clone(),
                max_users: Some(2),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_error(
        login_via_idp(&server, &account.id, &Answer::user(NEWCOMER)).await,
        Code::ResourceExhausted,
        "USER_LIMIT_REACHED",
    );
    assert!(person(&server, NEWCOMER).await.is_none());
    let member =
        tokens(login_via_idp(&server, &account.id, &Answer::user("member@acme.test")).await);
    assert_eq!(member.account_id, account.id);
}

#[tokio::test]
async fn enforced_mfa_does_not_ask_sso_users_for_a_code() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    server
        .accounts()
        .update_account_settings(with_token(
            OPERATOR,
            proto::UpdateAccountSettingsRequest {
                account_id: account.id.clone(),
                settings: Some(proto::AccountSettings { enforce_mfa: true }),
                update_mask: Some(FieldMask {
                    paths: vec!["enforce_mfa".to_owned()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let tokens = tokens(login_via_idp(&server, &account.id, &Answer::user(NEWCOMER)).await);
    let refreshed = server
        .auth()
        .refresh_session(proto::RefreshSessionRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect("the SSO session refreshes under enforced MFA")
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(refreshed.session_id, tokens.session_id);
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
}

#[tokio::test]
async fn the_last_active_administrator_keeps_the_role_whatever_the_idp_says() {
    let (_idp, server, account) = sso_account(Options {
        role_attribute: "role",
        role_mapping: &[("viewers", proto::Role::MediaLibraryViewOnly)],
        ..Default::default()
    })
    .await;
    let first = server
        .add_member(&account.id, "first@acme.test", Role::AccountAdministrator)
        .await;
    let second = server
        .add_member(&account.id, "second@acme.test", Role::AccountAdministrator)
        .await;
    // admin@acme.test is only invited: first and second are the active administrators.
    let as_viewer = |email: &str| Answer::user(email).attr("role", "viewers");
    let demoted = tokens(login_via_idp(&server, &account.id, &as_viewer("second@acme.test")).await);
    assert_eq!(demoted.role, proto::Role::MediaLibraryViewOnly as i32);
    assert_eq!(
        member(&server, &account.id, &second.id).await.role,
        proto::Role::MediaLibraryViewOnly as i32
    );
    let kept = tokens(login_via_idp(&server, &account.id, &as_viewer("first@acme.test")).await);
    assert_eq!(kept.role, proto::Role::AccountAdministrator as i32);
    assert_eq!(
        member(&server, &account.id, &first.id).await.role,
        proto::Role::AccountAdministrator as i32
    );
}

#[tokio::test]
async fn responses_signed_on_the_response_the_assertion_or_both_log_in() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    for sign in ["response", "assertion", "both"] {
        let email = format!("{sign}@acme.test");
        let tokens =
            tokens(login_via_idp(&server, &account.id, &Answer::user(&email).sign(sign)).await);
        assert_eq!(tokens.account_id, account.id, "sign={sign}");
        assert_eq!(sessions_of(&server, &email).await, 1, "sign={sign}");
    }
}

#[tokio::test]
async fn during_a_certificate_rotation_both_keys_log_in() {
    let (_idp, server, account) = sso_account(Options {
        both_certificates: true,
        ..Default::default()
    })
    .await;
    tokens(login_via_idp(&server, &account.id, &Answer::user("old@acme.test")).await);
    tokens(
        login_via_idp(
            &server,
            &account.id,
            &Answer::user("new@acme.test").variant("other_key"),
        )
        .await,
    );
    assert_eq!(sessions_of(&server, "new@acme.test").await, 1);
}

// ---------------------------------------------------------------------------------------------
// Refused responses: each answers UNAUTHENTICATED SAML_RESPONSE_INVALID and is audited with its
// reason.

#[tokio::test]
async fn a_response_altered_after_signing_is_refused() {
    assert_variant_refused("tampered", &["signature"]).await;
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    assert_variant_refused("expired", &["expired"]).await;
}

#[tokio::test]
async fn an_assertion_not_valid_yet_is_refused() {
    assert_variant_refused("not_yet_valid", &["not_yet_valid"]).await;
}

#[tokio::test]
async fn an_assertion_for_another_service_provider_is_refused() {
    assert_variant_refused("wrong_audience", &["audience"]).await;
}

#[tokio::test]
async fn a_response_addressed_to_another_acs_url_is_refused() {
    assert_variant_refused("wrong_recipient", &["destination", "recipient"]).await;
}

#[tokio::test]
async fn a_response_from_another_issuer_is_refused() {
    assert_variant_refused("wrong_issuer", &["issuer"]).await;
}

#[tokio::test]
async fn an_unsigned_response_is_refused() {
    assert_variant_refused("unsigned", &["signature"]).await;
}

#[tokio::test]
async fn a_response_signed_with_a_key_not_configured_is_refused() {
    assert_variant_refused("other_key", &["signature"]).await;
}

#[tokio::test]
async fn a_sha1_signature_is_refused() {
    assert_variant_refused("sha1", &["algorithm"]).await;
}

#[tokio::test]
async fn an_idp_that_answers_a_failure_status_logs_nobody_in() {
    assert_variant_refused("status_failure", &["status"]).await;
}

#[tokio::test]
async fn a_response_with_a_dtd_is_refused() {
    assert_variant_refused("dtd", &["shape"]).await;
}

#[tokio::test]
async fn a_second_unsigned_assertion_before_the_signed_one_is_refused() {
    assert_variant_refused("xsw_second_assertion", &["shape"]).await;
}

#[tokio::test]
async fn a_second_unsigned_assertion_after_the_signed_one_is_refused() {
    assert_variant_refused("xsw_second_assertion_after", &["shape"]).await;
}

#[tokio::test]
async fn a_signed_assertion_moved_into_extensions_is_refused() {
    assert_variant_refused("xsw_extensions", &["shape"]).await;
}

#[tokio::test]
async fn a_signed_assertion_moved_into_advice_is_refused() {
    assert_variant_refused("xsw_advice", &["shape"]).await;
}

#[tokio::test]
async fn an_unsigned_assertion_reusing_the_signed_ones_id_is_refused() {
    assert_variant_refused("xsw_duplicate_id", &["shape"]).await;
}

#[tokio::test]
async fn a_comment_in_the_name_id_cannot_log_in_as_someone_else() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    // The IdP signs victim@acme.test<!---->.evil.test: a reader of the first text node only
    // would see the victim, an existing member.
    let victim = server
        .add_member(&account.id, "victim@acme.test", Role::AccountAdministrator)
        .await;
    let result = login_via_idp(
        &server,
        &account.id,
        &Answer::user("victim@acme.test.evil.test").variant("comment_nameid"),
    )
    .await;
    assert_refused(&server, &account.id, result, &["shape"]).await;
    assert_eq!(sessions_of(&server, &victim.email).await, 0);
    assert!(
        person(&server, "victim@acme.test.evil.test")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_response_posted_twice_logs_in_once() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let response = idp_response(&server, &account.id, &Answer::user(NEWCOMER)).await;
    tokens(post(&server, &account.id, &response).await);
    let again = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, again, &["replay", "in_response_to"]).await;
    assert_eq!(sessions_of(&server, NEWCOMER).await, 1);
}

#[tokio::test]
async fn an_idp_initiated_response_posted_twice_logs_in_once() {
    let (idp, server, account) = sso_account(Options {
        allow_idp_initiated: true,
        ..Default::default()
    })
    .await;
    let settings = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert!(settings.allow_idp_initiated);
    let response = idp.initiate(&settings, &Answer::user(NEWCOMER)).await;
    let first = post(&server, &account.id, &response)
        .await
        .expect("an allowed IdP-initiated login succeeds");
    assert!(first.user_provisioned);
    let again = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, again, &["replay"]).await;
    assert_eq!(sessions_of(&server, NEWCOMER).await, 1);
}

#[tokio::test]
async fn idp_initiated_logins_are_refused_unless_the_account_allows_them() {
    let (idp, server, account) = sso_account(Options::default()).await;
    let settings = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    assert!(!settings.allow_idp_initiated, "off by default");
    let response = idp.initiate(&settings, &Answer::user(NEWCOMER)).await;
    let result = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, result, &["in_response_to"]).await;
    assert!(person(&server, NEWCOMER).await.is_none());
}

#[tokio::test]
async fn a_response_posted_with_another_relay_state_is_refused() {
    // Even where IdP-initiated logins are allowed: a response naming a request is checked
    // against it.
    let (_idp, server, account) = sso_account(Options {
        allow_idp_initiated: true,
        ..Default::default()
    })
    .await;
    let mut response = idp_response(&server, &account.id, &Answer::user(NEWCOMER)).await;
    response.relay_state = start_login(&server, &account.id).await.unwrap().relay_state;
    let result = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, result, &["relay_state"]).await;
    assert!(person(&server, NEWCOMER).await.is_none());
}

#[tokio::test]
async fn a_response_for_one_account_is_refused_by_another() {
    let idp = Idp::start().await;
    let server = TestServer::start().await;
    let (acme, _) = server.create_account("Acme", "admin@acme.test").await;
    let (beta, _) = server.create_account("Beta", "admin@beta.test").await;
    for account in [&acme, &beta] {
        configure(&server, &idp, &account.id, OPERATOR, Options::default()).await;
    }
    let for_acme = idp_response(&server, &acme.id, &Answer::user(NEWCOMER)).await;
    let result = post(&server, &beta.id, &for_acme).await;
    assert_refused(
        &server,
        &beta.id,
        result,
        &["audience", "destination", "recipient", "in_response_to"],
    )
    .await;
    assert_eq!(sessions_of(&server, NEWCOMER).await, 0);
}

#[tokio::test]
async fn an_assertion_past_its_end_by_the_servers_clock_is_refused() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    let response = idp_response(&server, &account.id, &Answer::user(NEWCOMER)).await;
    // The IdP's assertions end 5 minutes after they are made; 60 s of skew are forgiven. The
    // request itself is still valid (10 minutes).
    server.clock.advance(chrono::Duration::minutes(8));
    let result = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, result, &["expired"]).await;
    assert!(person(&server, NEWCOMER).await.is_none());
}

#[tokio::test]
async fn a_login_not_completed_within_ten_minutes_is_refused() {
    let (_idp, server, account) = sso_account(Options::default()).await;
    // The IdP's `not_yet_valid` assertions hold from 10 to 15 minutes after they are made: with the
    // server's clock 11 minutes ahead they are current, and only the request's age tells these
    // two logins apart.
    let stale = idp_response(
        &server,
        &account.id,
        &Answer::user(NEWCOMER).variant("not_yet_valid"),
    )
    .await;
    server.clock.advance(chrono::Duration::minutes(11));
    let fresh = idp_response(
        &server,
        &account.id,
        &Answer::user("fresh@acme.test").variant("not_yet_valid"),
    )
    .await;
    tokens(post(&server, &account.id, &fresh).await);
    let result = post(&server, &account.id, &stale).await;
    assert_refused(&server, &account.id, result, &["in_response_to"]).await;
    assert!(person(&server, NEWCOMER).await.is_none());
}

#[tokio::test]
async fn housekeeping_forgets_started_logins_and_assertion_ids_after_they_end() {
    use identity::store::entities::{sso_assertion, sso_request};
    use sea_orm::{EntityTrait, PaginatorTrait};
    let (idp, server, account) = sso_account(Options {
        allow_idp_initiated: true,
        ..Default::default()
    })
    .await;
    let settings = get_settings(&server, OPERATOR, &account.id).await.unwrap();
    // A login started and never finished, and an IdP-initiated one that logged in.
    start_login(&server, &account.id).await.unwrap();
    let response = idp.initiate(&settings, &Answer::user(NEWCOMER)).await;
    tokens(post(&server, &account.id, &response).await);
    let db = server.app.store.connection();
    let rows = || async {
        (
            sso_request::Entity::find().count(db).await.unwrap(),
            sso_assertion::Entity::find().count(db).await.unwrap(),
        )
    };
    assert_eq!(rows().await, (1, 1));
    let housekeeping = || identity::housekeeping::run_once(&server.app.store, &server.app.clock);
    housekeeping().await.unwrap();
    assert_eq!(rows().await, (1, 1), "nothing has ended yet");
    // The request ends after 10 minutes, the assertion id when the assertion does (5 minutes at
    // this identity provider) plus the allowed skew.
    server.clock.advance(chrono::Duration::minutes(11));
    housekeeping().await.unwrap();
    assert_eq!(rows().await, (0, 0));
    // The same response is still refused: by its time now.
    let again = post(&server, &account.id, &response).await;
    assert_refused(&server, &account.id, again, &["expired"]).await;
}
