//! The rules of the product: no SQL and no transport here. Store entities are used as plain
//! data; queries live in `store`.

pub mod access;
pub mod accounts;
pub mod actor;
pub mod auth;
pub mod email;
pub mod error;
pub mod groups;
pub mod roles;
pub mod users;
pub mod validate;

/// The consistency token of a write: the account's access revision after it. Checks that carry
/// it are answered from data at least that fresh.
pub fn consistency_token(revision: i64) -> String {
    revision.to_string()
}
