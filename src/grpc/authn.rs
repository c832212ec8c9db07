//! The authentication tower layer: resolves the caller of every request once, puts the `Actor`
//! into the request extensions, and answers before any handler runs (and before the body is
//! read) when a non-public RPC comes without valid credentials (`UNAUTHENTICATED`) or from a
//! caller it does not admit (`PERMISSION_DENIED`, see `callers`). It also writes one log line per
//! call.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::callers::callers;
use crate::app::audit::with_origin;
use crate::auth::authenticator::Authenticator;
use crate::domain::actor::{Actor, Callers};
use crate::domain::audit::{MAX_USER_AGENT_CHARS, Origin, clip};
use crate::domain::error::{DomainError, reason};

/// The longest bearer token read: access tokens are about 1 KiB, service tokens far less.
const MAX_BEARER_BYTES: usize = 8 << 10;

fn is_public(path: &str) -> bool {
    callers(path) == Some(Callers::Public)
}

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
    max_request_bytes: usize,
    client_ip_header: Option<Arc<str>>,
}

impl AuthLayer {
    /// `max_request_bytes` is the services' decoding limit, named when a request passes it;
    /// `client_ip_header` the header a trusted proxy puts the client's address in, if any.
    pub fn new(
        authenticator: Arc<Authenticator>,
        max_request_bytes: usize,
        client_ip_header: Option<&str>,
    ) -> Self {
        Self {
            authenticator,
            max_request_bytes,
            client_ip_header: client_ip_header.map(Arc::from),
        }
    }
}

/// The longest `x-request-id` kept as sent; a longer or unprintable one is replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Where a request comes from, for the audit log: the caller's `x-request-id` (or a new one), the
/// client's address (from the trusted proxy's header when configured, else the peer), and the
/// User-Agent.
fn origin_of<B>(request: &http::Request<B>, client_ip_header: Option<&str>) -> Origin {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = text("x-request-id")
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_CHARS
                && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let forwarded = client_ip_header
        .and_then(text)
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    let peer = request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.ip());
    Origin {
        request_id,
        ip_address: forwarded
            .or(peer)
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        user_agent: text("user-agent")
            .map(|ua| clip(ua, MAX_USER_AGENT_CHARS))
            .unwrap_or_default(),
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
            max_request_bytes: self.max_request_bytes,
            client_ip_header: self.client_ip_header.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    max_request_bytes: usize,
    client_ip_header: Option<Arc<str>>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let max_request_bytes = self.max_request_bytes;
        let origin = origin_of(&request, self.client_ip_header.as_deref());
        Box::pin(async move {
            let started = Instant::now();
            let request_id = http::HeaderValue::from_str(&origin.request_id).ok();
            let path = request.uri().path().to_owned();
            let bearer = bearer(request.headers());
            let public = is_public(&path);
            let outcome = match bearer {
                Some(token) if token.len() > MAX_BEARER_BYTES => Err(DomainError::unauthenticated(
                    reason::CREDENTIALS_INVALID,
                    "the bearer token is longer than any this service issues",
                )),
                Some(token) => authenticator.authenticate(&token).await,
                None => Ok(Actor::Anonymous),
            };
            let outcome = match outcome {
                // A stale token on a public RPC (RefreshSession after expiry) is ignored.
                Err(_) if public => Ok(Actor::Anonymous),
                // Who may call this RPC is checked before its body is read.
                Ok(actor) => match callers(&path) {
                    Some(callers) => actor.admitted_by(callers).map(|()| actor),
                    None if matches!(actor, Actor::Anonymous) => Err(DomainError::unauthenticated(
                        reason::CREDENTIALS_MISSING,
                        "this RPC needs `authorization: Bearer <token>`",
                    )),
                    None => Ok(actor),
                },
                Err(err) => Err(err),
            };
            let (response, caller) = match outcome {
                Ok(actor) => {
                    let caller = actor.label();
                    request.extensions_mut().insert(actor);
                    let response = with_origin(origin, inner.call(request)).await?;
                    (caller_fault(response, max_request_bytes), caller)
                }
                Err(err) => (Status::from(err).into_http(), "rejected".to_owned()),
            };
            let mut response = response;
            if let Some(request_id) = request_id {
                response.headers_mut().insert("x-request-id", request_id);
            }
            if !path.starts_with("/grpc.") {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned();
                let status: i32 = code.parse().unwrap_or(2);
                crate::telemetry::record_status(&tracing::Span::current(), status);
                crate::telemetry::record_call(&path, status, started.elapsed().as_secs_f64());
                tracing::info!(
                    rpc = %path,
                    caller = %caller,
                    grpc_status = %code,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "rpc"
                );
            }
            Ok(response)
        })
    }
}

/// tonic answers a request it cannot read before any handler runs: `INTERNAL` for bytes that are
/// not the RPC's message, `OUT_OF_RANGE` for a message over the limit. Both are the caller's doing;
/// this answers them as the contract says, with a stable reason.
fn caller_fault(
    response: http::Response<tonic::body::Body>,
    max_request_bytes: usize,
) -> http::Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let fault = match status.code() {
        Code::Internal
            if status
                .message()
                .starts_with("failed to decode Protobuf message") =>
        {
            super::status::status(
                Code::InvalidArgument,
                reason::MESSAGE_UNDECODABLE,
                "the request is not a protobuf message of this RPC".to_owned(),
            )
        }
        Code::OutOfRange if status.message().contains("message length too large") => {
            super::status::status(
                Code::ResourceExhausted,
                reason::MESSAGE_TOO_LARGE,
                format!("the request is larger than the limit of {max_request_bytes} bytes"),
            )
        }
        _ => return response,
    };
    fault.into_http()
}

fn bearer(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The caller the layer resolved; anonymous when the layer did not run (it always does in the server).
pub fn actor<T>(request: &tonic::Request<T>) -> Actor {
    request
        .extensions()
        .get::<Actor>()
        .cloned()
        .unwrap_or(Actor::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_methods_are_exactly_the_listed_ones() {
        assert!(is_public("/identity.v1.AuthService/Login"));
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(is_public(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_public("/identity.v1.AuthService/ValidateToken"));
        assert!(!is_public("/identity.v1.AccountService/CreateAccount"));
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
