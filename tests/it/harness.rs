//! Test fixtures: a fresh database per test, the real server on port 0, clients and callers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::Utc;
use identity::{
    app::App,
    auth::{
        keys::{TokenSubject, generate_ed25519},
        secret_token,
    },
    build_app, build_app_with_mailer,
    clock::ManualClock,
    config::{Config, Database, MailerKind, Secret, ServiceTokenConfig},
    domain::auth::{NewSession, Session},
    domain::roles::Role,
    email::ses::SesMailer,
    proto, server,
    store::Store,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use uuid::Uuid;

pub const OPERATOR: &str = "idt_test_operator";
pub const DAM: &str = "idt_test_dam";
pub const READER: &str = "idt_test_reader";

/// A loopback port free at the time of asking (for a peer that needs its port before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap()
}

/// The token of a service holding only `scope` (every scope has one in the test configuration).
pub fn scope_token(scope: &str) -> String {
    format!("idt_test_scope_{}", scope.replace('.', "_"))
}

fn base_url() -> String {
    std::env::var("IDENTITY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn backend() -> Backend {
    match std::env::var("IDENTITY_TEST_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") | Err(_) => Backend::Postgres,
        Ok(other) => panic!("IDENTITY_TEST_BACKEND must be postgres or sqlite, not {other:?}"),
    }
}

/// A database of its own: a fresh PostgreSQL database (dropped when this is dropped) or an
/// in-memory SQLite database.
pub struct TestDb {
    pub database: Database,
    pg_name: Option<String>,
    /// Replicas on one database share their signing and secret keys, as in production.
    signing_key: identity::config::SigningKeyConfig,
    secret_key: String,
}

/// A connection to the PostgreSQL server's maintenance database, as the suite's administrator.
pub async fn admin_connection() -> sea_orm::DatabaseConnection {
    let url = base_url();
    sea_orm::Database::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}).\n\
             The suite needs a running PostgreSQL: start it (on Debian: `pg_ctlcluster 15 main start`), \
             or point IDENTITY_TEST_DATABASE_URL at a server where this user may CREATE DATABASE. \
             `tests/run` does both checks for you."
        )
    })
}

impl TestDb {
    pub async fn new() -> Self {
        match backend() {
            Backend::Sqlite => Self {
                database: Database::Sqlite {
                    url: "sqlite::memory:".to_owned(),
                },
                pg_name: None,
                signing_key: generate_ed25519("test-key").unwrap(),
                secret_key: random_secret_key(),
            },
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// Always PostgreSQL, whatever the backend of the run.
    pub async fn postgres() -> Self {
        use sea_orm::ConnectionTrait;
        let name = format!("identity_test_{}", Uuid::new_v4().simple());
        let admin = admin_connection().await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&base_url()).expect("IDENTITY_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            database: Database::Postgres {
                url: Secret::new(url.to_string()),
            },
            pg_name: Some(name),
            signing_key: generate_ed25519("test-key").unwrap(),
            secret_key: random_secret_key(),
        }
    }

    /// The database at `url` as it is (created and removed by whoever runs its server).
    pub fn at(url: String) -> Self {
        Self {
            database: Database::Postgres {
                url: Secret::new(url),
            },
            pg_name: None,
            signing_key: generate_ed25519("test-key").unwrap(),
            secret_key: random_secret_key(),
        }
    }

    /// Lets new connections into this PostgreSQL database, or (`false`) keeps them out.
    pub async fn allow_connections(&self, allowed: bool) {
        use sea_orm::ConnectionTrait;
        let name = self.pg_name().expect("a PostgreSQL test database");
        admin_connection()
            .await
            .execute_unprepared(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}"
            ))
            .await
            .unwrap();
    }

    /// Cuts every service off this PostgreSQL database: new connections refused, open ones ended.
    pub async fn cut_off(&self) {
        use sea_orm::ConnectionTrait;
        self.allow_connections(false).await;
        let name = self.pg_name().expect("a PostgreSQL test database");
        admin_connection()
            .await
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
    }

    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.database, 8)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime; the drop query gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sea_orm::ConnectionTrait;
                let admin = admin_connection().await;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            })
        })
        .join();
    }
}

fn random_secret_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// A configuration for tests: a fresh signing key, the test service tokens, fast health checks.
pub fn test_config(db: &TestDb) -> Config {
    let token = |name: &str, token: &str, scopes: &[&str]| ServiceTokenConfig {
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        sha256: secret_token::digest_hex(token),
    };
    let mut config = Config::from_lookup(|_| None).expect("default config");
    config.database = db.database.clone();
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.signing_keys = vec![db.signing_key.clone()];
    config.service_tokens = vec![
        token("ops", OPERATOR, &["accounts.operate"]),
        token(
            "dam",
            DAM,
            &["access.check", "access.share", "audit.write", "users.read"],
        ),
        token("reader", READER, &["users.read"]),
    ];
    config
        .service_tokens
        .extend(identity::domain::actor::Scope::ALL.iter().map(|scope| {
            token(
                scope.as_str(),
                &scope_token(scope.as_str()),
                &[scope.as_str()],
            )
        }));
    config.health_interval = Duration::from_millis(100);
    config.secret_key = Some(Secret::new(db.secret_key.clone()));
    config.outbox_interval = Duration::from_millis(50);
    config.shutdown_delay = Duration::from_millis(0);
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// AWS settings for an SES emulator on loopback: fixed region and static credentials, so nothing
/// is looked up in the environment, profiles or instance metadata.
pub fn emulator_aws_config() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
}

/// The real server, in-process on a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    pub clock: Arc<ManualClock>,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the database outlives the server.
    _db: Arc<TestDb>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_on(Arc::new(TestDb::new().await), |_| {}).await
    }

    /// Starts on `db` (shared by several servers in the replica tests), migrated as `identity
    /// migrate` does, with `adjust` applied to the test configuration.
    pub async fn start_on(db: Arc<TestDb>, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(&db);
        adjust(&mut config);
        let store = if let Database::Sqlite { .. } = db.database {
            // In-memory SQLite lives in its one connection: migrate through the server's own store.
            Store::connect(&config.database, 1).await.unwrap()
        } else {
            db.store().await
        };
        store.migrate().await.expect("migrate");
        let clock = Arc::new(ManualClock::default());
        let (app, _) = match config.email.mailer {
            // The SES emulator takes any credentials; they are given here rather than through the
            // process environment, which tests share. The binary's own test covers the AWS chain.
            MailerKind::Ses => {
                let mailer = SesMailer::with_loader(&config.email, emulator_aws_config())
                    .await
                    .expect("build the SES mailer");
                build_app_with_mailer(config, store, clock.clone(), Arc::new(mailer)).await
            }
            MailerKind::Console => build_app(config, store, clock.clone()).await,
        }
        .expect("build the app");
        let listener = server::bind(app.config.listen_addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(app.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        Self {
            addr,
            app,
            clock,
            channel,
            stop: Some(stop),
            task: Some(task),
            _db: db,
        }
    }

    /// Stops the server as SIGTERM would and waits for it.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn accounts(&self) -> proto::account_service_client::AccountServiceClient<Channel> {
        proto::account_service_client::AccountServiceClient::new(self.channel())
    }

    pub fn auth(&self) -> proto::auth_service_client::AuthServiceClient<Channel> {
        proto::auth_service_client::AuthServiceClient::new(self.channel())
    }

    pub fn users(&self) -> proto::user_service_client::UserServiceClient<Channel> {
        proto::user_service_client::UserServiceClient::new(self.channel())
    }

    pub fn groups(&self) -> proto::group_service_client::GroupServiceClient<Channel> {
        proto::group_service_client::GroupServiceClient::new(self.channel())
    }

    /// An INVITED member of the account with `role`, added through CreateUser (as the operator).
    pub async fn invite_member(&self, account_id: &str, email: &str, role: Role) -> proto::User {
        let role = identity::grpc::convert::role_to_proto(role);
        self.users()
            .create_user(with_token(
                OPERATOR,
                proto::CreateUserRequest {
                    account_id: account_id.to_owned(),
                    email: email.to_owned(),
                    role: role as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("create user")
            .into_inner()
            .user
            .unwrap()
    }

    /// A member of the account with `role`, added through CreateUser (as the operator) and
    /// marked active.
    pub async fn add_member(&self, account_id: &str, email: &str, role: Role) -> proto::User {
        let mut user = self.invite_member(account_id, email, role).await;
        self.activate(&user).await;
        user.status = proto::MembershipStatus::Active as i32;
        user.invitation_expire_time = None;
        user
    }

    pub fn health(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        tonic_health::pb::health_client::HealthClient::new(self.channel())
    }

    /// An access token for a member, signed with the server's keys (as a login would issue it).
    pub async fn token_for(&self, user: &proto::User) -> String {
        let role = identity::grpc::convert::role_from_proto(user.role).expect("user with a role");
        self.token_as(
            user.id.parse().unwrap(),
            user.account_id.parse().unwrap(),
            role,
            &user.email,
        )
        .await
    }

    /// An access token of a fresh session of `user_id` in `account_id`, as a login would issue:
    /// an invited member accepts their invitation first (a login needs an ACTIVE membership).
    pub async fn token_as(
        &self,
        user_id: Uuid,
        account_id: Uuid,
        role: Role,
        email: &str,
    ) -> String {
        use identity::store::entities::membership;
        use sea_orm::EntityTrait;
        let status = membership::Entity::find_by_id((account_id, user_id))
            .one(self.app.store.connection())
            .await
            .unwrap()
            .map(|m| m.status);
        if status == Some(membership::StoredStatus::Invited) {
            self.activate_member(account_id, user_id, role).await;
        }
        self.session_token(user_id, account_id, role, email).await
    }

    /// An access token of a fresh session of `user_id` in `account_id`, whatever the membership's
    /// status (no login would start one for a member who is not ACTIVE).
    pub async fn session_token(
        &self,
        user_id: Uuid,
        account_id: Uuid,
        role: Role,
        email: &str,
    ) -> String {
        let now = self.clock.now_utc();
        let session = Session::open(
            NewSession {
                user_id,
                account_id,
                amr: vec!["pwd".to_owned()],
                mfa_passed: true,
                user_agent: None,
                ip_address: None,
            },
            now,
            chrono::Duration::days(30),
        );
        self.app.store.create_session(&session).await.unwrap();
        let subject = TokenSubject {
            user_id,
            account_id,
            role,
            session_id: session.id,
            amr: vec!["pwd".to_owned()],
            email: email.to_owned(),
        };
        self.app.keys.issue(&subject, now).unwrap().0
    }

    /// Creates an account as the operator; returns the account and its first administrator.
    pub async fn create_account(
        &self,
        name: &str,
        admin_email: &str,
    ) -> (proto::Account, proto::User) {
        let response = self
            .accounts()
            .create_account(with_token(
                OPERATOR,
                proto::CreateAccountRequest {
                    name: name.to_owned(),
                    administrator_email: admin_email.to_owned(),
                    administrator_display_name: "Admin".to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create account")
            .into_inner();
        (response.account.unwrap(), response.administrator.unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Fixtures for states that later flows reach (accepting an invitation, setting a password);
/// they write the same rows those flows write.
impl TestServer {
    pub async fn activate(&self, user: &proto::User) {
        let role = identity::grpc::convert::role_from_proto(user.role).expect("user with a role");
        self.activate_member(
            user.account_id.parse().unwrap(),
            user.id.parse().unwrap(),
            role,
        )
        .await;
    }

    /// Makes the membership ACTIVE, as accepting its invitation does.
    pub async fn activate_member(&self, account_id: Uuid, user_id: Uuid, role: Role) {
        use identity::store::entities::membership;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let now = self.clock.now_utc();
        membership::Entity::update(membership::ActiveModel {
            account_id: Set(account_id),
            user_id: Set(user_id),
            status: Set(membership::StoredStatus::Active),
            accepted_at: Set(Some(now)),
            ..Default::default()
        })
        .exec(self.app.store.connection())
        .await
        .unwrap();
        // As accepting the invitation does: the access data of every replica learns of it.
        let change = identity::domain::access_changes::AccessChange::member(
            user_id,
            role,
            identity::domain::users::MembershipStatus::Active,
        );
        let tx = self.app.store.begin().await.unwrap();
        tx.record_access_change(account_id, &[change], now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn give_password(&self, user_id: &str) {
        use identity::store::entities::user;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        user::Entity::update(user::ActiveModel {
            id: Set(user_id.parse().unwrap()),
            password_hash: Set(Some(
                "$argon2id$v=19$m=19456,t=2,p=1$fixture$fixture".to_owned(),
            )),
            ..Default::default()
        })
        .exec(self.app.store.connection())
        .await
        .unwrap();
    }

    /// The emails queued for `to`, oldest first.
    pub async fn emails_to(&self, to: &str) -> Vec<identity::store::entities::outbox_email::Model> {
        use identity::store::entities::outbox_email;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        outbox_email::Entity::find()
            .filter(outbox_email::Column::Recipient.eq(to))
            .order_by_asc(outbox_email::Column::CreatedAt)
            .order_by_asc(outbox_email::Column::Id)
            .all(self.app.store.connection())
            .await
            .unwrap()
    }
}

/// The manual clock's time (a helper so tests do not need the `Clock` trait in scope).
pub trait NowUtc {
    fn now_utc(&self) -> chrono::DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<Utc> {
        identity::clock::Clock::now(self)
    }
}

/// The access revision a consistency token of `account_id` names.
pub fn revision_of(server: &TestServer, account_id: &str, token: &str) -> i64 {
    server
        .app
        .consistency
        .decode(account_id.parse().unwrap(), token, "consistency_token")
        .unwrap()
        .expect("a consistency token")
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The `ErrorInfo.reason` of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// The fields named by a status's `BadRequest` violations.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|br| {
            br.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and `ErrorInfo.reason`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    expected_reason: &str,
) -> tonic::Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "status: {status:?}");
    assert_eq!(reason(&status), expected_reason, "status: {status:?}");
    status
}
