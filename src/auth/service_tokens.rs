//! Service callers, configured at deploy time as token hashes with a name and scopes.

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::config::ServiceTokenConfig;
use crate::domain::actor::{Scope, ServiceCaller};

use super::secret_token;

#[derive(Debug, Default)]
pub struct ServiceTokens {
    by_digest: HashMap<[u8; 32], ServiceCaller>,
}

impl ServiceTokens {
    pub fn new(configs: &[ServiceTokenConfig]) -> Result<Self> {
        let mut by_digest = HashMap::new();
        for config in configs {
            let mut digest = [0u8; 32];
            for (i, byte) in digest.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&config.sha256[2 * i..2 * i + 2], 16)?;
            }
            let scopes = config
                .scopes
                .iter()
                .map(|s| Scope::parse(s).ok_or_else(|| anyhow::anyhow!("unknown scope {s:?}")))
                .collect::<Result<_>>()?;
            let caller = ServiceCaller {
                name: config.name.clone(),
                scopes,
            };
            if by_digest.insert(digest, caller).is_some() {
                bail!("two service tokens have the same hash ({})", config.name);
            }
        }
        Ok(Self { by_digest })
    }

    /// Adds a token (the embedded mode's operator token).
    pub fn insert(&mut self, token: &str, caller: ServiceCaller) {
        self.by_digest.insert(secret_token::digest(token), caller);
    }

    /// The caller a presented token belongs to. Lookup is by digest, so the comparison leaks
    /// nothing about stored tokens.
    pub fn resolve(&self, token: &str) -> Option<&ServiceCaller> {
        self.by_digest.get(&secret_token::digest(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_by_hash_only() {
        let token = secret_token::generate("idt_svc_");
        let tokens = ServiceTokens::new(&[ServiceTokenConfig {
            name: "dam".into(),
            scopes: vec!["access.check".into()],
            sha256: secret_token::digest_hex(&token),
        }])
        .unwrap();
        let caller = tokens.resolve(&token).unwrap();
        assert_eq!(caller.name, "dam");
        assert!(caller.scopes.contains(&Scope::AccessCheck));
        assert!(tokens.resolve("idt_svc_other").is_none());
    }
}
