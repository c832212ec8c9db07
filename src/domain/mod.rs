//! The types and rules of the product: plain data and plain functions over it. No I/O, no
//! async, no SQL, no transport: a decision takes the state the use case loaded and returns what
//! should happen, so it is tested without a database.

pub mod access;
pub mod access_changes;
pub mod accounts;
pub mod actor;
pub mod audit;
pub mod auth;
pub mod consistency;
pub mod email;
pub mod error;
pub mod groups;
pub mod page;
pub mod roles;
pub mod sharing;
pub mod sso;
pub mod users;
pub mod validate;

#[cfg(test)]
pub(crate) mod properties;
