//! The rules of the product: no SQL and no transport here. Store entities are used as plain
//! data; queries live in `store`.

pub mod accounts;
pub mod actor;
pub mod error;
pub mod roles;
pub mod validate;
