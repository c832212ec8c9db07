//! Credentials: access-token keys, service tokens, and the secrets behind them.

pub mod authenticator;
pub mod google;
pub mod keys;
pub mod password;
pub mod secret_token;
pub mod service_tokens;
