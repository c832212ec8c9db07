//! Logs through `tracing` (text or JSON), and OpenTelemetry traces and metrics over OTLP when the
//! standard `OTEL_*` variables name an endpoint. Off otherwise (the zero-setup run).

use anyhow::Result;
use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::{
    Resource,
    metrics::SdkMeterProvider,
    propagation::TraceContextPropagator,
    trace::{BatchSpanProcessor, SdkTracerProvider},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, dynamic_filter_fn, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::LogFormat;

mod db;

/// Attribute and instrument names, from the semantic conventions crate. The RPC ones are the
/// names the service has always exported and its dashboards read (`rpc.system`, `rpc.service`, an
/// integer `rpc.grpc.status_code`); conventions 1.42 renames them (`rpc.system.name`,
/// `rpc.response.status_code`), hence the `allow`.
#[allow(deprecated)]
pub(crate) mod names {
    use opentelemetry_semantic_conventions::{attribute, metric, resource};

    pub(crate) const RPC_SYSTEM: &str = attribute::RPC_SYSTEM;
    pub(crate) const RPC_SERVICE: &str = attribute::RPC_SERVICE;
    pub(crate) const RPC_METHOD: &str = attribute::RPC_METHOD;
    pub(crate) const RPC_GRPC_STATUS_CODE: &str = attribute::RPC_GRPC_STATUS_CODE;
    pub(crate) const RPC_SERVER_CALL_DURATION: &str = metric::RPC_SERVER_CALL_DURATION;
    pub(crate) const SERVICE_VERSION: &str = resource::SERVICE_VERSION;
    pub(crate) const OTEL_STATUS_CODE: &str = attribute::OTEL_STATUS_CODE;
    pub(crate) const ERROR_TYPE: &str = attribute::ERROR_TYPE;
    pub(crate) const CLOUD_REGION: &str = attribute::CLOUD_REGION;
    pub(crate) const AWS_REQUEST_ID: &str = attribute::AWS_REQUEST_ID;
}

/// Bucket boundaries (seconds) of the duration histograms: the conventions' advice for
/// `rpc.server.call.duration`, from 5 ms to 10 s. The SDK's default boundaries are for
/// milliseconds.
pub(crate) const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Flushes telemetry when dropped at the end of `main`.
pub struct TelemetryGuard {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            let _ = traces.shutdown();
        }
        if let Some(metrics) = self.metrics.take() {
            let _ = metrics.shutdown();
        }
    }
}

/// Colours only for a person at a terminal: not when the log goes to a file or a pipe, nor when
/// `NO_COLOR` is set (no-color.org).
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn otlp_enabled() -> bool {
    let set = |key: &str| std::env::var(key).is_ok_and(|v| !v.is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn resource() -> Resource {
    let mut builder = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        builder = builder.with_service_name("identity");
    }
    builder
        .with_attribute(KeyValue::new(
            names::SERVICE_VERSION,
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The log sees events and the RPC span only, so a JSON line's `span` is always the call's,
/// with its `trace_id` and `span_id`: the child spans (statements, hashes, SES calls) are for
/// traces.
fn logged(metadata: &tracing::Metadata<'_>) -> bool {
    !metadata.is_span() || (metadata.target() == module_path!() && metadata.name() == "rpc")
}

/// Installs the global subscriber. Call once, inside the Tokio runtime.
pub fn init(format: LogFormat) -> Result<TelemetryGuard> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter().and(filter_fn(logged)))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(colours())
            .with_filter(filter().and(filter_fn(logged)))
            .boxed(),
    };
    let mut guard = TelemetryGuard {
        traces: None,
        metrics: None,
    };
    let otel = if otlp_enabled() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let traces = SdkTracerProvider::builder()
            .with_span_processor(db::Conventions(BatchSpanProcessor::builder(spans).build()))
            .with_resource(resource())
            .build();
        let tracer = traces.tracer("identity");
        global::set_tracer_provider(traces.clone());
        let metrics_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        let metrics = SdkMeterProvider::builder()
            .with_periodic_exporter(metrics_exporter)
            .with_resource(resource())
            .build();
        global::set_meter_provider(metrics.clone());
        guard.traces = Some(traces);
        guard.metrics = Some(metrics);
        // A statement is traced inside a traced operation (an RPC, an email's delivery), never
        // as a trace of its own: the background workers' polls would fill the trace stream.
        let statements_in_operations = dynamic_filter_fn(|metadata, cx| {
            !db::is_statement(metadata) || cx.lookup_current().is_some()
        });
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter().and(statements_in_operations)),
        )
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(guard)
}

/// The service and method of an RPC's path (`/identity.v1.AuthService/Login`).
fn service_and_method(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""))
}

/// Health checks and reflection are traced only when `IDENTITY_TRACE_PROBES=true`: probes every few
/// seconds would otherwise fill the trace stream.
fn traces_probes() -> bool {
    static PROBES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBES.get_or_init(|| {
        std::env::var("IDENTITY_TRACE_PROBES").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// The span of one RPC (OpenTelemetry's RPC conventions), parented to the caller's W3C
/// `traceparent` when it sent one. Its `trace_id` and `span_id` are fields too, so every JSON log
/// line inside the call carries them (when traces are exported).
pub fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let path = request.uri().path();
    if (path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection."))
        && !traces_probes()
    {
        return tracing::Span::none();
    }
    let (service, method) = service_and_method(path);
    let span = tracing::info_span!(
        "rpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        { names::OTEL_STATUS_CODE } = tracing::field::Empty,
        { names::RPC_SYSTEM } = "grpc",
        { names::RPC_SERVICE } = %service,
        { names::RPC_METHOD } = %method,
        { names::RPC_GRPC_STATUS_CODE } = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string());
        span.record("span_id", ids.span_id().to_string());
    }
    span
}

/// `rpc.server.call.duration` (seconds), OpenTelemetry's RPC server duration, by service, method
/// and status code.
fn call_duration() -> &'static opentelemetry::metrics::Histogram<f64> {
    static DURATION: std::sync::OnceLock<opentelemetry::metrics::Histogram<f64>> =
        std::sync::OnceLock::new();
    DURATION.get_or_init(|| {
        global::meter("identity")
            .f64_histogram(names::RPC_SERVER_CALL_DURATION)
            .with_unit("s")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .with_description("Duration of RPCs served, by method and gRPC status code")
            .build()
    })
}

/// Records one served call of `path` (`/service/method`) with its status code and duration.
pub fn record_call(path: &str, code: i32, seconds: f64) {
    let (service, method) = service_and_method(path);
    call_duration().record(
        seconds,
        &[
            KeyValue::new(names::RPC_SYSTEM, "grpc"),
            KeyValue::new(names::RPC_SERVICE, service.to_owned()),
            KeyValue::new(names::RPC_METHOD, method.to_owned()),
            KeyValue::new(names::RPC_GRPC_STATUS_CODE, i64::from(code)),
        ],
    );
}

/// Records a call's gRPC status on its span: the code as the integer the conventions ask for, and
/// the span status Error for the codes that are the server's fault.
pub fn record_status(span: &tracing::Span, code: i32) {
    span.record(names::RPC_GRPC_STATUS_CODE, code);
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record(names::OTEL_STATUS_CODE, "ERROR");
    }
}

/// The ways to log in that `identity.auth.logins` counts, by its `method` attribute.
pub const LOGIN_METHODS: &[&str] = &["password", "google", "email_code", "saml"];
/// What a login attempt came to, its `outcome` attribute: a session, the email code asked for,
/// the account choice offered, or credentials refused.
pub const LOGIN_OUTCOMES: &[&str] = &["success", "mfa_required", "account_selection", "failure"];

fn logins() -> &'static opentelemetry::metrics::Counter<u64> {
    static LOGINS: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    LOGINS.get_or_init(|| {
        global::meter("identity")
            .u64_counter("identity.auth.logins")
            .with_unit("{login}")
            .with_description("Login attempts, by method and outcome")
            .build()
    })
}

/// Counts a login attempt of `method` (one of `LOGIN_METHODS`) that came to `outcome` (one of
/// `LOGIN_OUTCOMES`).
pub fn record_login(method: &'static str, outcome: &'static str) {
    debug_assert!(
        LOGIN_METHODS.contains(&method),
        "unknown login method {method}"
    );
    debug_assert!(
        LOGIN_OUTCOMES.contains(&outcome),
        "unknown login outcome {outcome}"
    );
    logins().add(
        1,
        &[
            KeyValue::new("method", method),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// The `outcome` of a login that reached its next step.
pub fn login_outcome(outcome: &crate::domain::auth::LoginOutcome) -> &'static str {
    use crate::domain::auth::LoginOutcome;
    match outcome {
        LoginOutcome::Tokens(_) => "success",
        LoginOutcome::Challenge(_) => "mfa_required",
        LoginOutcome::Selection(_) => "account_selection",
    }
}

/// The `outcome` of a login whose next step is decided.
pub fn login_step(step: &crate::domain::auth::NextStep<'_>) -> &'static str {
    use crate::domain::auth::NextStep;
    match step {
        NextStep::Session(_) => "success",
        NextStep::Code { .. } => "mfa_required",
        NextStep::Select => "account_selection",
    }
}

/// Counts a password check the per-person throttle refused (`identity.auth.throttled`): at a
/// login, or where a password is entered again (accepting an invitation as a known person,
/// changing the password, turning personal MFA off).
pub fn record_throttle() {
    static THROTTLED: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    THROTTLED
        .get_or_init(|| {
            global::meter("identity")
                .u64_counter("identity.auth.throttled")
                .with_unit("{check}")
                .with_description("Password checks refused by the per-person login throttle")
                .build()
        })
        .add(1, &[]);
}
