//! What the benchmarks share: a throwaway PostgreSQL database, the server's configuration, the
//! server itself, and authorized requests.

// Used by the benches that account CPU time (reads, login), not by every bench.
#[allow(dead_code)]
pub mod cpu;
// The throughput benches' load (reads, access).
#[allow(dead_code)]
pub mod load;

use std::{net::SocketAddr, sync::Arc};

use identity::{
    auth::{keys::generate_ed25519, secret_token},
    build_app,
    clock::SystemClock,
    config::{Config, Database, Secret, ServiceTokenConfig},
    server,
    store::Store,
};
use sea_orm::ConnectionTrait;

/// Runs `run` with the URL of a database made for it (on IDENTITY_BENCH_DATABASE_URL, default
/// postgres://postgres@127.0.0.1:5432/postgres) and drops the database afterwards.
pub async fn on_scratch_database<F, Fut>(run: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let base = std::env::var("IDENTITY_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("identity_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&base).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut url = url::Url::parse(&base)?;
    url.set_path(&name);
    let result = run(url.to_string()).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

/// A server on `url`, on a free loopback port, with a signing key, a secret key, and
/// `service_token` as an operator's service token.
pub fn config(url: String, service_token: &str) -> anyhow::Result<Config> {
    let mut config = Config::from_lookup(|_| None)?;
    config.database = Database::Postgres {
        url: Secret::new(url),
    };
    config.listen_addr = "127.0.0.1:0".parse()?;
    config.signing_keys = vec![generate_ed25519("bench")?];
    config.secret_key = Some(Secret::new(
        "YmVuY2gtc2VjcmV0LWtleS1iZW5jaC1zZWNyZXQta2V5LWJlbmNo",
    ));
    config.service_tokens = vec![ServiceTokenConfig {
        name: "bench".into(),
        scopes: vec!["accounts.operate".into()],
        sha256: secret_token::digest_hex(service_token),
    }];
    Ok(config)
}

/// Migrates the database and starts the server on the current runtime; returns its store and
/// address.
pub async fn start_server(config: Config) -> anyhow::Result<(Store, SocketAddr)> {
    let store = Store::connect(&config.database, 16).await?;
    store.migrate().await?;
    let (app, _) = build_app(config, store.clone(), Arc::new(SystemClock)).await?;
    let listener = server::bind(app.config.listen_addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve(app, listener, std::future::pending()));
    Ok((store, addr))
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}
