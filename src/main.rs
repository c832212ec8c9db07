//! The `identity` command: `serve` (the default), `migrate`, and key and token helpers.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use identity::{
    auth::{keys::generate_ed25519, secret_token},
    bootstrap, build_app,
    clock::SystemClock,
    config::{Config, Database},
    domain::actor::Scope,
    open_store, server,
    store::Store,
    telemetry,
};

#[derive(Parser)]
#[command(name = "identity", version, about = "gRPC identity and access service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default). Without IDENTITY_DATABASE_URL: embedded SQLite, zero setup.
    Serve,
    /// Apply pending database migrations (idempotent; concurrent runs wait for each other).
    Migrate,
    /// Print a new Ed25519 signing key as an IDENTITY_SIGNING_KEYS entry.
    Keygen {
        /// The key id published in the JWKS and put in the `kid` header of tokens (default: the
        /// date and a random suffix).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Read a service token on stdin and print its SHA-256 for IDENTITY_SERVICE_TOKENS.
    HashToken,
    /// Make a new service token: prints the token (give it to the service) and its config entry.
    NewServiceToken {
        #[arg(long)]
        name: String,
        /// Scopes: accounts.operate users.read users.manage access.check access.share audit.read audit.write
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of every account (or one): prints each chain's state and the first
    /// broken link, and exits with status 1 when a chain is broken. Reads only.
    Verify {
        /// Only this account's chain (its id).
        #[arg(long)]
        account: Option<uuid::Uuid>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime()?.block_on(serve()),
        Command::Migrate => runtime()?.block_on(migrate()),
        Command::Audit {
            command: AuditCommand::Verify { account },
        } => {
            let whole = runtime()?.block_on(verify_audit(account))?;
            if !whole {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Keygen { kid } => {
            let kid = kid.unwrap_or_else(|| {
                let suffix = &secret_token::generate("")[..6];
                format!("{}-{suffix}", chrono::Utc::now().format("%Y%m%d"))
            });
            let key = generate_ed25519(&kid)?;
            let entry = serde_json::json!({
                "kid": key.kid,
                "alg": key.alg,
                "private_key_pem": key.private_key_pem.expose(),
                "not_before": chrono::Utc::now(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!([entry]))?
            );
            Ok(())
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            println!("{}", secret_token::digest_hex(token.trim()));
            Ok(())
        }
        Command::NewServiceToken { name, scopes } => {
            for scope in &scopes {
                Scope::parse(scope).with_context(|| format!("unknown scope {scope:?}"))?;
            }
            let token = secret_token::generate("idt_svc_");
            println!("token (give to the service, shown once): {token}");
            let entry = serde_json::json!({"name": name, "scopes": scopes, "sha256": secret_token::digest_hex(&token)});
            println!("IDENTITY_SERVICE_TOKENS entry: {entry}");
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve() -> Result<()> {
    let shutdown = shutdown_signal()?;
    let config = Config::from_env()?;
    let log_format = config.log_format;
    let _telemetry = telemetry::init(log_format)?;
    let store = open_store(&config).await?;
    let listen = config.listen_addr;
    let data_dir = match &config.database {
        Database::Embedded { data_dir } => Some(data_dir.clone()),
        _ => None,
    };
    let (app, credentials) = build_app(config, store, Arc::new(SystemClock)).await?;
    let listener = server::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    if let (Some(credentials), Some(data_dir)) = (&credentials, &data_dir) {
        let banner = bootstrap::Banner::new(addr, credentials, data_dir);
        match log_format {
            identity::config::LogFormat::Text => println!("{}", banner.text()),
            identity::config::LogFormat::Json => println!("{}", banner.json(chrono::Utc::now())),
        }
    }
    server::serve(app, listener, shutdown).await
}

async fn migrate() -> Result<()> {
    let (database, log_format) = Config::migration_from_env()?;
    let _telemetry = telemetry::init(log_format)?;
    let store = Store::connect(&database, 2).await?;
    let pending = store.pending_migrations().await?;
    store.migrate().await?;
    tracing::info!(applied = pending.len(), "migrations are up to date");
    Ok(())
}

/// Verifies the audit chains and prints one line per chain; false when one is broken.
async fn verify_audit(account: Option<uuid::Uuid>) -> Result<bool> {
    let (database, log_format) = Config::migration_from_env()?;
    let _telemetry = telemetry::init(log_format)?;
    let store = Store::connect(&database, 2).await?;
    let reports = identity::app::audit::verify(&store, account).await?;
    let mut whole = true;
    for report in &reports {
        let pending = match report.unchained {
            0 => String::new(),
            n => format!("; {n} newer events not chained yet"),
        };
        let floor = match report.purged_through {
            0 => String::new(),
            n => format!(" after position {n} (retention)"),
        };
        match &report.result {
            Ok(()) => println!(
                "account {}: whole, {} events checked{floor}{pending}",
                report.account_id, report.checked
            ),
            Err(broken) => {
                whole = false;
                println!("BROKEN: {broken}{pending}");
            }
        }
    }
    match (reports.len(), whole) {
        (0, _) => println!("no audit events yet"),
        (n, true) => println!("{n} chains verified: all whole"),
        (n, false) => println!(
            "{} of {n} chains are broken",
            reports.iter().filter(|r| r.result.is_err()).count()
        ),
    }
    Ok(whole)
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called, and resolves on the
/// first: a signal that arrives while the service is still starting stops it gracefully as soon
/// as it serves, instead of killing it.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
