//! Storage: SeaORM on PostgreSQL (production) or SQLite (embedded), the same code for both.
//!
//! The store reads and writes; it decides nothing, sends nothing and makes no secrets (tokens
//! and codes come in from the use cases, as the hashes they are stored under). Reads outside a
//! write are methods of `Store`, one statement each, and so are the few writes that are one
//! statement needing nothing read first (a login, a revocation). A write is a unit of work,
//! `Tx`, that the use case opens, fills (locking the row its decision reads: the account where
//! an invariant lives on it, the challenge, token or link being spent) and commits; the store's
//! parts of it are methods of `Tx`. Rows come back as domain types: no entity leaves the store.

pub mod access_changes;
pub mod accounts;
pub mod audit;
mod challenges;
pub mod entities;
pub mod groups;
pub mod idempotency;
mod invitations;
mod login;
pub mod outbox;
pub mod pagination;
mod resets;
mod select;
mod selections;
mod sessions;
pub mod shares;
mod sso;
mod throttle;
pub mod users;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    Statement, TransactionTrait, sqlx::Error as SqlxError,
};

use uuid::Uuid;

use crate::config::Database;
use crate::domain::error::{DomainError, DomainResult};

/// A poisoned lock still holds consistent data here (plain lists and counters).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a write changed in the data access decisions and session checks read, told to the
/// replica's own memory once it is committed.
#[derive(Debug, Clone, Copy)]
pub enum Committed<'a> {
    /// The account's access revision moved on to `revision`.
    Revision { account_id: Uuid, revision: i64 },
    /// These sessions, by account, ended.
    SessionsEnded(&'a [(Uuid, Uuid)]),
}

/// Told of what units of work (and single-statement revocations) committed.
pub type OnAccessChange = Arc<dyn Fn(Committed<'_>) + Send + Sync>;

/// The database handle shared by every request.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    on_access_change: Arc<OnceLock<OnAccessChange>>,
    /// Woken when a write appended audit events, so this replica's chainer runs soon.
    audit_appended: Arc<tokio::sync::Notify>,
    /// PostgreSQL's URL, for the access feed's own listening connection. Never printed.
    feed_url: Option<Arc<str>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("db", &self.db).finish()
    }
}

/// A unit of work: one database transaction. Dropped without `commit`, it rolls back.
pub struct Tx {
    txn: DatabaseTransaction,
    /// The access revisions this unit of work made, and the sessions it ended (account,
    /// session), for `on_access_change` after the commit.
    revisions: Mutex<Vec<(Uuid, i64)>>,
    ended: Mutex<Vec<(Uuid, Uuid)>>,
    on_access_change: Option<OnAccessChange>,
    /// Set when this unit of work appended audit events: the chainer is woken after the commit.
    appended: std::sync::atomic::AtomicBool,
    audit_appended: Arc<tokio::sync::Notify>,
}

impl Tx {
    pub async fn commit(self) -> DomainResult<()> {
        self.txn.commit().await?;
        if self.appended.load(std::sync::atomic::Ordering::Relaxed) {
            self.audit_appended.notify_one();
        }
        let revisions = std::mem::take(&mut *lock(&self.revisions));
        let ended = std::mem::take(&mut *lock(&self.ended));
        if let Some(tell) = &self.on_access_change {
            for (account_id, revision) in revisions {
                tell(Committed::Revision {
                    account_id,
                    revision,
                });
            }
            if !ended.is_empty() {
                tell(Committed::SessionsEnded(&ended));
            }
        }
        Ok(())
    }

    /// Notes sessions this unit of work ended, for the replica's memory after the commit.
    fn sessions_ended(&self, ended: &[(Uuid, Uuid)]) {
        lock(&self.ended).extend_from_slice(ended);
    }

    fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    fn audit_appended(&self) {
        self.appended
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes as one PostgreSQL statement, `WITH write_0 AS (...), write_1 AS (...) SELECT 1`: each
/// data-modifying WITH query runs exactly once, to completion, so several writes cost one round
/// trip and commit together.
fn combined(backend: DbBackend, writes: Vec<sea_orm::sea_query::SubQueryStatement>) -> Statement {
    use sea_orm::sea_query::{Alias, CommonTableExpression, Expr, Query, WithClause};
    let mut with = WithClause::new();
    for (n, write) in writes.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(write)
                .table_name(Alias::new(format!("write_{n}")))
                .to_owned(),
        );
    }
    backend.build(&with.query(Query::select().expr(Expr::value(1)).to_owned()))
}

/// Authentication methods as stored: comma-separated (`pwd,otp`).
fn amr_of(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The password of a database URL (`scheme://user:password@host/...`), if it has one.
fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then_some(password)
}

/// `text` with the password of `url` masked wherever it appears.
fn without_password(text: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

/// A fixed key for the migration lock (`pg_advisory_lock`): any 64-bit value unique to this service.
const MIGRATION_LOCK_KEY: i64 = 0x1d3e_7417_0000_0001;

impl Store {
    /// Opens the pool. SQLite runs with one connection: it has one writer anyway, and a single
    /// connection makes every transaction serial, so caps hold without row locks.
    pub async fn connect(database: &Database, max_connections: u32) -> Result<Self> {
        let (url, max) = match database {
            Database::Postgres { url } => (url.expose().to_owned(), max_connections),
            Database::Sqlite { url } => (url.clone(), 1),
            Database::Embedded { data_dir } => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("cannot create {}", data_dir.display()))?;
                let file = data_dir.join("identity.db");
                (format!("sqlite://{}?mode=rwc", file.display()), 1)
            }
        };
        let mut options = ConnectOptions::new(url.clone());
        options
            .max_connections(max)
            .min_connections(1)
            // A database that does not answer is reported soon (UNAVAILABLE, retry), not after
            // the caller's own deadline.
            .connect_timeout(Duration::from_secs(2))
            .acquire_timeout(Duration::from_secs(3))
            // A liveness query on every checkout costs a round trip; only check idle connections.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .sqlx_logging(false);
        // The driver's errors can quote the URL, password included: mask it, and keep no source.
        let db = match sea_orm::Database::connect(options).await {
            Ok(db) => db,
            Err(err) => {
                // The pool says only that it timed out; one direct attempt says why (refused,
                // unknown host, wrong password, no such database).
                let cause = match database {
                    Database::Postgres { .. } => why_postgres_refuses(&url).await,
                    _ => None,
                };
                anyhow::bail!(
                    "cannot connect to the database: {}",
                    without_password(&cause.unwrap_or_else(|| err.to_string()), &url)
                );
            }
        };
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
                .await?;
        }
        let feed_url = match database {
            Database::Postgres { url } => Some(Arc::from(url.expose())),
            _ => None,
        };
        Ok(Self {
            db,
            on_access_change: Arc::new(OnceLock::new()),
            audit_appended: Arc::new(tokio::sync::Notify::new()),
            feed_url,
        })
    }

    /// Tells the replica's memory of sessions a single statement ended.
    fn tell_sessions_ended(&self, ended: &[(Uuid, Uuid)]) {
        if let (Some(tell), false) = (self.on_access_change.get(), ended.is_empty()) {
            tell(Committed::SessionsEnded(ended));
        }
    }

    /// Sets who is told of the access revisions units of work commit (once; later calls are
    /// ignored): the replica's access data, so the replica that made a change sees it at once.
    pub fn on_access_change(&self, tell: OnAccessChange) {
        let _ = self.on_access_change.set(tell);
    }

    /// Wakes this replica's chainer: events were appended outside a unit of work.
    fn wake_chainer(&self) {
        self.audit_appended.notify_one();
    }

    /// Resolves when a write of this replica appended audit events since the last call.
    pub async fn audit_appended(&self) {
        self.audit_appended.notified().await;
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Opens a unit of work.
    pub async fn begin(&self) -> DomainResult<Tx> {
        Ok(Tx {
            txn: self.db.begin().await?,
            revisions: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
            on_access_change: self.on_access_change.get().cloned(),
            appended: std::sync::atomic::AtomicBool::new(false),
            audit_appended: self.audit_appended.clone(),
        })
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        self.db
            .query_one_raw(Statement::from_string(self.backend(), "SELECT 1"))
            .await
            .is_ok()
    }

    /// Applies pending migrations. On PostgreSQL a session advisory lock makes concurrent runs
    /// (two replicas, or a Helm hook and a developer) wait for each other instead of racing.
    pub async fn migrate(&self) -> Result<()> {
        if self.backend() != DbBackend::Postgres {
            return Migrator::up(&self.db, None)
                .await
                .context("migration failed");
        }
        let pool = self.db.get_postgres_connection_pool();
        let mut lock = pool.acquire().await?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *lock)
            .await?;
        let result = Migrator::up(&self.db, None).await;
        sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *lock)
            .await?;
        result.context("migration failed")
    }

    /// Names of the migrations this binary knows that the database has not applied. Migrations
    /// applied by a newer release are ignored, so an older replica keeps running during an upgrade.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        let applied: Vec<String> = match self
            .db
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await
        {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| row.try_get::<String>("", "version").ok())
                .collect(),
            // No bookkeeping table yet: nothing is applied.
            Err(_) => Vec::new(),
        };
        Ok(Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .filter(|name| !applied.contains(name))
            .collect())
    }
}

/// Unique constraints the code reacts to, by the names the migrations give them. SQLite reports
/// the columns rather than the name, so each is listed with its columns too.
const UNIQUE_CONSTRAINTS: &[(&str, &str)] = &[
    ("users_email_key_key", "users.email_key"),
    (
        "groups_account_name_key",
        "groups.account_id, groups.name_key",
    ),
    (
        "memberships_pkey",
        "memberships.account_id, memberships.user_id",
    ),
    (
        "idempotency_keys_pkey",
        "idempotency_keys.scope, idempotency_keys.request_id",
    ),
];

/// The name of the unique constraint `err` violated, if that is what it is.
pub fn unique_violation(err: &DbErr) -> Option<&'static str> {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    let SqlxError::Database(db_err) = &**e else {
        return None;
    };
    if !db_err.is_unique_violation() {
        return None;
    }
    if let Some(name) = db_err.constraint() {
        return UNIQUE_CONSTRAINTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| *n);
    }
    let message = db_err.message();
    UNIQUE_CONSTRAINTS
        .iter()
        .find(|(_, columns)| message.ends_with(columns))
        .map(|(n, _)| *n)
}

/// Whether `err` says the database cannot be reached now (a lost or refused connection, an
/// exhausted or closed pool, a server shutting down), not that the statement was wrong: the
/// caller may retry.
fn is_unavailable(err: &DbErr) -> bool {
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::Protocol(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P01 to 57P03 (admin or crash
        // shutdown, cannot connect now).
        SqlxError::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

impl From<DbErr> for DomainError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            tracing::warn!(error = %err, "the database is unavailable");
            return DomainError::Unavailable {
                reason: crate::domain::error::reason::UNAVAILABLE,
                message: "the database is unavailable; retry later".to_owned(),
            };
        }
        DomainError::internal(err)
    }
}

/// Why a PostgreSQL server refuses a connection, from one direct attempt (`None` if it connects).
async fn why_postgres_refuses(url: &str) -> Option<String> {
    use sea_orm::sqlx::Connection;
    let attempt = sea_orm::sqlx::PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            None
        }
        Ok(Err(err)) => Some(err.to_string()),
        Err(_) => Some("the server did not answer within 2 s".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_masked_in_messages() {
        let url = "postgres://identity:S3cr3t@Pw@db:54a32/identity";
        let message = format!("The connection string '{url}' cannot be parsed.");
        let masked = without_password(&message, url);
        assert!(!masked.contains("S3cr3t@Pw"), "{masked}");
        assert!(masked.contains("postgres://identity:***@db:54a32/identity"));
        assert_eq!(password_of("postgres://identity@db/identity"), None);
        assert_eq!(password_of("sqlite://data/identity.db"), None);
        assert_eq!(
            without_password("no url here", "postgres://u:p@h/d"),
            "no url here"
        );
    }
}
