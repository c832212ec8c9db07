//! The embedded (zero-setup) mode: a signing key kept in the data directory, an operator token
//! made at each start, a bootstrap account, and ready-to-paste `grpcurl` lines. Production mode
//! never runs any of this.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use uuid::Uuid;

use crate::app::App;
use crate::auth::keys::{KeySet, TokenSubject, generate_ed25519};
use crate::auth::{secret_token, service_tokens::ServiceTokens};
use crate::config::SigningKeyConfig;
use crate::domain::accounts::CreateAccount;
use crate::domain::actor::{Actor, Scope, ServiceCaller};
use crate::domain::auth::{NewSession, Session};
use crate::domain::roles::Role;
use crate::domain::validate;

/// How long the printed administrator token lives: a working day, so the printed lines keep working.
pub const DEV_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
pub const BOOTSTRAP_ADMIN_EMAIL: &str = "admin@example.com";

/// What the embedded mode prints.
pub struct DevCredentials {
    pub operator_token: String,
    pub account_id: Uuid,
    pub admin_email: String,
    pub admin_token: String,
}

/// The signing key of the embedded mode, made once and kept in `data_dir`.
pub fn dev_signing_keys(data_dir: &Path) -> Result<Vec<SigningKeyConfig>> {
    let file = data_dir.join("signing-key.pem");
    let config = if file.exists() {
        let pem = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        SigningKeyConfig {
            kid: "dev".to_owned(),
            alg: "EdDSA".to_owned(),
            private_key_pem: crate::config::Secret::new(pem),
            not_before: None,
        }
    } else {
        std::fs::create_dir_all(data_dir)?;
        let config = generate_ed25519("dev")?;
        write_private(&file, config.private_key_pem.expose())?;
        config
    };
    Ok(vec![config])
}

/// The secret key of the embedded mode, made once and kept in `data_dir`.
pub fn dev_secret_key(data_dir: &Path) -> Result<Vec<u8>> {
    let file = data_dir.join("secret-key");
    if file.exists() {
        let encoded = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return crate::decode_secret_key(&encoded);
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    use base64::Engine;
    write_private(
        &file,
        &base64::engine::general_purpose::STANDARD.encode(&bytes),
    )?;
    Ok(bytes)
}

fn write_private(file: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut handle = options
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    handle.write_all(contents.as_bytes())?;
    Ok(())
}

/// A fresh operator token for this run, added to `tokens`.
pub fn dev_operator_token(tokens: &mut ServiceTokens) -> String {
    let token = secret_token::generate("idt_dev_");
    tokens.insert(
        &token,
        ServiceCaller {
            name: "dev-operator".to_owned(),
            scopes: Scope::ALL.into_iter().collect(),
        },
    );
    token
}

/// Creates the bootstrap account on the first run, and signs an access token for its administrator.
pub async fn bootstrap(app: &App, keys: &KeySet, operator_token: String) -> Result<DevCredentials> {
    let existing = app
        .store
        .oldest_account()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the bootstrap account: {e}"))?;
    let admin_email = validate::email(BOOTSTRAP_ADMIN_EMAIL).map_err(anyhow::Error::msg)?;
    let account_id = match existing {
        Some(account) => account.id,
        None => {
            let operator = Actor::Service(ServiceCaller {
                name: "bootstrap".to_owned(),
                scopes: [Scope::AccountsOperate].into_iter().collect(),
            });
            app.accounts
                .create(
                    &operator,
                    CreateAccount {
                        name: "Bootstrap".to_owned(),
                        admin_email: admin_email.clone(),
                        admin_display_name: "Bootstrap Administrator".to_owned(),
                        max_users: None,
                        max_groups: None,
                        request_id: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the bootstrap account: {e}"))?
                .account
                .id
        }
    };
    let admin = app
        .store
        .person_by_email(admin_email.key())
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the bootstrap administrator: {e}"))?
        .context("the bootstrap account has no administrator")?;
    // A real session (12 hours), so the printed token behaves like a logged-in administrator's.
    let now = app.clock.now();
    let ttl = chrono::Duration::from_std(DEV_ADMIN_TOKEN_TTL)?;
    let session = Session::open(
        NewSession {
            user_id: admin.id,
            account_id,
            amr: vec!["dev".to_owned()],
            mfa_passed: true,
            user_agent: Some("identity embedded mode".to_owned()),
            ip_address: None,
        },
        now,
        ttl,
    );
    app.store
        .create_session(&session)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the bootstrap session: {e}"))?;
    let (admin_token, _) = keys.issue_for(
        &TokenSubject {
            user_id: admin.id,
            account_id,
            role: Role::AccountAdministrator,
            session_id: session.id,
            amr: vec!["dev".to_owned()],
            email: admin.email.clone(),
        },
        now,
        DEV_ADMIN_TOKEN_TTL,
    )?;
    Ok(DevCredentials {
        operator_token,
        account_id,
        admin_email: admin.email,
        admin_token,
    })
}

/// The lines printed at start in embedded mode.
pub fn banner(addr: SocketAddr, creds: &DevCredentials, data_dir: &Path) -> String {
    let target = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    format!(
        r#"
identity is running in embedded mode (SQLite in {data}, emails printed to this log).

  address            {target}
  bootstrap account  {account}
  administrator      {email} (invited; the token below is valid for 12 hours)

List the services:
  grpcurl -plaintext {target} list

As support tooling (operator token, made anew at each start):
  grpcurl -plaintext -H 'authorization: Bearer {operator}' -d '{{"name": "Acme", "administrator_email": "owner@acme.test"}}' {target} identity.v1.AccountService/CreateAccount

As the bootstrap account's administrator:
  grpcurl -plaintext -H 'authorization: Bearer {admin}' -d '{{"account_id": "{account}"}}' {target} identity.v1.AccountService/GetAccount
"#,
        data = data_dir.display(),
        account = creds.account_id,
        email = creds.admin_email,
        operator = creds.operator_token,
        admin = creds.admin_token,
    )
}
