//! SeaORM entities, one per table of `migrations/`.

pub mod access_change;
pub mod account;
pub mod account_selection;
pub mod audit_chain;
pub mod audit_event;
pub mod audit_link;
pub mod audit_pending;
pub mod group;
pub mod group_member;
pub mod idempotency_key;
pub mod invitation;
pub mod lease;
pub mod login_throttle;
pub mod membership;
pub mod mfa_challenge;
pub mod outbox_email;
pub mod password_reset;
pub mod refresh_token;
pub mod session;
pub mod share;
pub mod sso_assertion;
pub mod sso_request;
pub mod sso_setting;
pub mod user;
