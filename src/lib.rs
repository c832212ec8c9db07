//! identity: the gRPC identity and access service of the media platform. Accounts, users, roles
//! and groups; passwords, sessions, email codes, Google and SAML login; sharing of DAM resources
//! and the access checks the DAM calls on every request; an audit log.
//!
//! Layers, each importing only those below it: `grpc` (transport) -> `app` (use cases, units of
//! work) -> `store` (queries) and `domain` (types and rules, no I/O); `auth` holds credentials
//! and `email` the outbox's delivery. `server` assembles them and `bootstrap` is the zero-setup
//! embedded mode. `tests/it/architecture.rs` fails the build of the suite when a wall is broken.

pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod domain;
pub mod email;
pub mod grpc;
pub mod housekeeping;
pub mod http;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use anyhow::{Result, bail};

use crate::app::App;
use crate::auth::{keys::KeySet, service_tokens::ServiceTokens};
use crate::bootstrap::DevCredentials;
use crate::clock::SharedClock;
use crate::config::{Config, Database};
use crate::email::Mailer;
use crate::store::Store;

/// Builds the application on an opened, migrated store, with the mailer the configuration names.
/// In embedded mode this also makes the development credentials (signing key, operator token,
/// bootstrap account).
pub async fn build_app(
    config: Config,
    store: Store,
    clock: SharedClock,
) -> Result<(App, Option<DevCredentials>)> {
    if config.email.mailer == config::MailerKind::Console
        && matches!(config.database, Database::Postgres { .. })
    {
        tracing::warn!(
            "IDENTITY_MAILER=console: every email, with its live invitation and reset links and its \
             codes, is printed into this log instead of being sent; use `ses` in production"
        );
    }
    let mailer = email::mailer_from_config(&config.email).await?;
    build_app_with_mailer(config, store, clock, mailer).await
}

/// `build_app` with a mailer made by the caller (a transport with its own credentials).
pub async fn build_app_with_mailer(
    config: Config,
    store: Store,
    clock: SharedClock,
    mailer: Arc<dyn Mailer>,
) -> Result<(App, Option<DevCredentials>)> {
    let mut service_tokens = ServiceTokens::new(&config.service_tokens)?;
    let embedded_dir = match &config.database {
        Database::Embedded { data_dir } => Some(data_dir.clone()),
        _ => None,
    };
    let signing_keys = match (&embedded_dir, config.signing_keys.is_empty()) {
        (Some(dir), true) => bootstrap::dev_signing_keys(dir)?,
        _ => config.signing_keys.clone(),
    };
    let keys = KeySet::new(
        &signing_keys,
        config.issuer.clone(),
        config.audience.clone(),
        config.access_token_ttl,
    )?;
    let secret_key = match (&config.secret_key, &embedded_dir) {
        (Some(key), _) => decode_secret_key(key.expose())?,
        (None, Some(dir)) => bootstrap::dev_secret_key(dir)?,
        (None, None) => bail!(
            "IDENTITY_SECRET_KEY is required: 32 or more random bytes, base64 (e.g. `openssl rand -base64 32`)"
        ),
    };
    let operator_token = embedded_dir
        .is_some()
        .then(|| bootstrap::dev_operator_token(&mut service_tokens));
    let app = App::new(
        config,
        store,
        clock,
        keys,
        service_tokens,
        secret_key,
        mailer,
    )?;
    let credentials = match operator_token {
        Some(token) => Some(bootstrap::bootstrap(&app, token).await?),
        None => None,
    };
    Ok((app, credentials))
}

/// The service's secret key from its base64 form; at least 32 bytes.
pub fn decode_secret_key(encoded: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim()))
        .map_err(|_| anyhow::anyhow!("IDENTITY_SECRET_KEY is not base64"))?;
    if bytes.len() < 32 {
        bail!("IDENTITY_SECRET_KEY must hold at least 32 bytes");
    }
    Ok(bytes)
}

/// Opens the store for `serve`: the embedded mode migrates itself; production refuses to start
/// while migrations are pending (they are applied by `identity migrate`, once, not by every replica).
pub async fn open_store(config: &Config) -> Result<Store> {
    let store = Store::connect(&config.database, config.db_max_connections).await?;
    if config.is_embedded() {
        store.migrate().await?;
    } else {
        let pending = store.pending_migrations().await?;
        if !pending.is_empty() {
            bail!(
                "the database schema is behind this release ({} pending: {}); run `identity migrate` first",
                pending.len(),
                pending.join(", ")
            );
        }
    }
    Ok(store)
}
