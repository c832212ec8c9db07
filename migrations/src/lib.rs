//! The database schema of the identity service, as ordered, never-edited migrations.
//!
//! Every account-scoped table leads its primary key and its indexes with `account_id`, and no
//! query joins across accounts, so the schema can be distributed by account. Global tables
//! (people, idempotency keys) are keyed by their own ids.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_initial;
mod m20261128_000002_invitations_and_outbox;
mod m20261128_000003_sessions_and_login;
mod m20261128_000004_unlogged_login_throttle;
mod m20261202_000005_sharing;
mod m20261202_000006_session_ends;
mod m20261202_000007_login_in_flight;
mod m20261202_000008_audit_log;
mod m20261202_000009_sso;

/// Applies the migrations in order; `identity migrate` runs it under a database-wide lock.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_initial::Migration),
            Box::new(m20261128_000002_invitations_and_outbox::Migration),
            Box::new(m20261128_000003_sessions_and_login::Migration),
            Box::new(m20261128_000004_unlogged_login_throttle::Migration),
            Box::new(m20261202_000005_sharing::Migration),
            Box::new(m20261202_000006_session_ends::Migration),
            Box::new(m20261202_000007_login_in_flight::Migration),
            Box::new(m20261202_000008_audit_log::Migration),
            Box::new(m20261202_000009_sso::Migration),
        ]
    }
}
