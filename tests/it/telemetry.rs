//! What an OpenTelemetry collector receives from the production-shaped binary: an OTLP receiver on
//! loopback takes its spans and metrics, and the test reads them as a dashboard would.

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

#[tokio::test]
async fn a_collector_receives_rpc_spans_and_durations_by_the_conventions_and_no_secret() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream_from(listener)),
    );
    let dir = std::env::temp_dir().join(format!("identity-otlp-{}", uuid::Uuid::new_v4()));
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
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
    serving.abort();
    let _ = std::fs::remove_dir_all(dir);

    let received = receiver.0.lock().unwrap();
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
