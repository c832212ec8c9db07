//! Credentials: access-token keys, service tokens, the secrets behind them, and the identity
//! providers people log in with (`oidc` for any OpenID provider, `google` on top of it).

pub mod authenticator;
pub mod google;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod saml;
pub mod secret_token;
pub mod service_tokens;
