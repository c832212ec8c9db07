//! Google login against a real OpenID provider on loopback (`tests/oidc/provider.mjs`, built on
//! the certified `oidc-provider`), started per test: discovery, JWKS, the authorization code flow
//! with PKCE and nonce, the token endpoint, key rotation, and the provider going away.

use std::{collections::HashMap, process::Stdio, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Duration as Span;
use identity::{
    auth::google::{GoogleConfig, GoogleError, GoogleVerifier, Rejection},
    clock::{Clock, ManualClock},
    config::Secret,
    domain::error::DomainError,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{DAM, TestDb, TestServer, assert_error, reason, with_token};

const CLIENT_ID: &str = "identity-test";
const CLIENT_SECRET: &str = "identity-test-secret";
const REDIRECT_URI: &str = "http://127.0.0.1/google/callback";
const OTHER_CLIENT_ID: &str = "other-app";
const OTHER_CLIENT_SECRET: &str = "other-app-secret";
const OTHER_REDIRECT_URI: &str = "http://127.0.0.1/other/callback";

/// The OpenID provider process; killed when dropped.
struct Provider {
    issuer: String,
    child: Child,
}

impl Provider {
    async fn start() -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "the test OpenID provider is not installed: run tests/run, or `npm ci --prefix tests/oidc` \
             (needs Node.js 20 or later and npm)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `node` for the test OpenID provider ({e}): install Node.js 20 or later and run tests/run")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the provider's stdout") {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return issuer.trim().to_owned();
                }
            }
            panic!("the test OpenID provider exited before it was ready (see its stderr above)")
        })
        .await
        .expect("the test OpenID provider did not start within 30 s");
        // Keep draining stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { issuer, child }
    }

    /// Makes the provider sign with a new key from now on; returns its `kid`.
    async fn rotate_keys(&self) -> String {
        let response: serde_json::Value = http()
            .post(format!("{}/__test/rotate-keys", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["kid"].as_str().unwrap().to_owned()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn config(issuer: &str) -> GoogleConfig {
    GoogleConfig {
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        issuer: issuer.to_owned(),
        redirect_uris: vec![REDIRECT_URI.to_owned()],
    }
}

fn verifier(issuer: &str) -> GoogleVerifier {
    GoogleVerifier::new(config(issuer)).unwrap()
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the browser and the app hold after an authorization: the code, and the PKCE verifier and
/// nonce the app generated.
struct Authorization {
    code: String,
    code_verifier: String,
    nonce: String,
}

/// A browser with a cookie jar of its own, driving the provider's login and consent pages.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: http(),
            cookies: HashMap::new(),
        }
    }

    /// Sends the request with the jar's cookies, keeps the cookies set, and returns the
    /// redirect's absolute target.
    async fn redirect(&mut self, request: reqwest::RequestBuilder) -> url::Url {
        let cookie = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request.header("cookie", cookie).send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let cleared = set.to_str().unwrap().contains("expires=Thu, 01 Jan 1970");
            if value.is_empty() || cleared {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let base = response.url().clone();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        match location {
            Some(location) if status.is_redirection() => base.join(&location).unwrap(),
            _ => panic!(
                "expected a redirect from {base}, got {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// Signs in at the provider as `email` for `client_id` and consents, as a person would:
    /// authorize (PKCE S256 + nonce) -> login page -> consent page -> back to `redirect_uri`.
    async fn authorize(
        &mut self,
        issuer: &str,
        client_id: &str,
        redirect_uri: &str,
        email: &str,
    ) -> Authorization {
        let code_verifier = random();
        let nonce = random();
        let state = random();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let authorize = url::Url::parse_with_params(
            &format!("{issuer}/auth"),
            [
                ("client_id", client_id),
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("redirect_uri", redirect_uri),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("nonce", &nonce),
                ("state", &state),
            ],
        )
        .unwrap();
        let login = self.redirect(self.http.get(authorize)).await;
        assert!(login.path().starts_with("/interaction/"), "{login}");
        let resume = self
            .redirect(self.http.post(login).form(&[
                ("prompt", "login"),
                ("login", email),
                ("password", "any"),
            ]))
            .await;
        let consent = self.redirect(self.http.get(resume)).await;
        assert!(consent.path().starts_with("/interaction/"), "{consent}");
        let resume = self
            .redirect(self.http.post(consent).form(&[("prompt", "consent")]))
            .await;
        let callback = self.redirect(self.http.get(resume)).await;
        assert!(
            callback.as_str().starts_with(redirect_uri),
            "expected the redirect URI, got {callback}"
        );
        let params: HashMap<_, _> = callback.query_pairs().into_owned().collect();
        assert_eq!(params.get("state"), Some(&state), "{callback}");
        Authorization {
            code: params
                .get("code")
                .unwrap_or_else(|| panic!("no code in {callback}"))
                .clone(),
            code_verifier,
            nonce,
        }
    }
}

/// An ID token for `email` through the whole code flow, and the nonce it was requested with.
async fn id_token(provider: &Provider, verifier: &GoogleVerifier, email: &str) -> (String, String) {
    let auth = Browser::new()
        .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, email)
        .await;
    let token = verifier
        .exchange_code(&auth.code, &auth.code_verifier, REDIRECT_URI)
        .await
        .unwrap();
    (token, auth.nonce)
}

/// The `ErrorInfo.reason` the client would see.
fn status_reason(error: GoogleError) -> (tonic::Code, String) {
    let status = tonic::Status::from(DomainError::from(error));
    (status.code(), reason(&status))
}

fn assert_credential_invalid(result: Result<impl std::fmt::Debug, GoogleError>, why: Rejection) {
    let error = result.expect_err("the credential must be refused");
    assert_eq!(error, GoogleError::CredentialInvalid(why));
    assert_eq!(
        status_reason(error),
        (
            tonic::Code::Unauthenticated,
            "GOOGLE_CREDENTIAL_INVALID".to_owned()
        )
    );
}

#[tokio::test]
async fn code_flow_with_pkce_yields_the_verified_identity() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let clock = ManualClock::default();

    let auth = Browser::new()
        .authorize(
            &provider.issuer,
            CLIENT_ID,
            REDIRECT_URI,
            "alice@example.com",
        )
        .await;
    let token = verifier
        .exchange_code(&auth.code, &auth.code_verifier, REDIRECT_URI)
        .await
        .unwrap();
    let identity = verifier
        .verify_id_token(&token, &auth.nonce, clock.now())
        .await
        .unwrap();
    assert_eq!(identity.email, "alice@example.com");
    assert_eq!(identity.subject, "alice@example.com");
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Test alice"));

    // The code is single use.
    assert_credential_invalid(
        verifier
            .exchange_code(&auth.code, &auth.code_verifier, REDIRECT_URI)
            .await,
        Rejection::CodeRefused,
    );
}

#[tokio::test]
async fn a_code_with_the_wrong_pkce_verifier_is_refused() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let auth = Browser::new()
        .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, "bob@example.com")
        .await;
    assert_credential_invalid(
        verifier
            .exchange_code(&auth.code, &random(), REDIRECT_URI)
            .await,
        Rejection::CodeRefused,
    );
}

#[tokio::test]
async fn a_token_with_another_nonce_is_refused() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let now = ManualClock::default().now();
    let (token, nonce) = id_token(&provider, &verifier, "carol@example.com").await;

    assert_credential_invalid(
        verifier.verify_id_token(&token, &random(), now).await,
        Rejection::Nonce,
    );
    assert_credential_invalid(
        verifier.verify_id_token(&token, "", now).await,
        Rejection::Nonce,
    );
    let mut longer = nonce.clone();
    longer.push('x');
    assert_credential_invalid(
        verifier.verify_id_token(&token, &longer, now).await,
        Rejection::Nonce,
    );
    assert!(verifier.verify_id_token(&token, &nonce, now).await.is_ok());
}

#[tokio::test]
async fn a_token_issued_to_another_client_is_refused() {
    let provider = Provider::start().await;
    let ours = verifier(&provider.issuer);
    let theirs = GoogleVerifier::new(GoogleConfig {
        client_id: OTHER_CLIENT_ID.to_owned(),
        client_secret: Some(Secret::new(OTHER_CLIENT_SECRET)),
        issuer: provider.issuer.clone(),
        redirect_uris: vec![OTHER_REDIRECT_URI.to_owned()],
    })
    .unwrap();
    let now = ManualClock::default().now();

    // Another application's login, replayed to us.
    let auth = Browser::new()
        .authorize(
            &provider.issuer,
            OTHER_CLIENT_ID,
            OTHER_REDIRECT_URI,
            "dave@example.com",
        )
        .await;
    let token = theirs
        .exchange_code(&auth.code, &auth.code_verifier, OTHER_REDIRECT_URI)
        .await
        .unwrap();
    assert!(
        theirs
            .verify_id_token(&token, &auth.nonce, now)
            .await
            .is_ok()
    );
    assert_credential_invalid(
        ours.verify_id_token(&token, &auth.nonce, now).await,
        Rejection::Audience,
    );

    // Its code cannot be redeemed with our client either.
    let auth = Browser::new()
        .authorize(
            &provider.issuer,
            OTHER_CLIENT_ID,
            OTHER_REDIRECT_URI,
            "dave@example.com",
        )
        .await;
    let ours_with_their_uri = GoogleVerifier::new(GoogleConfig {
        redirect_uris: vec![OTHER_REDIRECT_URI.to_owned()],
        ..config(&provider.issuer)
    })
    .unwrap();
    assert_credential_invalid(
        ours_with_their_uri
            .exchange_code(&auth.code, &auth.code_verifier, OTHER_REDIRECT_URI)
            .await,
        Rejection::CodeRefused,
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let provider = Provider::start().await;
    let other = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let now = ManualClock::default().now();
    let (token, nonce) = id_token(&other, &self::verifier(&other.issuer), "erin@example.com").await;
    // Signed by a key ours does not publish, under another `iss`.
    assert_credential_invalid(
        verifier.verify_id_token(&token, &nonce, now).await,
        Rejection::UnknownKey,
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let clock = ManualClock::default();
    let (token, nonce) = id_token(&provider, &verifier, "frank@example.com").await;

    // The provider's ID tokens live an hour.
    clock.advance(Span::minutes(50));
    assert!(
        verifier
            .verify_id_token(&token, &nonce, clock.now())
            .await
            .is_ok()
    );
    clock.advance(Span::minutes(15));
    assert_credential_invalid(
        verifier.verify_id_token(&token, &nonce, clock.now()).await,
        Rejection::Expired,
    );
    // Nor is a token issued in the future (a clock far behind).
    let past = clock.now() - Span::hours(3);
    assert_credential_invalid(
        verifier.verify_id_token(&token, &nonce, past).await,
        Rejection::NotYetValid,
    );
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let now = ManualClock::default().now();
    let (token, nonce) = id_token(&provider, &verifier, "grace@example.com").await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // One character of the signature changed.
    let mut signature = parts[2].to_owned().into_bytes();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(signature).unwrap()
    );
    assert_credential_invalid(
        verifier.verify_id_token(&forged, &nonce, now).await,
        Rejection::Signature,
    );

    // Another email under the original signature.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["email"] = "mallory@example.com".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_credential_invalid(
        verifier.verify_id_token(&forged, &nonce, now).await,
        Rejection::Signature,
    );

    // An unsigned token ("alg": "none") is not even considered.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_credential_invalid(
        verifier.verify_id_token(&unsigned, &nonce, now).await,
        Rejection::Malformed,
    );
    assert_credential_invalid(
        verifier.verify_id_token("not a jwt", &nonce, now).await,
        Rejection::Malformed,
    );
}

#[tokio::test]
async fn an_unverified_email_is_refused_with_its_own_reason() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let now = ManualClock::default().now();
    let (token, nonce) = id_token(&provider, &verifier, "unverified-henry@example.com").await;
    let error = verifier
        .verify_id_token(&token, &nonce, now)
        .await
        .unwrap_err();
    assert_eq!(error, GoogleError::EmailNotVerified);
    assert_eq!(
        status_reason(error),
        (
            tonic::Code::Unauthenticated,
            "GOOGLE_EMAIL_NOT_VERIFIED".to_owned()
        )
    );
    // An otherwise bad token says so first: the email's state is only told for valid tokens.
    assert_credential_invalid(
        verifier.verify_id_token(&token, "other", now).await,
        Rejection::Nonce,
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_first_seen() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let clock = ManualClock::default();
    let (old_token, old_nonce) = id_token(&provider, &verifier, "ivan@example.com").await;
    verifier
        .verify_id_token(&old_token, &old_nonce, clock.now())
        .await
        .unwrap();

    let new_kid = provider.rotate_keys().await;
    let (new_token, new_nonce) = id_token(&provider, &verifier, "ivan@example.com").await;
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));

    // The keys were fetched moments ago: an unknown kid does not make us fetch them again yet
    // (forged kids cannot turn us into a load generator against the provider).
    assert_credential_invalid(
        verifier
            .verify_id_token(&new_token, &new_nonce, clock.now())
            .await,
        Rejection::UnknownKey,
    );
    clock.advance(Span::seconds(31));
    let identity = verifier
        .verify_id_token(&new_token, &new_nonce, clock.now())
        .await
        .unwrap();
    assert_eq!(identity.email, "ivan@example.com");
    // The old key is still published, and still verifies the tokens it signed.
    assert!(
        verifier
            .verify_id_token(&old_token, &old_nonce, clock.now())
            .await
            .is_ok()
    );
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, GoogleError>) {
    let error = result.expect_err("the provider is away");
    assert_eq!(error, GoogleError::Unavailable);
    assert_eq!(
        status_reason(error),
        (tonic::Code::Unavailable, "GOOGLE_UNAVAILABLE".to_owned())
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let provider = Provider::start().await;
    let verifier = verifier(&provider.issuer);
    let clock = ManualClock::default();
    let (token, nonce) = id_token(&provider, &verifier, "judy@example.com").await;
    verifier
        .verify_id_token(&token, &nonce, clock.now())
        .await
        .unwrap();
    let auth = Browser::new()
        .authorize(
            &provider.issuer,
            CLIENT_ID,
            REDIRECT_URI,
            "judy@example.com",
        )
        .await;
    provider.stop().await;

    // The token endpoint is gone.
    assert_unavailable(
        verifier
            .exchange_code(&auth.code, &auth.code_verifier, REDIRECT_URI)
            .await,
    );
    // Keys already fetched keep verifying while the provider is away, even past their age of an
    // hour (the token itself, issued for an hour, is still within its minute of leeway).
    clock.advance(Span::seconds(3630));
    assert!(
        verifier
            .verify_id_token(&token, &nonce, clock.now())
            .await
            .is_ok()
    );

    // Nothing answers at the issuer at all: discovery fails.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let nowhere = self::verifier(&closed);
    assert_unavailable(nowhere.verify_id_token(&token, &nonce, clock.now()).await);
    assert_unavailable(
        nowhere
            .exchange_code(&auth.code, &auth.code_verifier, REDIRECT_URI)
            .await,
    );
}

#[tokio::test]
async fn a_redirect_uri_not_configured_is_an_invalid_argument() {
    // Checked before anything is sent: no provider is needed to refuse it.
    let verifier = verifier("http://127.0.0.1:9");
    for uri in [
        "http://127.0.0.1/other/callback",
        "http://127.0.0.1/google/callback/",
        "https://evil.example/google/callback",
        "",
    ] {
        let error = verifier
            .exchange_code("code", &random(), uri)
            .await
            .unwrap_err();
        assert_eq!(error, GoogleError::RedirectUriNotAllowed);
        let status = tonic::Status::from(DomainError::from(error));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(reason(&status), "INVALID_ARGUMENT");
        use tonic_types::StatusExt;
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| v.field.clone())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(fields, ["authorization_code.redirect_uri"]);
    }
}

/// A server whose Google login trusts `provider`.
async fn server_for(provider: &Provider) -> TestServer {
    let issuer = provider.issuer.clone();
    TestServer::start_on(std::sync::Arc::new(TestDb::new().await), move |c| {
        c.google = Some(config(&issuer));
        c.outbox_interval = Duration::from_secs(3600);
    })
    .await
}

fn with_code(auth: Authorization) -> identity::proto::LoginWithGoogleRequest {
    use identity::proto::{GoogleAuthorizationCode, login_with_google_request::Credential};
    identity::proto::LoginWithGoogleRequest {
        credential: Some(Credential::AuthorizationCode(GoogleAuthorizationCode {
            code: auth.code,
            code_verifier: auth.code_verifier,
            redirect_uri: REDIRECT_URI.to_owned(),
            nonce: auth.nonce,
        })),
        account_id: String::new(),
    }
}

/// The caller's own user, by their access token.
async fn my_profile(server: &TestServer, access_token: &str) -> identity::proto::User {
    server
        .users()
        .get_my_profile(with_token(
            access_token,
            identity::proto::GetMyProfileRequest {},
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

#[tokio::test]
async fn an_invited_user_logs_in_with_google_by_the_same_email() {
    use identity::proto::{self, login_with_google_response::Outcome};
    let provider = Provider::start().await;
    let server = server_for(&provider).await;
    let (account, admin) = server.create_account("Acme", "Ada@Acme.test").await;
    assert_eq!(admin.status, proto::MembershipStatus::Invited as i32);

    let auth = Browser::new()
        .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, "ada@acme.test")
        .await;
    let outcome = server
        .auth()
        .login_with_google(with_code(auth))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    let Outcome::Tokens(tokens) = outcome else {
        panic!("expected tokens, got {outcome:?}");
    };
    assert_eq!(tokens.account_id, account.id);
    let me = my_profile(&server, &tokens.access_token).await;
    assert_eq!(
        me.status,
        proto::MembershipStatus::Active as i32,
        "the Google login accepted the invitation"
    );
    assert!(!me.has_password);
    let info = server
        .auth()
        .validate_token(with_token(
            DAM,
            proto::ValidateTokenRequest {
                access_token: tokens.access_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.amr, ["google"]);
    provider.stop().await;
}

#[tokio::test]
async fn an_invited_account_chosen_after_a_google_login_is_accepted() {
    use identity::proto::{self, login_with_google_response::Outcome};
    let provider = Provider::start().await;
    let server = server_for(&provider).await;
    // Ada is ACTIVE in Acme and invited to Beta.
    let (acme, ada) = server.create_account("Acme", "ada@acme.test").await;
    server.activate(&ada).await;
    let (beta, _) = server.create_account("Beta", "ada@acme.test").await;

    let auth = Browser::new()
        .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, "ada@acme.test")
        .await;
    let outcome = server
        .auth()
        .login_with_google(with_code(auth))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    let Outcome::AccountSelection(selection) = outcome else {
        panic!("expected an account selection, got {outcome:?}");
    };
    let offered: Vec<&str> = selection
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(offered, [acme.id.as_str(), beta.id.as_str()]);
    let statuses: Vec<i32> = selection.accounts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [
            proto::MembershipStatus::Active as i32,
            proto::MembershipStatus::Invited as i32
        ]
    );
    // An account never offered is refused, saying so (not "email or password"), and the
    // selection is spent.
    let (gamma, _) = server.create_account("Gamma", "someone@gamma.test").await;
    let refused = server
        .auth()
        .select_account(proto::SelectAccountRequest {
            selection_token: selection.selection_token.clone(),
            account_id: gamma.id.clone(),
        })
        .await;
    let status = assert_error(refused, tonic::Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert!(status.message().contains("cannot be entered"), "{status:?}");
    let outcome = server
        .auth()
        .login_with_google(with_code(
            Browser::new()
                .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, "ada@acme.test")
                .await,
        ))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    let Outcome::AccountSelection(selection) = outcome else {
        panic!("expected an account selection, got {outcome:?}");
    };

    let tokens = server
        .auth()
        .select_account(proto::SelectAccountRequest {
            selection_token: selection.selection_token,
            account_id: beta.id.clone(),
        })
        .await
        .expect("an offered invited account can be chosen")
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(tokens.account_id, beta.id);
    let me = my_profile(&server, &tokens.access_token).await;
    assert_eq!(
        me.status,
        proto::MembershipStatus::Active as i32,
        "the choice accepted the invitation"
    );
    assert_eq!(me.invitation_expire_time, None);
    provider.stop().await;
}

#[tokio::test]
async fn google_logins_of_unknown_or_unverified_emails_are_refused() {
    let provider = Provider::start().await;
    let server = server_for(&provider).await;
    server.create_account("Acme", "ada@acme.test").await;

    let stranger = Browser::new()
        .authorize(
            &provider.issuer,
            CLIENT_ID,
            REDIRECT_URI,
            "stranger@acme.test",
        )
        .await;
    assert_error(
        server.auth().login_with_google(with_code(stranger)).await,
        tonic::Code::Unauthenticated,
        "NO_MATCHING_USER",
    );

    server
        .create_account("Beta", "unverified-bea@acme.test")
        .await;
    let unverified = Browser::new()
        .authorize(
            &provider.issuer,
            CLIENT_ID,
            REDIRECT_URI,
            "unverified-bea@acme.test",
        )
        .await;
    assert_error(
        server.auth().login_with_google(with_code(unverified)).await,
        tonic::Code::Unauthenticated,
        "GOOGLE_EMAIL_NOT_VERIFIED",
    );
    // A nonce that is not the one of the authorization is refused.
    let mut replayed = with_code(
        Browser::new()
            .authorize(&provider.issuer, CLIENT_ID, REDIRECT_URI, "ada@acme.test")
            .await,
    );
    if let Some(identity::proto::login_with_google_request::Credential::AuthorizationCode(code)) =
        replayed.credential.as_mut()
    {
        code.nonce = "another-nonce".into();
    }
    assert_error(
        server.auth().login_with_google(replayed).await,
        tonic::Code::Unauthenticated,
        "GOOGLE_CREDENTIAL_INVALID",
    );
    provider.stop().await;
}
