//! What an OpenTelemetry collector receives from the production-shaped binary: an OTLP receiver on
//! loopback takes its spans and metrics, and the tests read them as a dashboard would: the calls'
//! spans and durations, their children (statements, password hashes), an email's SES call, the
//! login and hashing-pool metrics, and never a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::cli::Running;

/// What the receiver was sent.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().spans.extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/gRPC receiver on loopback, for traces and metrics.
struct Collector {
    receiver: Receiver,
    port: u16,
    serving: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Collector {
    async fn start() -> Self {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(MetricsServiceServer::new(receiver.clone()))
                .serve_with_incoming(tokio_stream_from(listener)),
        );
        Self {
            receiver,
            port,
            serving,
        }
    }

    /// The variables that send a service's telemetry here, soon: spans every 100 ms, metrics
    /// every 300 ms.
    fn env(&self) -> [(&'static str, String); 3] {
        [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    }

    /// Stops receiving; what was received.
    fn finish(self) -> Received {
        self.serving.abort();
        std::mem::take(&mut *self.receiver.0.lock().unwrap())
    }
}

#[tokio::test]
async fn a_collector_receives_rpc_spans_and_durations_by_the_conventions_and_no_secret() {
    let collector = Collector::start().await;
    let dir = std::env::temp_dir().join(format!("identity-otlp-{}", uuid::Uuid::new_v4()));
    let mut env = vec![
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
    ];
    env.extend(collector.env());
    let running = Running::start(&env).await;
    let channel = running.channel().await;
    let password = "not-anybodys-password-7f3e";
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = tonic::Request::new(identity::proto::LoginRequest {
        email: "nobody@example.com".into(),
        password: password.into(),
        account_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let auth_channel = channel.clone();
    let mut auth = identity::proto::auth_service_client::AuthServiceClient::new(channel);
    auth.login(request).await.unwrap_err();
    auth.get_jwks(identity::proto::GetJwksRequest {})
        .await
        .unwrap();
    // Two access checks as the operator: the account's access data is loaded once, then read
    // from memory.
    let banner = running.banner.clone().unwrap();
    let operator = running.commands()[1]
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    let mut access =
        identity::proto::access_service_client::AccessServiceClient::new(auth_channel.clone());
    for _ in 0..2 {
        let mut check = tonic::Request::new(identity::proto::CheckAccessRequest {
            account_id: banner["bootstrap_account"].as_str().unwrap().to_owned(),
            user_id: uuid::Uuid::now_v7().to_string(),
            target: Some(identity::proto::check_access_request::Target::Permission(
                "users.manage".into(),
            )),
            ..Default::default()
        });
        check.metadata_mut().insert(
            "authorization",
            format!("Bearer {operator}").parse().unwrap(),
        );
        let _ = access.check_access(check).await;
    }
    // SIGTERM: the service flushes its spans and metrics as it stops.
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.stop().await;
    let received = collector.finish();
    let _ = std::fs::remove_dir_all(dir);

    let login = received
        .spans
        .iter()
        .find(|s| s.name == "identity.v1.AuthService/Login")
        .unwrap_or_else(|| {
            panic!(
                "no Login span among {:?}",
                received.spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    // A server span under the caller's trace, with the RPC conventions' attributes.
    assert_eq!(hex(&login.trace_id), trace_id);
    assert_eq!(hex(&login.parent_span_id), "b7ad6b7169203331");
    assert_eq!(login.kind, 2, "SPAN_KIND_SERVER");
    let attr = |key| attribute(&login.attributes, key).map(text);
    assert_eq!(attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr("rpc.service").as_deref(),
        Some("identity.v1.AuthService")
    );
    assert_eq!(attr("rpc.method").as_deref(), Some("Login"));
    assert!(
        matches!(
            attribute(&login.attributes, "rpc.grpc.status_code"),
            Some(Value::IntValue(16))
        ),
        "{:?}",
        login.attributes
    );
    // UNAUTHENTICATED is the caller's fault: the span is not an error.
    assert_ne!(login.status.as_ref().map(|s| s.code), Some(2));
    // Health checks (the test's own readiness probes) are not traced.
    assert!(
        received
            .spans
            .iter()
            .all(|s| !s.name.starts_with("grpc.health"))
    );
    // No secret in any span or attribute.
    let everything = format!("{:?}", received.spans);
    assert!(
        !everything.contains(password),
        "the password reached a span"
    );

    // The duration histogram, by method and status code.
    let points: Vec<_> = received
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "rpc.server.call.duration")
        .filter_map(|m| match &m.data {
            Some(Data::Histogram(h)) => Some(&h.data_points),
            _ => None,
        })
        .flatten()
        .collect();
    let login_point = points
        .iter()
        .find(|p| {
            attribute(&p.attributes, "rpc.method").map(text).as_deref() == Some("Login")
                && attribute(&p.attributes, "rpc.grpc.status_code")
                    .map(text)
                    .as_deref()
                    == Some("16")
        })
        .unwrap_or_else(|| panic!("no Login duration among {points:?}"));
    assert!(login_point.count >= 1 && login_point.sum.unwrap_or_default() > 0.0);

    // The access cache's reads, by result.
    let reads = |result: &str| -> i64 {
        received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "identity.access.cache.reads")
            .filter_map(|m| match &m.data {
                Some(Data::Sum(sum)) => Some(&sum.data_points),
                _ => None,
            })
            .flatten()
            .filter(|p| attribute(&p.attributes, "result").map(text).as_deref() == Some(result))
            .filter_map(|p| match p.value {
                Some(NumberValue::AsInt(n)) => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    assert!(reads("loaded") >= 1, "no load counted");
    assert!(reads("hit") >= 1, "no hit counted");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The accepted connections of `listener`, as tonic serves them.
fn tokio_stream_from(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}

impl Received {
    /// The data points of the metric `name` in every export, in the order they arrived.
    fn points(&self, name: &str) -> Vec<&Data> {
        self.metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .filter_map(|m| m.data.as_ref())
            .collect()
    }

    /// The values a counter or up-down counter `name` was exported with, for the points whose
    /// attributes include `with`, in the order they arrived.
    fn sums(&self, name: &str, with: &[(&str, &str)]) -> Vec<i64> {
        self.points(name)
            .into_iter()
            .filter_map(|data| match data {
                Data::Sum(sum) => Some(&sum.data_points),
                _ => None,
            })
            .flatten()
            .filter(|p| has(&p.attributes, with))
            .filter_map(|p| match p.value {
                Some(NumberValue::AsInt(n)) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The highest count a histogram `name` was exported with, for the points whose attributes
    /// include `with` (cumulative: the last export's).
    fn histogram_count(&self, name: &str, with: &[(&str, &str)]) -> u64 {
        self.points(name)
            .into_iter()
            .filter_map(|data| match data {
                Data::Histogram(h) => Some(&h.data_points),
                _ => None,
            })
            .flatten()
            .filter(|p| has(&p.attributes, with))
            .map(|p| p.count)
            .max()
            .unwrap_or(0)
    }

    /// The spans whose parent is `parent`, in its trace.
    fn children(&self, parent: &Span) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
            .collect()
    }

    fn names(&self) -> Vec<&str> {
        self.spans.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Whether `attributes` hold every pair of `with`.
fn has(attributes: &[KeyValue], with: &[(&str, &str)]) -> bool {
    with.iter()
        .all(|(key, value)| attribute(attributes, key).map(text).as_deref() == Some(*value))
}

fn attr(span: &Span, key: &str) -> Option<String> {
    attribute(&span.attributes, key).map(text)
}

const PASSWORD: &str = "copper kestrel meadow 58";
const WRONG_PASSWORD: &str = "not the password 3c9e";
const TELEMETRY_OPERATOR: &str = "idt_telemetry_operator_4be07d2c19a3f856";

/// The production binary, on the run's backend (PostgreSQL, or an SQLite file), with SES at
/// `moto` and its telemetry sent to `collector`. Returns it and the database (dropped after it).
async fn start_production(
    collector: &Collector,
    moto: &crate::email::Moto,
    dir: &std::path::Path,
) -> (Running, Option<crate::harness::TestDb>) {
    use crate::harness::{Backend, TestDb, backend};
    let (url, db) = match backend() {
        Backend::Postgres => {
            let db = TestDb::postgres().await;
            let identity::config::Database::Postgres { url } = &db.database else {
                unreachable!()
            };
            (url.expose().to_owned(), Some(db))
        }
        Backend::Sqlite => {
            std::fs::create_dir_all(dir).unwrap();
            (
                format!("sqlite://{}?mode=rwc", dir.join("identity.db").display()),
                None,
            )
        }
    };
    let pem = identity::auth::keys::generate_ed25519("otel-1")
        .unwrap()
        .private_key_pem
        .expose()
        .to_owned();
    let mut env = vec![
        ("IDENTITY_DATABASE_URL", url),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "IDENTITY_SECRET_KEY",
            "c2VjcmV0LWtleS1vZi10aGUtdGVsZW1ldHJ5LXRlc3QtMDE=".to_owned(),
        ),
        (
            "IDENTITY_SIGNING_KEYS",
            serde_json::json!([{"kid": "otel-1", "private_key_pem": pem}]).to_string(),
        ),
        (
            "IDENTITY_SERVICE_TOKENS",
            serde_json::json!([{
                "name": "ops",
                "scopes": ["accounts.operate"],
                "sha256": identity::auth::secret_token::digest_hex(TELEMETRY_OPERATOR),
            }])
            .to_string(),
        ),
        ("IDENTITY_MAILER", "ses".to_owned()),
        ("IDENTITY_EMAIL_FROM", crate::email::SENDER.to_owned()),
        ("IDENTITY_SES_REGION", "us-east-1".to_owned()),
        ("IDENTITY_SES_ENDPOINT_URL", moto.endpoint()),
        ("IDENTITY_OUTBOX_INTERVAL_MS", "50".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    env.extend(collector.env());
    let migrated = tokio::process::Command::new(crate::cli::binary())
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    (Running::start(&env).await, db)
}

#[tokio::test]
async fn logins_and_emails_are_traced_to_statements_hashes_and_ses_and_counted_without_secrets() {
    let collector = Collector::start().await;
    let moto = crate::email::Moto::start().await;
    let dir = std::env::temp_dir().join(format!("identity-otlp-{}", uuid::Uuid::new_v4()));
    let (running, db) = start_production(&collector, &moto, &dir).await;
    let channel = running.channel().await;
    let mut auth = identity::proto::auth_service_client::AuthServiceClient::new(channel.clone());
    let mut accounts = identity::proto::account_service_client::AccountServiceClient::new(channel);

    // An account whose administrator is invited by email (through SES), accepts with a
    // password, fails a login, then logs in under the caller's trace.
    let address = "ada@acme.test";
    let created = accounts
        .create_account(crate::harness::with_token(
            TELEMETRY_OPERATOR,
            identity::proto::CreateAccountRequest {
                name: "Acme".into(),
                administrator_email: address.into(),
                administrator_display_name: "Ada".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let invitation = crate::secrets::link_token(&crate::secrets::email(&moto, address, "").await);
    let accepted = auth
        .accept_invitation(identity::proto::AcceptInvitationRequest {
            invitation_token: invitation.clone(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let login = |password: &str| identity::proto::LoginRequest {
        email: address.into(),
        password: password.into(),
        account_id: String::new(),
    };
    auth.login(login(WRONG_PASSWORD)).await.unwrap_err();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut traced = tonic::Request::new(login(PASSWORD));
    traced.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let session = match auth.login(traced).await.unwrap().into_inner().outcome {
        Some(identity::proto::login_response::Outcome::Tokens(tokens)) => tokens,
        other => panic!("expected a session, got {other:?}"),
    };
    // With personal MFA on, a login asks for the emailed code: one wrong, then the right one.
    auth.enable_mfa(crate::harness::with_token(
        &session.access_token,
        identity::proto::EnableMfaRequest {},
    ))
    .await
    .unwrap();
    let challenge = match auth
        .login(login(PASSWORD))
        .await
        .unwrap()
        .into_inner()
        .outcome
    {
        Some(identity::proto::login_response::Outcome::MfaChallenge(challenge)) => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let code = crate::secrets::code(&crate::secrets::email(&moto, address, "code").await);
    let verify = |code: &str| identity::proto::VerifyMfaChallengeRequest {
        challenge_id: challenge.challenge_id.clone(),
        code: code.to_owned(),
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    auth.verify_mfa_challenge(verify(wrong)).await.unwrap_err();
    let verified = match auth
        .verify_mfa_challenge(verify(&code))
        .await
        .unwrap()
        .into_inner()
        .outcome
    {
        Some(identity::proto::verify_mfa_challenge_response::Outcome::Tokens(tokens)) => tokens,
        other => panic!("expected a session, got {other:?}"),
    };
    // A SAML login through a real identity provider, then a response altered after signing.
    let idp = crate::sso::Idp::start().await;
    let account_id = created.account.unwrap().id;
    accounts
        .update_sso_settings(crate::harness::with_token(
            TELEMETRY_OPERATOR,
            identity::proto::UpdateSsoSettingsRequest {
                account_id: account_id.clone(),
                sso_settings: Some(identity::proto::SsoSettings {
                    idp_metadata_xml: idp.metadata(1).await,
                    default_role: identity::proto::Role::Developer as i32,
                    enabled: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![
                        "idp_metadata_xml".into(),
                        "default_role".into(),
                        "enabled".into(),
                    ],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let mut sso_secrets = Vec::new();
    for variant in ["good", "tampered"] {
        let start = auth
            .start_sso_login(identity::proto::StartSsoLoginRequest {
                account_id: account_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let answer = crate::sso::Answer::user("sso@acme.test").with("variant", variant);
        let posted = crate::sso::posted(
            &crate::sso::fetch(&format!("{}&{}", start.redirect_url, answer.query())).await,
        );
        let result = auth
            .login_with_sso(identity::proto::LoginWithSsoRequest {
                account_id: account_id.clone(),
                saml_response: posted.saml_response.clone(),
                relay_state: posted.relay_state.clone(),
            })
            .await;
        assert_eq!(result.is_ok(), variant == "good", "{variant}: {result:?}");
        sso_secrets.push(("a relay state", posted.relay_state));
        if let Ok(done) = result {
            let tokens = done.into_inner().tokens.unwrap();
            sso_secrets.push(("an access token", tokens.access_token));
            sso_secrets.push(("a refresh token", tokens.refresh_token));
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.stop().await;
    let received = collector.finish();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);

    let system = match crate::harness::backend() {
        crate::harness::Backend::Postgres => "postgresql",
        crate::harness::Backend::Sqlite => "sqlite",
    };
    let login = received
        .spans
        .iter()
        .find(|s| s.name == "identity.v1.AuthService/Login" && hex(&s.trace_id) == trace_id)
        .unwrap_or_else(|| panic!("no traced Login span among {:?}", received.names()));
    let children = received.children(login);

    // The statements of the login: client spans named by their query summary, by the current
    // database conventions, the statement as prepared (no values) and no older attribute names.
    let statements: Vec<&Span> = children
        .iter()
        .copied()
        .filter(|s| attr(s, "db.system.name").is_some())
        .collect();
    assert!(
        statements.len() >= 2,
        "{:?}",
        children.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for statement in &statements {
        assert_eq!(statement.kind, 3, "SPAN_KIND_CLIENT: {}", statement.name);
        assert_eq!(attr(statement, "db.system.name").as_deref(), Some(system));
        let operation = attr(statement, "db.operation.name").unwrap();
        assert_eq!(
            attr(statement, "db.query.summary").as_deref(),
            Some(statement.name.as_str())
        );
        assert!(statement.name.starts_with(&operation), "{}", statement.name);
    }
    let summaries: Vec<&str> = statements.iter().map(|s| s.name.as_str()).collect();
    assert!(
        summaries.iter().any(|s| s.contains("SELECT users")),
        "the person is read: {summaries:?}"
    );
    assert!(
        summaries.iter().any(|s| s.contains("INSERT sessions")),
        "the session is written: {summaries:?}"
    );
    let person_read = statements
        .iter()
        .find(|s| s.name.contains("SELECT users"))
        .unwrap();
    let text = attr(person_read, "db.query.text").unwrap();
    assert!(
        text.contains("email_key") && !text.contains(address),
        "the statement is the prepared one: {text}"
    );

    // The password's verification: its wait for a thread, then the hash, both children of the
    // call, one after the other.
    let child = |name: &str| {
        children
            .iter()
            .find(|s| s.name == name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} under Login: {:?}", received.names()))
    };
    let (queue, hash) = (
        child("identity.password.queue"),
        child("identity.password.hash"),
    );
    for span in [queue, hash] {
        assert_eq!(
            attr(span, "identity.password.operation").as_deref(),
            Some("verify")
        );
        assert!(span.start_time_unix_nano >= login.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= login.end_time_unix_nano);
    }
    assert!(queue.end_time_unix_nano <= hash.start_time_unix_nano);
    assert!(hash.end_time_unix_nano > hash.start_time_unix_nano);
    // Accepting the invitation hashed the new password under its own call.
    let accept = received
        .spans
        .iter()
        .find(|s| s.name == "identity.v1.AuthService/AcceptInvitation")
        .unwrap();
    assert!(
        received.children(accept).iter().any(|s| {
            s.name == "identity.password.hash"
                && attr(s, "identity.password.operation").as_deref() == Some("hash")
        }),
        "no hash under AcceptInvitation"
    );

    // The invitation's delivery: SendEmail is a client span by the conventions for AWS calls,
    // under the email's own span, which also holds the statement recording the result.
    let mut delivered = Vec::new();
    for ses in received
        .spans
        .iter()
        .filter(|s| s.name == "SESv2/SendEmail")
    {
        assert_eq!(ses.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(attr(ses, "rpc.system").as_deref(), Some("aws-api"));
        assert_eq!(attr(ses, "rpc.service").as_deref(), Some("SESv2"));
        assert_eq!(attr(ses, "rpc.method").as_deref(), Some("SendEmail"));
        assert_eq!(attr(ses, "cloud.region").as_deref(), Some("us-east-1"));
        assert!(
            attr(ses, "aws.request_id").is_some_and(|id| !id.is_empty()),
            "{:?}",
            ses.attributes
        );
        assert_ne!(ses.status.as_ref().map(|s| s.code), Some(2), "not an error");
        let delivery = received
            .spans
            .iter()
            .find(|s| s.trace_id == ses.trace_id && s.span_id == ses.parent_span_id)
            .unwrap_or_else(|| panic!("the SES span's parent is missing: {:?}", received.names()));
        assert_eq!(delivery.name, "identity.email.deliver");
        assert!(
            received
                .children(delivery)
                .iter()
                .any(|s| attr(s, "db.operation.name").as_deref() == Some("UPDATE")),
            "the delivery's result is recorded under it"
        );
        delivered.push(attr(delivery, "identity.email.kind").unwrap());
    }
    delivered.sort();
    assert_eq!(delivered, ["invitation", "mfa_code"]);

    // Every statement belongs to a traced operation: none is a trace of its own (the workers'
    // polls), and no span carries the older attribute names.
    for span in &received.spans {
        if attr(span, "db.system.name").is_some() {
            assert!(
                received
                    .spans
                    .iter()
                    .any(|p| p.trace_id == span.trace_id && p.span_id == span.parent_span_id),
                "a statement without its parent: {}",
                span.name
            );
        }
        for old in [
            "db.system",
            "db.operation",
            "db.statement",
            "exception.message",
        ] {
            assert_eq!(attr(span, old), None, "{old} on {}", span.name);
        }
    }

    // Logins by method and outcome; the hashing pool's queue.
    let logins = |method: &str, outcome: &str| {
        received
            .sums(
                "identity.auth.logins",
                &[("method", method), ("outcome", outcome)],
            )
            .into_iter()
            .max()
            .unwrap_or(0)
    };
    assert_eq!(logins("password", "success"), 1);
    assert_eq!(logins("password", "failure"), 1);
    assert_eq!(logins("password", "mfa_required"), 1);
    assert_eq!(logins("email_code", "failure"), 1);
    assert_eq!(logins("email_code", "success"), 1);
    assert_eq!(logins("saml", "success"), 1);
    assert_eq!(logins("saml", "failure"), 1);

    // Each SAML response's verification is a child of its LoginWithSso; the refused one names
    // the check that refused it.
    let mut refusals = Vec::new();
    for verify in received
        .spans
        .iter()
        .filter(|s| s.name == "identity.saml.verify")
    {
        let parent = received
            .spans
            .iter()
            .find(|s| s.trace_id == verify.trace_id && s.span_id == verify.parent_span_id)
            .unwrap_or_else(|| panic!("the verification's parent is missing"));
        assert_eq!(parent.name, "identity.v1.AuthService/LoginWithSso");
        assert!(verify.end_time_unix_nano <= parent.end_time_unix_nano);
        refusals.push(attr(verify, "identity.saml.refusal"));
    }
    refusals.sort();
    assert_eq!(refusals, [None, Some("signature".to_owned())]);
    assert_eq!(
        received.histogram_count(
            "identity.password.queue.wait_time",
            &[("operation", "verify")]
        ),
        3
    );
    assert_eq!(
        received.histogram_count(
            "identity.password.queue.wait_time",
            &[("operation", "hash")]
        ),
        1
    );
    let queue = received.sums("identity.password.queue.length", &[]);
    assert_eq!(
        queue.last(),
        Some(&0),
        "the queue is empty at the end: {queue:?}"
    );

    // No secret, and no address, in any span or metric.
    let secrets = [
        ("the password", PASSWORD.to_owned()),
        ("the wrong password", WRONG_PASSWORD.to_owned()),
        ("the operator token", TELEMETRY_OPERATOR.to_owned()),
        ("the invitation token", invitation),
        ("an access token", accepted.access_token),
        ("a refresh token", accepted.refresh_token),
        ("an access token", session.access_token),
        ("a refresh token", session.refresh_token),
        ("the challenge id", challenge.challenge_id.clone()),
        ("an access token", verified.access_token),
        ("a refresh token", verified.refresh_token),
        ("the email address", address.to_owned()),
        ("the SSO user's address", "sso@acme.test".to_owned()),
    ];
    let secrets = secrets.into_iter().chain(sso_secrets);
    let everything = format!("{:?}\n{:?}", received.spans, received.metrics);
    for (what, secret) in secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "{what} reached the collector"
        );
    }
}
