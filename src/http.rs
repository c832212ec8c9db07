//! The key set over plain HTTP, so standard JWT middleware in any language verifies access tokens
//! offline: `/.well-known/jwks.json` (RFC 7517) and `/.well-known/openid-configuration` (the
//! issuer, where the keys are, and their algorithms). Read-only, no credentials, cacheable; off
//! unless `IDENTITY_HTTP_LISTEN_ADDR` is set.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::keys::KeySet;

/// How long callers may cache the documents: a new key is published with a future `not_before`
/// well before it signs (see docs/deploy.md), so five minutes is safe.
const MAX_AGE_SECONDS: u32 = 300;

/// What the documents say: the published keys and their issuer.
struct Documents {
    keys: Arc<KeySet>,
}

/// Serves the documents on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, keys: Arc<KeySet>, mut stop: watch::Receiver<bool>) {
    let documents = Arc::new(Documents { keys });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let documents = documents.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let documents = documents.clone();
                async move { Ok::<_, Infallible>(documents.answer(&request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Documents {
    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let body = match request.uri().path() {
            "/.well-known/jwks.json" => {
                serde_json::json!({ "keys": self.keys.jwks() })
            }
            "/.well-known/openid-configuration" => {
                let issuer = self.keys.issuer();
                let base = if issuer.starts_with("https://") || issuer.starts_with("http://") {
                    issuer.trim_end_matches('/').to_owned()
                } else {
                    // An issuer that is not a URL: the keys are where this request came.
                    let host = request
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("localhost");
                    format!("http://{host}")
                };
                serde_json::json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{base}/.well-known/jwks.json"),
                    "id_token_signing_alg_values_supported": self.keys.algorithms(),
                    "subject_types_supported": ["public"],
                    "response_types_supported": ["id_token"],
                })
            }
            _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = format!("public, max-age={MAX_AGE_SECONDS}").parse() {
            headers.insert(header::CACHE_CONTROL, value);
        }
        response
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
