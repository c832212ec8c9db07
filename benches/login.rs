//! Login throughput against raw argon2id on the same cores, and ValidateToken latency while a
//! login flood runs, in one run through the real server on PostgreSQL. The phases, 10 s each:
//! raw argon2id verifications on every core (no server); ValidateToken one call at a time; a
//! login flood alone (4 clients per core, each logging in as its own person); ValidateToken
//! again while that flood goes on. Prints its figures:
//!
//!     cargo bench --bench login
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use identity::{
    auth::{keys::generate_ed25519, secret_token},
    build_app,
    clock::SystemClock,
    config::{Config, Database, Secret, ServiceTokenConfig},
    proto::{self, auth_service_client::AuthServiceClient},
    server,
    store::Store,
};
use sea_orm::ConnectionTrait;
use tonic::transport::Channel;

const PASSWORD: &str = "lantern orbit canyon 42";
const SERVICE: &str = "idt_bench_service";
const PHASE: Duration = Duration::from_secs(10);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Raw argon2id verifications per second on all cores, no server.
fn raw_argon2() -> f64 {
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..cores())
        .map(|_| {
            let (hash, count) = (hash.clone(), count.clone());
            std::thread::spawn(move || {
                let parsed = PasswordHash::new(&hash).unwrap();
                while started.elapsed() < PHASE {
                    Argon2::default()
                        .verify_password(PASSWORD.as_bytes(), &parsed)
                        .unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn with_service<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {SERVICE}").parse().unwrap(),
    );
    request
}

/// Clients logging in as fast as they can, each as its own person, until stopped.
struct Flood {
    stop: Arc<AtomicBool>,
    logins: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counted_from: (u64, u64, Instant),
}

impl Flood {
    /// Starts `clients` clients and lets them run for a second before counting.
    async fn start(
        channel: Channel,
        clients: usize,
        login: impl Fn(usize) -> proto::LoginRequest + Copy + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let logins = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|n| {
                let (stop, logins, refused) = (stop.clone(), logins.clone(), refused.clone());
                let mut client = AuthServiceClient::new(channel.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.login(login(n)).await {
                            Ok(_) => logins.fetch_add(1, Ordering::Relaxed),
                            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        let mut flood = Self {
            stop,
            logins,
            refused,
            tasks,
            counted_from: (0, 0, Instant::now()),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        flood.restart_count();
        flood
    }

    /// Logins per second and refusals since the count (re)started.
    fn rates(&self) -> (f64, u64) {
        let (logins, refused, since) = self.counted_from;
        (
            (self.logins.load(Ordering::Relaxed) - logins) as f64 / since.elapsed().as_secs_f64(),
            self.refused.load(Ordering::Relaxed) - refused,
        )
    }

    fn restart_count(&mut self) {
        self.counted_from = (
            self.logins.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            Instant::now(),
        );
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// ValidateToken latencies, one call at a time, for `PHASE`.
async fn validate_latencies(channel: Channel, access_token: String) -> Vec<Duration> {
    let mut client = AuthServiceClient::new(channel);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < PHASE {
        let t = Instant::now();
        client
            .validate_token(with_service(proto::ValidateTokenRequest {
                access_token: access_token.clone(),
            }))
            .await
            .unwrap();
        samples.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("IDENTITY_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("identity_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&base).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut url = url::Url::parse(&base)?;
    url.set_path(&name);
    let result = run(url.to_string()).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

async fn run(url: String) -> anyhow::Result<()> {
    let mut config = Config::from_lookup(|_| None)?;
    config.database = Database::Postgres {
        url: Secret::new(url),
    };
    config.listen_addr = "127.0.0.1:0".parse()?;
    config.signing_keys = vec![generate_ed25519("bench")?];
    config.secret_key = Some(Secret::new(
        "YmVuY2gtc2VjcmV0LWtleS1iZW5jaC1zZWNyZXQta2V5LWJlbmNo",
    ));
    config.outbox_interval = Duration::from_secs(3600);
    config.service_tokens = vec![ServiceTokenConfig {
        name: "bench".into(),
        scopes: vec!["accounts.operate".into()],
        sha256: secret_token::digest_hex(SERVICE),
    }];
    let store = Store::connect(&config.database, 16).await?;
    store.migrate().await?;
    let (app, _) = build_app(config, store.clone(), Arc::new(SystemClock)).await?;
    let hash_concurrency = app.config.password_hash_concurrency;
    let listener = server::bind(app.config.listen_addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve(app.clone(), listener, std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    // The flood's people: active members of one account (no email code), each with a password.
    // Each flood client logs in as its own person, as a crowd would; parallel logins of one
    // person count against that person's throttle.
    let clients = 4 * cores();
    let created = proto::account_service_client::AccountServiceClient::new(channel.clone())
        .create_account(with_service(proto::CreateAccountRequest {
            name: "Bench".into(),
            administrator_email: "person0@bench.test".into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let account_id = created.account.unwrap().id;
    let mut users = proto::user_service_client::UserServiceClient::new(channel.clone());
    for n in 1..clients {
        users
            .create_user(with_service(proto::CreateUserRequest {
                account_id: account_id.clone(),
                email: format!("person{n}@bench.test"),
                role: proto::Role::MediaLibraryViewOnly as i32,
                ..Default::default()
            }))
            .await?;
    }
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    store
        .connection()
        .execute_unprepared(&format!("UPDATE users SET password_hash = '{hash}'"))
        .await?;
    store
        .connection()
        .execute_unprepared("UPDATE memberships SET status = 'active'")
        .await?;
    let login = |n: usize| proto::LoginRequest {
        email: format!("person{n}@bench.test"),
        password: PASSWORD.into(),
        account_id: String::new(),
    };
    let access_token = match AuthServiceClient::new(channel.clone())
        .login(login(0))
        .await?
        .into_inner()
        .outcome
    {
        Some(proto::login_response::Outcome::Tokens(t)) => t.access_token,
        other => panic!("{other:?}"),
    };

    println!(
        "cores: {}, password hash concurrency: {hash_concurrency}, phases of {} s",
        cores(),
        PHASE.as_secs()
    );
    let raw = raw_argon2();
    println!("raw argon2id verifications/s (all cores, no server): {raw:.1}");

    let (quiet_p50, quiet_p99) =
        p99(validate_latencies(channel.clone(), access_token.clone()).await);

    // Login throughput: the flood alone.
    let mut flood = Flood::start(channel.clone(), clients, login).await;
    tokio::time::sleep(PHASE).await;
    let (rate, refused) = flood.rates();
    // ValidateToken latency while the flood goes on.
    flood.restart_count();
    let (flood_p50, flood_p99) =
        p99(validate_latencies(channel.clone(), access_token.clone()).await);
    let (rate_probed, _) = flood.rates();
    flood.stop().await;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "Login/s, {clients} clients: {rate:.1}  ({:.1}% of raw argon2id), refused: {refused}",
        100.0 * rate / raw
    );
    println!("Login/s while ValidateToken is measured: {rate_probed:.1}");
    println!("| ValidateToken | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!("| alone | {:.2} | {:.2} |", ms(quiet_p50), ms(quiet_p99));
    println!(
        "| during the login flood | {:.2} | {:.2} |",
        ms(flood_p50),
        ms(flood_p99)
    );
    println!(
        "p99 during flood / alone: {:.2}",
        flood_p99.as_secs_f64() / quiet_p99.as_secs_f64()
    );
    Ok(())
}
