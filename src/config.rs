//! One typed configuration, read from environment variables. Every secret also accepts a
//! `*_FILE` variant naming a file that holds it (Kubernetes secrets mounted as files), and secrets
//! print as `[redacted]` in `Debug`.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;

use crate::domain::actor::Scope;

mod google;

pub use google::{GOOGLE_ISSUER, GoogleConfig};

/// A value that must never reach logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL: production. Nothing is created or printed by the service on its own.
    Postgres { url: Secret },
    /// An embedded SQLite file under `data_dir`: the zero-setup mode for a laptop.
    Embedded { data_dir: PathBuf },
    /// An explicit SQLite URL (`sqlite::memory:` in tests).
    Sqlite { url: String },
}

/// A service token as configured: its SHA-256 hash, never the token itself.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceTokenConfig {
    pub name: String,
    pub scopes: Vec<String>,
    /// Lower-case hex SHA-256 of the token (`identity hash-token` prints it).
    pub sha256: String,
}

/// A JWT signing key. The newest key whose `not_before` has passed signs; every key is published
/// in the JWKS, so a new key can be published ahead of use and an old one kept until its tokens expire.
#[derive(Debug, Clone, Deserialize)]
pub struct SigningKeyConfig {
    pub kid: String,
    /// `EdDSA` (Ed25519), the only algorithm served.
    #[serde(default = "default_alg")]
    pub alg: String,
    /// PKCS#8 PEM private key.
    pub private_key_pem: Secret,
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
}

fn default_alg() -> String {
    "EdDSA".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    pub max_users: i32,
    pub max_groups: i32,
}

/// Which transport delivers the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailerKind {
    /// Prints emails to the log: the zero-setup default for development.
    Console,
    /// Amazon SES (API v2), credentials from the standard AWS chain.
    Ses,
}

/// How emails leave the service.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub mailer: MailerKind,
    /// The From address (or `Name <address>`); required for SES, whose identity must be verified.
    pub from: Option<String>,
    /// Reply-To addresses (comma-separated in the environment).
    pub reply_to: Vec<String>,
    /// An SES configuration set (event publishing, dedicated IPs), if any.
    pub ses_configuration_set: Option<String>,
    /// The SES region; unset: the AWS chain's region (`AWS_REGION`, profile).
    pub ses_region: Option<String>,
    /// An endpoint override (an SES emulator, a VPC endpoint).
    pub ses_endpoint_url: Option<String>,
    /// Retryable failures are retried until `created_at` plus this, then the email is failed.
    pub retry_horizon: Duration,
}

impl EmailConfig {
    /// The console transport with the default retry horizon.
    fn console() -> Self {
        Self {
            mailer: MailerKind::Console,
            from: None,
            reply_to: Vec::new(),
            ses_configuration_set: None,
            ses_region: None,
            ses_endpoint_url: None,
            retry_horizon: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Where the key set is served over HTTP (`/.well-known/jwks.json`,
    /// `/.well-known/openid-configuration`); `None`: not served.
    pub http_listen_addr: Option<SocketAddr>,
    pub database: Database,
    pub db_max_connections: u32,
    pub service_tokens: Vec<ServiceTokenConfig>,
    pub signing_keys: Vec<SigningKeyConfig>,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub default_limits: DefaultLimits,
    pub log_format: LogFormat,
    /// How long health reports NOT_SERVING before the server stops taking calls.
    pub shutdown_delay: Duration,
    /// How long in-flight calls may take to finish after that.
    pub shutdown_grace: Duration,
    /// How often the database is pinged for the health status.
    pub health_interval: Duration,
    /// The largest request message accepted (after decompression); larger ones are refused with
    /// `RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE`.
    pub max_request_bytes: usize,
    /// Base of the links in emails (invitations, password resets), e.g. `https://app.example.com`.
    pub public_url: String,
    /// How often the outbox worker looks for due emails.
    pub outbox_interval: Duration,
    /// The key of keyed hashes (email codes). At least 32 bytes; embedded mode makes one.
    pub secret_key: Option<Secret>,
    /// Password hashes computed at once (each takes 19 MiB and a core for ~25 ms).
    pub password_hash_concurrency: usize,
    /// How long a session (its refresh token) lives.
    pub session_ttl: Duration,
    /// The email transport and its settings.
    pub email: EmailConfig,
    /// "Log in with Google"; `None` (off) unless `IDENTITY_GOOGLE_CLIENT_ID` is set.
    pub google: Option<GoogleConfig>,
    /// How old the in-memory access data may be when a check carries no consistency token.
    /// Zero turns the cache off: every check reads the database first.
    pub access_staleness: Duration,
    /// Memory the access data of all accounts may take; least recently used accounts go first.
    pub access_cache_bytes: usize,
    /// How long audit events are kept (default 365 days); older ones are deleted hourly.
    pub audit_retention: Duration,
    /// The header a trusted proxy in front of the service puts the client's address in (e.g.
    /// `x-forwarded-for`: its last address is taken). `None`: the connection's peer address.
    pub client_ip_header: Option<String>,
}

/// The range of `IDENTITY_MAX_REQUEST_BYTES`: room for the largest ordinary request (a
/// `BatchCheckAccess` of many items) at the bottom, a bounded memory per request at the top.
const MIN_REQUEST_BYTES: usize = 64 << 10;
const MAX_REQUEST_BYTES: usize = 64 << 20;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// What `identity migrate` needs of the process environment: the database and the log
    /// format, and nothing a running service needs (keys, mailer).
    pub fn migration_from_env() -> Result<(Database, LogFormat)> {
        let lookup = |key: &str| std::env::var(key).ok();
        let env = Env::new(&lookup);
        let database = env.or_record(database(&env), Database::Sqlite { url: String::new() });
        let log_format = env.or_record(log_format(&env), LogFormat::Text);
        env.finish()?;
        Ok((database, log_format))
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Env::new(&lookup);
        let database = env.or_record(database(&env), Database::Sqlite { url: String::new() });
        let log_format = env.or_record(log_format(&env), LogFormat::Text);
        let production = matches!(database, Database::Postgres { .. });
        let service_tokens = match env.secret("IDENTITY_SERVICE_TOKENS")? {
            Some(json) => serde_json::from_str::<Vec<ServiceTokenConfig>>(json.expose())
                .unwrap_or_else(|e| {
                    env.fail(format!("IDENTITY_SERVICE_TOKENS is not a JSON array of {{name, scopes, sha256}}: {e}"));
                    Vec::new()
                }),
            None => Vec::new(),
        };
        for token in &service_tokens {
            for scope in &token.scopes {
                if Scope::parse(scope).is_none() {
                    env.fail(format!(
                        "service token {:?} has an unknown scope {scope:?}",
                        token.name
                    ));
                }
            }
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                env.fail(format!(
                    "service token {:?}: sha256 must be 64 hex digits",
                    token.name
                ));
            }
        }
        let signing_keys = match env.secret("IDENTITY_SIGNING_KEYS")? {
            // The key material is never echoed: serde's message could quote it.
            Some(json) => serde_json::from_str::<Vec<SigningKeyConfig>>(json.expose()).unwrap_or_else(
                |e| {
                    env.fail(format!("IDENTITY_SIGNING_KEYS is not a JSON array of {{kid, alg, private_key_pem, not_before}} (line {}, column {})", e.line(), e.column()));
                    Vec::new()
                },
            ),
            None => Vec::new(),
        };
        let config = Config {
            listen_addr: env
                .parse("IDENTITY_LISTEN_ADDR")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            http_listen_addr: env.parse("IDENTITY_HTTP_LISTEN_ADDR")?,
            database,
            db_max_connections: env.parse("IDENTITY_DB_MAX_CONNECTIONS")?.unwrap_or(16),
            service_tokens,
            signing_keys,
            issuer: env
                .get("IDENTITY_ISSUER")
                .unwrap_or_else(|| "identity".into()),
            audience: env
                .get("IDENTITY_AUDIENCE")
                .unwrap_or_else(|| "identity".into()),
            access_token_ttl: Duration::from_secs(
                env.parse("IDENTITY_ACCESS_TOKEN_TTL_SECONDS")?
                    .unwrap_or(15 * 60),
            ),
            default_limits: DefaultLimits {
                max_users: env.parse("IDENTITY_DEFAULT_MAX_USERS")?.unwrap_or(100),
                max_groups: env.parse("IDENTITY_DEFAULT_MAX_GROUPS")?.unwrap_or(5),
            },
            log_format,
            shutdown_delay: Duration::from_secs(
                env.parse("IDENTITY_SHUTDOWN_DELAY_SECONDS")?.unwrap_or(5),
            ),
            shutdown_grace: Duration::from_secs(
                env.parse("IDENTITY_SHUTDOWN_GRACE_SECONDS")?.unwrap_or(25),
            ),
            health_interval: Duration::from_millis(
                env.parse("IDENTITY_HEALTH_INTERVAL_MS")?.unwrap_or(2000),
            ),
            max_request_bytes: match env.parse::<usize>("IDENTITY_MAX_REQUEST_BYTES")? {
                None => 4 << 20,
                Some(bytes) if (MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES).contains(&bytes) => bytes,
                Some(bytes) => {
                    env.fail(format!(
                        "IDENTITY_MAX_REQUEST_BYTES must be {MIN_REQUEST_BYTES} to {MAX_REQUEST_BYTES}, not {bytes}"
                    ));
                    4 << 20
                }
            },
            public_url: env
                .get("IDENTITY_PUBLIC_URL")
                .unwrap_or_else(|| "http://localhost:3000".into())
                .trim_end_matches('/')
                .to_owned(),
            outbox_interval: Duration::from_millis(
                env.parse("IDENTITY_OUTBOX_INTERVAL_MS")?.unwrap_or(1000),
            ),
            secret_key: env.secret("IDENTITY_SECRET_KEY")?,
            password_hash_concurrency: env
                .parse("IDENTITY_PASSWORD_HASH_CONCURRENCY")?
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            session_ttl: Duration::from_secs(
                env.parse("IDENTITY_SESSION_TTL_SECONDS")?
                    .unwrap_or(30 * 24 * 3600),
            ),
            email: env.or_record(email_config(&env, production), EmailConfig::console()),
            google: env.or_record(GoogleConfig::from_env(&env), None),
            access_staleness: Duration::from_millis(
                env.parse("IDENTITY_ACCESS_STALENESS_MS")?.unwrap_or(1000),
            ),
            access_cache_bytes: env
                .parse::<usize>("IDENTITY_ACCESS_CACHE_MB")?
                .unwrap_or(1024)
                .saturating_mul(1 << 20),
            audit_retention: match env.parse::<u64>("IDENTITY_AUDIT_RETENTION_DAYS")? {
                None => Duration::from_secs(365 * 24 * 3600),
                Some(days) if (1..=36_500).contains(&days) => Duration::from_secs(days * 24 * 3600),
                Some(days) => {
                    env.fail(format!(
                        "IDENTITY_AUDIT_RETENTION_DAYS must be 1 to 36500, not {days}"
                    ));
                    Duration::from_secs(365 * 24 * 3600)
                }
            },
            client_ip_header: env
                .get("IDENTITY_CLIENT_IP_HEADER")
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        };
        env.finish()?;
        Ok(config)
    }

    /// Embedded mode is the zero-setup laptop run: it migrates, bootstraps and prints credentials.
    pub fn is_embedded(&self) -> bool {
        matches!(self.database, Database::Embedded { .. })
    }
}

fn database(env: &Env<'_>) -> Result<Database> {
    Ok(match env.secret("IDENTITY_DATABASE_URL")? {
        Some(url) if url.expose().starts_with("postgres") => Database::Postgres { url },
        Some(url) if url.expose().starts_with("sqlite:") => Database::Sqlite {
            url: url.expose().to_owned(),
        },
        Some(_) => bail!("IDENTITY_DATABASE_URL must be a postgres:// or sqlite: URL"),
        None => Database::Embedded {
            data_dir: env
                .get("IDENTITY_DATA_DIR")
                .unwrap_or_else(|| ".identity".into())
                .into(),
        },
    })
}

fn log_format(env: &Env<'_>) -> Result<LogFormat> {
    Ok(match env.get("IDENTITY_LOG_FORMAT").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => bail!("IDENTITY_LOG_FORMAT must be text or json, not {other:?}"),
    })
}

/// The email settings. Production mode (`production`: PostgreSQL) has no default transport: the
/// console one prints live links and codes into the log, so it must be asked for by name.
fn email_config(env: &Env<'_>, production: bool) -> Result<EmailConfig> {
    let mailer = match env.get("IDENTITY_MAILER").as_deref() {
        None if production => bail!(
            "IDENTITY_MAILER must be set in production mode (a PostgreSQL database): `ses` (with \
             IDENTITY_EMAIL_FROM), or `console`, which prints every email, with its live links and \
             codes, into the log"
        ),
        None | Some("console") => MailerKind::Console,
        Some("ses") => MailerKind::Ses,
        Some(other) => bail!("IDENTITY_MAILER must be console or ses, not {other:?}"),
    };
    let from = env.get("IDENTITY_EMAIL_FROM");
    if mailer == MailerKind::Ses && from.is_none() {
        bail!("IDENTITY_MAILER=ses needs IDENTITY_EMAIL_FROM (an address verified in SES)");
    }
    let retry_horizon = Duration::from_secs(
        env.parse("IDENTITY_EMAIL_RETRY_HORIZON_SECONDS")?
            .unwrap_or(24 * 3600),
    );
    if retry_horizon.is_zero() {
        bail!("IDENTITY_EMAIL_RETRY_HORIZON_SECONDS must be positive");
    }
    Ok(EmailConfig {
        mailer,
        from,
        reply_to: env
            .get("IDENTITY_EMAIL_REPLY_TO")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|address| !address.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        ses_configuration_set: env.get("IDENTITY_SES_CONFIGURATION_SET"),
        ses_region: env.get("IDENTITY_SES_REGION"),
        ses_endpoint_url: env.get("IDENTITY_SES_ENDPOINT_URL"),
        retry_horizon,
    })
}

/// https anywhere; http only to a loopback host (a test provider). The one rule for the URLs of
/// an identity provider: applied to the configured issuers here, and by `auth::oidc` to the
/// endpoints a discovery document names.
pub(crate) fn secure_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        },
        _ => false,
    }
}

/// The variables being read; the submodules that read a part's settings (`google`) read theirs
/// through it too, `*_FILE` secrets included.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// What is wrong so far: every setting is read, and all bad ones are reported at once.
    errors: std::cell::RefCell<Vec<String>>,
}

impl<'a> Env<'a> {
    fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            errors: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Records what is wrong with a setting; reading goes on.
    fn fail(&self, message: impl fmt::Display) {
        self.errors.borrow_mut().push(message.to_string());
    }

    /// The value of a part read on its own, or `fallback` with its error recorded.
    fn or_record<T>(&self, part: Result<T>, fallback: T) -> T {
        part.unwrap_or_else(|err| {
            self.fail(err);
            fallback
        })
    }

    /// Fails with every recorded error, one per line.
    fn finish(self) -> Result<()> {
        let errors = self.errors.into_inner();
        match errors.len() {
            0 => Ok(()),
            1 => Err(anyhow!("{}", errors[0])),
            n => Err(anyhow!(
                "{n} settings are wrong:\n  - {}",
                errors.join("\n  - ")
            )),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key).filter(|value| !value.is_empty())
    }

    /// The parsed value, or `None` when unset; a value that does not parse is recorded (and read
    /// as unset, so the rest of the settings are still checked).
    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        Ok(self
            .get(key)
            .and_then(|value| match value.trim().parse::<T>() {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.fail(format!("{key}={value:?}: {e}"));
                    None
                }
            }))
    }

    /// `KEY` or the contents of the file named by `KEY_FILE` (trailing newline removed).
    fn secret(&self, key: &str) -> Result<Option<Secret>> {
        let file_key = format!("{key}_FILE");
        match (self.get(key), self.get(&file_key)) {
            (Some(_), Some(_)) => {
                self.fail(format!("set {key} or {file_key}, not both"));
                Ok(None)
            }
            (Some(value), None) => Ok(Some(Secret(value))),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(value) => Ok(Some(Secret(
                    value.trim_end_matches(['\n', '\r']).to_owned(),
                ))),
                Err(e) => {
                    self.fail(format!("{file_key}: cannot read {path}: {e}"));
                    Ok(None)
                }
            },
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let config = config(&[]).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(config.is_embedded());
        assert_eq!(config.default_limits.max_groups, 5);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.listen_addr.port(), 50051);
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = std::env::temp_dir().join(format!("identity-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let file = dir.join("db");
        std::fs::write(&file, "postgres://u:hunter2@db/identity\n")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let config = config(&[
            (
                "IDENTITY_DATABASE_URL_FILE",
                file.to_str().unwrap_or_default(),
            ),
            ("IDENTITY_MAILER", "console"),
        ])
        .unwrap_or_else(|e| unreachable!("{e}"));
        match &config.database {
            Database::Postgres { url } => {
                assert_eq!(url.expose(), "postgres://u:hunter2@db/identity")
            }
            other => unreachable!("{other:?}"),
        }
        assert!(!format!("{config:?}").contains("hunter2"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let err = config(&[
            ("IDENTITY_DB_MAX_CONNECTIONS", "many"),
            ("IDENTITY_LOG_FORMAT", "xml"),
            ("IDENTITY_MAILER", "smtp"),
            ("IDENTITY_MAX_REQUEST_BYTES", "1"),
            (
                "IDENTITY_SERVICE_TOKENS",
                r#"[{"name":"x","scopes":["root"],"sha256":"00"}]"#,
            ),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("6 settings are wrong:"), "{err}");
        for named in [
            "IDENTITY_DB_MAX_CONNECTIONS",
            "IDENTITY_LOG_FORMAT",
            "IDENTITY_MAILER",
            "IDENTITY_MAX_REQUEST_BYTES",
            "unknown scope",
            "sha256",
        ] {
            assert!(err.contains(named), "{named} missing from: {err}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("IDENTITY_DEFAULT_MAX_GROUPS", "five")])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.unwrap_or_default()
                .contains("IDENTITY_DEFAULT_MAX_GROUPS")
        );
        let err = config(&[(
            "IDENTITY_SERVICE_TOKENS",
            r#"[{"name":"x","scopes":["root"],"sha256":"00"}]"#,
        )])
        .err()
        .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("unknown scope"));
        assert!(config(&[("IDENTITY_DATABASE_URL", "mysql://x")]).is_err());
    }

    #[test]
    fn production_mode_has_no_default_mailer() {
        let production = |vars: &[(&str, &str)]| {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let lookup = |key: &str| map.get(key).cloned();
            email_config(&Env::new(&lookup), true)
        };
        let err = production(&[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("IDENTITY_MAILER must be set"), "{err}");
        let console = production(&[("IDENTITY_MAILER", "console")]);
        assert_eq!(console.ok().map(|e| e.mailer), Some(MailerKind::Console));
        let err = config(&[("IDENTITY_DATABASE_URL", "postgres://db/identity")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("IDENTITY_MAILER must be set"), "{err}");
    }

    #[test]
    fn the_console_mailer_is_the_default_and_ses_needs_a_sender() {
        let email = config(&[]).unwrap_or_else(|e| unreachable!("{e}")).email;
        assert_eq!(email.mailer, MailerKind::Console);
        assert_eq!(email.retry_horizon, Duration::from_secs(86_400));
        let err = config(&[("IDENTITY_MAILER", "ses")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("IDENTITY_EMAIL_FROM"), "{err}");
        let email = config(&[
            ("IDENTITY_MAILER", "ses"),
            ("IDENTITY_EMAIL_FROM", "Acme <no-reply@acme.test>"),
            ("IDENTITY_EMAIL_REPLY_TO", "help@acme.test, ops@acme.test"),
            ("IDENTITY_SES_REGION", "eu-west-1"),
            ("IDENTITY_EMAIL_RETRY_HORIZON_SECONDS", "3600"),
        ])
        .unwrap_or_else(|e| unreachable!("{e}"))
        .email;
        assert_eq!(email.mailer, MailerKind::Ses);
        assert_eq!(email.reply_to, ["help@acme.test", "ops@acme.test"]);
        assert_eq!(email.ses_region.as_deref(), Some("eu-west-1"));
        assert_eq!(email.retry_horizon, Duration::from_secs(3600));
        assert!(config(&[("IDENTITY_MAILER", "smtp")]).is_err());
    }

    #[test]
    fn key_material_never_appears_in_parse_errors() {
        let err = config(&[(
            "IDENTITY_SIGNING_KEYS",
            r#"[{"kid":"a","private_key_pem":"SECRETPEM","#,
        )])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("IDENTITY_SIGNING_KEYS"));
        assert!(!err.contains("SECRETPEM"));
    }
}
