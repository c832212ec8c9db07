//! The integration suite: one binary that starts the real server in-process on port 0, on a fresh
//! PostgreSQL database per test (or in-memory SQLite with IDENTITY_TEST_BACKEND=sqlite), and talks
//! to it with the generated clients. Tests under `pg_only`, `replicas`, `faults` and `secrets` need several connections
//! or servers on one database and run on PostgreSQL only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod access;
mod accounts;
mod architecture;
mod audit;
mod auth;
mod authorization;
mod callers;
mod cli;
mod client;
mod docs;
mod email;
mod faults;
mod google;
mod groups;
mod health;
mod hostile;
mod pg_only;
mod replicas;
mod secrets;
mod sharing;
mod sso;
mod telemetry;
mod users;
