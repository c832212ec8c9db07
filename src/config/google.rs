//! Google login's settings, the `IDENTITY_GOOGLE_*` variables. Read here, with the rest of the
//! configuration; `auth::google` builds its verifier from them.

use anyhow::{Context, bail};
use reqwest::Url;

use super::{Env, Secret, secure_or_loopback};

/// Google's issuer, where discovery starts unless `IDENTITY_GOOGLE_ISSUER` names another. Its ID
/// tokens carry this or a scheme-less form of it as `iss`.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Google login settings. Google login is off when `IDENTITY_GOOGLE_CLIENT_ID` is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleConfig {
    /// Our OAuth client id: the only audience we accept (`IDENTITY_GOOGLE_CLIENT_ID`).
    pub client_id: String,
    /// Needed only to exchange authorization codes (`IDENTITY_GOOGLE_CLIENT_SECRET[_FILE]`).
    pub client_secret: Option<Secret>,
    /// Where discovery starts (`IDENTITY_GOOGLE_ISSUER`, default `https://accounts.google.com`).
    pub issuer: String,
    /// The redirect URIs a code may have been issued for, compared exactly
    /// (`IDENTITY_GOOGLE_REDIRECT_URIS`, comma-separated). Empty: codes are not accepted.
    pub redirect_uris: Vec<String>,
}

impl GoogleConfig {
    /// Reads the `IDENTITY_GOOGLE_*` variables; `None` when no client id is set.
    pub(super) fn from_env(env: &Env<'_>) -> anyhow::Result<Option<Self>> {
        let Some(client_id) = env.get("IDENTITY_GOOGLE_CLIENT_ID") else {
            return Ok(None);
        };
        let client_id = client_id.trim().to_owned();
        let client_secret = env.secret("IDENTITY_GOOGLE_CLIENT_SECRET")?;
        let issuer = env
            .get("IDENTITY_GOOGLE_ISSUER")
            .unwrap_or_else(|| GOOGLE_ISSUER.to_owned())
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let issuer_url = Url::parse(&issuer)
            .ok()
            .filter(|url| url.query().is_none() && url.fragment().is_none())
            .with_context(|| format!("IDENTITY_GOOGLE_ISSUER={issuer:?} is not a URL"))?;
        if !secure_or_loopback(&issuer_url) {
            bail!("IDENTITY_GOOGLE_ISSUER must be an https URL (http only on loopback)");
        }
        let redirect_uris: Vec<String> = env
            .get("IDENTITY_GOOGLE_REDIRECT_URIS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|uri| !uri.is_empty())
            .map(str::to_owned)
            .collect();
        for uri in &redirect_uris {
            if Url::parse(uri).is_err() {
                bail!("IDENTITY_GOOGLE_REDIRECT_URIS: {uri:?} is not a URL");
            }
        }
        if !redirect_uris.is_empty() && client_secret.is_none() {
            bail!(
                "IDENTITY_GOOGLE_REDIRECT_URIS is set but IDENTITY_GOOGLE_CLIENT_SECRET is not: \
                 exchanging authorization codes needs the client secret"
            );
        }
        Ok(Some(Self {
            client_id,
            client_secret,
            issuer,
            redirect_uris,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn google(vars: &[(&str, &str)]) -> anyhow::Result<Option<GoogleConfig>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| map.get(key).cloned()).map(|config| config.google)
    }

    #[test]
    fn google_login_is_off_without_a_client_id() {
        assert_eq!(google(&[]).ok().flatten(), None);
    }

    #[test]
    fn config_reads_the_client_the_issuer_and_the_redirect_uris() {
        let config = google(&[
            (
                "IDENTITY_GOOGLE_CLIENT_ID",
                "client.apps.googleusercontent.com",
            ),
            ("IDENTITY_GOOGLE_CLIENT_SECRET", "hunter2"),
            (
                "IDENTITY_GOOGLE_REDIRECT_URIS",
                "https://app.example.com/cb , https://admin.example.com/cb,",
            ),
        ])
        .ok()
        .flatten()
        .unwrap_or_else(|| unreachable!());
        assert_eq!(config.issuer, GOOGLE_ISSUER);
        assert_eq!(
            config.redirect_uris,
            ["https://app.example.com/cb", "https://admin.example.com/cb"]
        );
        assert_eq!(
            config.client_secret.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn config_refuses_what_cannot_work() {
        let id = ("IDENTITY_GOOGLE_CLIENT_ID", "client");
        // Codes cannot be exchanged without the secret.
        assert!(google(&[id, ("IDENTITY_GOOGLE_REDIRECT_URIS", "https://a/cb")]).is_err());
        // Keys fetched over plain http could be anyone's, except on loopback.
        assert!(google(&[id, ("IDENTITY_GOOGLE_ISSUER", "http://idp.example.com")]).is_err());
        assert!(google(&[id, ("IDENTITY_GOOGLE_ISSUER", "http://127.0.0.1:8080/")]).is_ok());
        assert!(google(&[id, ("IDENTITY_GOOGLE_ISSUER", "not a url")]).is_err());
        // An ID-token-only setup needs no secret.
        assert!(google(&[id]).is_ok());
    }
}
