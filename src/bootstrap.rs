//! The embedded (zero-setup) mode: a signing key kept in the data directory, an operator token
//! made at each start, a bootstrap account, and ready-to-paste `grpcurl` lines. Production mode
//! never runs any of this.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, Result};
use uuid::Uuid;

use crate::app::App;
use crate::auth::keys::generate_ed25519;
use crate::auth::{secret_token, service_tokens::ServiceTokens};
use crate::config::SigningKeyConfig;
use crate::domain::accounts::CreateAccount;
use crate::domain::actor::{Actor, Scope, ServiceCaller};
use crate::domain::validate;

pub const BOOTSTRAP_ADMIN_EMAIL: &str = "admin@example.com";

/// What the embedded mode prints.
pub struct DevCredentials {
    pub operator_token: String,
    pub account_id: Uuid,
    pub admin_email: String,
    /// A fresh invitation token while the administrator has not accepted; `None` after.
    pub invitation_token: Option<String>,
    /// A password the printed accept line proposes (any other that passes the policy works).
    pub proposed_password: String,
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

/// Creates the bootstrap account on the first run, and renews its administrator's invitation
/// while it is not accepted.
pub async fn bootstrap(app: &App, operator_token: String) -> Result<DevCredentials> {
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
    // No session for an invited member: the banner shows how to accept the invitation, which
    // starts one, and how to log in after.
    let invitation_token = app
        .users
        .renew_invitation_quietly(account_id, admin.id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot renew the bootstrap invitation: {e}"))?;
    Ok(DevCredentials {
        operator_token,
        account_id,
        admin_email: admin.email,
        invitation_token,
        proposed_password: secret_token::generate("pw-"),
    })
}

/// What the embedded mode prints at start: where it runs, its bootstrap account, and the commands
/// that reach a session, each with what it is for.
pub struct Banner {
    address: String,
    data_dir: String,
    account: Uuid,
    administrator: String,
    state: &'static str,
    steps: Vec<(String, String)>,
}

impl Banner {
    pub fn new(addr: SocketAddr, creds: &DevCredentials, data_dir: &Path) -> Self {
        let target = if addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", addr.port())
        } else {
            addr.to_string()
        };
        let (account, email, password) = (
            creds.account_id,
            &creds.admin_email,
            &creds.proposed_password,
        );
        let operator = &creds.operator_token;
        let mut steps = vec![
            (
                "List the services:".to_owned(),
                format!("grpcurl -plaintext {target} list"),
            ),
            (
                "As support tooling (operator token, made anew at each start):".to_owned(),
                format!(
                    r#"grpcurl -plaintext -H 'authorization: Bearer {operator}' -d '{{"name": "Acme", "administrator_email": "owner@acme.test"}}' {target} identity.v1.AccountService/CreateAccount"#
                ),
            ),
        ];
        match &creds.invitation_token {
            Some(token) => {
                steps.push((
                    "As the bootstrap account's administrator, accept the invitation with this \
                     password (or one of your own); the answer holds a session. The link is renewed \
                     at each start until it is accepted:"
                        .to_owned(),
                    format!(
                        r#"grpcurl -plaintext -d '{{"invitation_token": "{token}", "password": "{password}"}}' {target} identity.v1.AuthService/AcceptInvitation"#
                    ),
                ));
                steps.push((
                    "Log in with the same password later:".to_owned(),
                    format!(
                        r#"grpcurl -plaintext -d '{{"email": "{email}", "password": "{password}"}}' {target} identity.v1.AuthService/Login"#
                    ),
                ));
            }
            None => steps.push((
                "As the bootstrap account's administrator, log in with the password chosen when \
                 accepting:"
                    .to_owned(),
                format!(
                    r#"grpcurl -plaintext -d '{{"email": "{email}", "password": "<your password>"}}' {target} identity.v1.AuthService/Login"#
                ),
            )),
        }
        steps.push((
            "Then, with the `accessToken` of that answer:".to_owned(),
            format!(
                r#"grpcurl -plaintext -H 'authorization: Bearer <accessToken>' -d '{{"account_id": "{account}"}}' {target} identity.v1.AccountService/GetAccount"#
            ),
        ));
        Self {
            address: target,
            data_dir: data_dir.display().to_string(),
            account,
            administrator: email.clone(),
            state: if creds.invitation_token.is_some() {
                "invited"
            } else {
                "active"
            },
            steps,
        }
    }

    /// For a person at a terminal (`IDENTITY_LOG_FORMAT=text`).
    pub fn text(&self) -> String {
        let mut out = format!(
            "\nidentity is running in embedded mode (SQLite in {}, emails printed to this log).\n\n  \
             address            {}\n  bootstrap account  {}\n  administrator      {} ({})\n",
            self.data_dir, self.address, self.account, self.administrator, self.state
        );
        for (purpose, command) in &self.steps {
            out.push_str(&format!("\n{purpose}\n  {command}\n"));
        }
        out
    }

    /// One log line in the shape of the JSON log (`IDENTITY_LOG_FORMAT=json`): the same facts and
    /// commands as fields, so a log pipeline reads it like every other line.
    pub fn json(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|(purpose, command)| serde_json::json!({"purpose": purpose, "command": command}))
            .collect();
        serde_json::json!({
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "INFO",
            "fields": {
                "message": "embedded mode ready",
                "address": self.address,
                "data_dir": self.data_dir,
                "bootstrap_account": self.account.to_string(),
                "administrator": self.administrator,
                "administrator_state": self.state,
                "steps": steps,
            },
            "target": "identity::bootstrap",
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_says_the_same_in_text_and_in_json() {
        let creds = DevCredentials {
            operator_token: "idt_dev_x".into(),
            account_id: Uuid::now_v7(),
            admin_email: BOOTSTRAP_ADMIN_EMAIL.into(),
            invitation_token: Some("inv_y".into()),
            proposed_password: "pw-z".into(),
        };
        let addr: SocketAddr = "0.0.0.0:50051"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let banner = Banner::new(addr, &creds, Path::new(".identity"));
        let text = banner.text();
        let json: serde_json::Value = serde_json::from_str(&banner.json(chrono::Utc::now()))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let steps = json["fields"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(steps.len(), 5);
        for step in &steps {
            let command = step["command"].as_str().unwrap_or_default();
            assert!(command.contains("127.0.0.1:50051"), "{command}");
            assert!(text.contains(command), "{command} missing from:\n{text}");
        }
        assert!(text.contains("admin@example.com (invited)"));
        assert_eq!(json["fields"]["administrator_state"], "invited");
        assert!(!text.contains('\u{1b}'));
    }
}
