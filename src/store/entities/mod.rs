//! SeaORM entities, one per table of `migrations/`.

pub mod account;
pub mod group;
pub mod group_member;
pub mod idempotency_key;
pub mod invitation;
pub mod membership;
pub mod outbox_email;
pub mod user;
