//! Login throughput against raw argon2id on the same cores, and ValidateToken latency while a
//! login flood runs, in one run through the real server on PostgreSQL. Two measurements, each
//! in alternating rounds so that a change of the machine's speed during the run hits both sides:
//! raw argon2id verifications on every core (no server) against a login flood (4 clients per
//! core, each logging in as its own person); then ValidateToken, one call at a time, alone
//! against during such a flood. Prints its figures:
//!
//!     cargo bench --bench login
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use argon2::{Argon2, Block, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use identity::proto::{self, auth_service_client::AuthServiceClient};
use sea_orm::ConnectionTrait;
use tonic::transport::Channel;

const PASSWORD: &str = "lantern orbit canyon 42";
const SERVICE: &str = "idt_bench_service";
/// Each measurement runs in `ROUNDS` rounds of `ROUND`, alternating with the one it is compared
/// to, so that a drift of the machine's speed during the run (shared hosts) hits both alike.
const ROUND: Duration = Duration::from_secs(4);
const ROUNDS: u32 = 5;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// CPU seconds used, by whom (from /proc: this process's threads by name, PostgreSQL's
/// processes, and the machine's totals).
#[derive(Default, Clone, Copy)]
struct CpuTime {
    seconds: f64,
    hashing: f64,
    server: f64,
    client: f64,
    postgres: f64,
    other: f64,
    idle: f64,
    at: Option<Instant>,
}

impl CpuTime {
    fn now() -> Self {
        let mut cpu = Self {
            at: Some(Instant::now()),
            ..Self::default()
        };
        for (comm, secs) in common::cpu::threads() {
            if comm.starts_with("password-hash") {
                cpu.hashing += secs;
            } else if comm.starts_with("server") {
                cpu.server += secs;
            } else {
                cpu.client += secs;
            }
        }
        cpu.postgres = common::cpu::postgres();
        (cpu.other, cpu.idle) = common::cpu::machine();
        cpu
    }

    /// What was used between `before` and `self`; `other` is the machine's busy time not
    /// counted above.
    fn since(&self, before: &Self) -> Self {
        let mut d = Self {
            seconds: match (self.at, before.at) {
                (Some(now), Some(then)) => (now - then).as_secs_f64(),
                _ => 0.0,
            },
            hashing: self.hashing - before.hashing,
            server: self.server - before.server,
            client: self.client - before.client,
            postgres: self.postgres - before.postgres,
            other: self.other - before.other,
            idle: self.idle - before.idle,
            at: None,
        };
        d.other -= d.hashing + d.server + d.client + d.postgres;
        d
    }

    fn total(parts: &[Self]) -> Self {
        parts.iter().fold(Self::default(), |sum, p| Self {
            seconds: sum.seconds + p.seconds,
            hashing: sum.hashing + p.hashing,
            server: sum.server + p.server,
            client: sum.client + p.client,
            postgres: sum.postgres + p.postgres,
            other: sum.other + p.other,
            idle: sum.idle + p.idle,
            at: None,
        })
    }
}

/// How a raw verification gets its 19 MiB of argon2 memory.
#[derive(Clone, Copy)]
enum Memory {
    /// Allocated per verification: the argon2 crate's `verify_password`.
    Fresh,
    /// Kept by each thread from one verification to the next, as the server's pool does.
    Kept,
}

/// Raw argon2id verifications per second on all cores for one round, no server.
fn raw_argon2(memory: Memory) -> f64 {
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
                let expected = parsed.hash.unwrap();
                let salt = parsed.salt.unwrap();
                let mut blocks = vec![Block::default(); Params::DEFAULT.block_count()];
                let mut out = vec![0u8; expected.len()];
                while started.elapsed() < ROUND {
                    match memory {
                        Memory::Fresh => Argon2::default()
                            .verify_password(PASSWORD.as_bytes(), &parsed)
                            .unwrap(),
                        Memory::Kept => {
                            Argon2::default()
                                .hash_password_into_with_memory(
                                    PASSWORD.as_bytes(),
                                    &salt,
                                    &mut out,
                                    &mut blocks,
                                )
                                .unwrap();
                            assert_eq!(out, expected.as_bytes());
                        }
                    }
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
    let at = |permille: usize| samples[samples.len() * permille / 1000].as_secs_f64() * 1000.0;
    println!(
        "  ({} calls; ms at p90 {:.2}, p95 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2})",
        samples.len(),
        at(900),
        at(950),
        at(990),
        at(999),
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn with_service<T>(message: T) -> tonic::Request<T> {
    common::authorized(SERVICE, message)
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

/// The RPC whose latency is measured.
#[derive(Clone)]
enum Probe {
    /// Checks the session and membership in the database (one query).
    ValidateToken(String),
    /// Answers from memory: what a check that needs no database costs.
    GetJwks,
}

/// Latencies of `probe`, one call at a time, for one round.
async fn latencies(channel: Channel, probe: Probe) -> Vec<Duration> {
    let mut client = AuthServiceClient::new(channel);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < ROUND {
        let t = Instant::now();
        match &probe {
            Probe::ValidateToken(access_token) => {
                client
                    .validate_token(with_service(proto::ValidateTokenRequest {
                        access_token: access_token.clone(),
                    }))
                    .await
                    .unwrap();
            }
            Probe::GetJwks => {
                client.get_jwks(proto::GetJwksRequest {}).await.unwrap();
            }
        }
        samples.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::on_scratch_database(run).await
}

async fn run(url: String) -> anyhow::Result<()> {
    let mut config = common::config(url, SERVICE)?;
    config.outbox_interval = Duration::from_secs(3600);
    // `IDENTITY_BENCH_HASH_THREADS=N`: a password pool of N threads instead of one per core.
    if let Some(threads) = std::env::var("IDENTITY_BENCH_HASH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.password_hash_concurrency = threads;
    }
    // The server runs on a runtime of its own (threads named `server`), apart from the load
    // generator's, so the CPU each side uses can be told apart.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .thread_name("server")
        .enable_all()
        .build()?;
    let hash_concurrency = config.password_hash_concurrency;
    let (store, addr) = server_runtime.spawn(common::start_server(config)).await??;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    // The flood's people: active members of one account (no email code), each with a password.
    // Each flood client logs in as its own person, as a crowd would; parallel logins of one
    // person count against that person's throttle.
    let clients = std::env::var("IDENTITY_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4 * cores());
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
    // person{clients} is not in the flood: the token ValidateToken checks is theirs.
    for n in 1..=clients {
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
        .login(login(clients))
        .await?
        .into_inner()
        .outcome
    {
        Some(proto::login_response::Outcome::Tokens(t)) => t.access_token,
        other => panic!("{other:?}"),
    };

    println!(
        "cores: {}, password hash concurrency: {hash_concurrency}, {clients} login clients, \
         {ROUNDS} rounds of {} s per measurement",
        cores(),
        ROUND.as_secs()
    );

    // `IDENTITY_BENCH_FLOOD_SECS=N`: only a flood of N seconds, to look at with a profiler.
    if let Some(secs) = std::env::var("IDENTITY_BENCH_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let flood = Flood::start(channel.clone(), clients, login).await;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        println!("Login/s: {:.1}", flood.rates().0);
        flood.stop().await;
        server_runtime.shutdown_background();
        return Ok(());
    }

    let only = std::env::var("IDENTITY_BENCH_ONLY").unwrap_or_default();
    if only != "latency" {
        throughput(channel.clone(), clients, login).await;
    }
    if only != "throughput" {
        latency(channel.clone(), clients, login, access_token).await;
    }
    server_runtime.shutdown_background();
    Ok(())
}

/// Login throughput against raw argon2id, with the CPU each party used.
async fn throughput(
    channel: Channel,
    clients: usize,
    login: impl Fn(usize) -> proto::LoginRequest + Copy + Send + 'static,
) {
    // Login throughput against raw argon2id, round by round. Raw is measured both ways (memory
    // allocated per verification, memory kept per thread); the ratio is taken to the faster.
    println!("| round | raw, fresh memory/s | raw, kept memory/s | Login/s | Login / faster raw |");
    println!("|---|---|---|---|---|");
    let (mut fresh_total, mut kept_total, mut login_total, mut refused_total) = (0.0, 0.0, 0.0, 0);
    let mut ratios = Vec::new();
    let mut cpu = Vec::new();
    for round in 1..=ROUNDS {
        let fresh = raw_argon2(Memory::Fresh);
        let kept = raw_argon2(Memory::Kept);
        let flood = Flood::start(channel.clone(), clients, login).await;
        let before = CpuTime::now();
        tokio::time::sleep(ROUND).await;
        let (rate, refused) = flood.rates();
        cpu.push(CpuTime::now().since(&before));
        flood.stop().await;
        let raw = f64::max(fresh, kept);
        println!(
            "| {round} | {fresh:.1} | {kept:.1} | {rate:.1} | {:.1}% |",
            100.0 * rate / raw
        );
        fresh_total += fresh;
        kept_total += kept;
        login_total += rate;
        refused_total += refused;
        ratios.push(rate / raw);
    }
    ratios.sort_by(f64::total_cmp);
    let rounds = f64::from(ROUNDS);
    println!(
        "all rounds: raw argon2id {:.1}/s (fresh memory) and {:.1}/s (kept memory); \
         Login {:.1}/s: {:.1}% of the faster raw (median round {:.1}%); refused logins: {refused_total}",
        fresh_total / rounds,
        kept_total / rounds,
        login_total / rounds,
        100.0 * login_total / f64::max(fresh_total, kept_total),
        100.0 * ratios[ratios.len() / 2],
    );

    let used = CpuTime::total(&cpu);
    let logins = login_total * ROUND.as_secs_f64();
    println!(
        "CPU during the login rounds, in cores busy (and CPU ms per login): password hashing \
         {:.2} ({:.2}), server {:.2} ({:.2}), load generator {:.2} ({:.2}), PostgreSQL {:.2} \
         ({:.2}), anything else {:.2}, idle {:.2}",
        used.hashing / used.seconds,
        1000.0 * used.hashing / logins,
        used.server / used.seconds,
        1000.0 * used.server / logins,
        used.client / used.seconds,
        1000.0 * used.client / logins,
        used.postgres / used.seconds,
        1000.0 * used.postgres / logins,
        used.other / used.seconds,
        used.idle / used.seconds,
    );
    let raw_ms = 1000.0 * cores() as f64 / f64::max(fresh_total, kept_total) * rounds;
    println!(
        "the service's own CPU per login (hashing + server) against a raw verification: \
         {:.2} ms against {raw_ms:.2} ms, so on cores of its own it would sustain {:.1}% of raw",
        1000.0 * (used.hashing + used.server) / logins,
        100.0 * raw_ms / (1000.0 * (used.hashing + used.server) / logins),
    );
}

/// ValidateToken alone and during a login flood, round by round; percentiles over all rounds.
async fn latency(
    channel: Channel,
    clients: usize,
    login: impl Fn(usize) -> proto::LoginRequest + Copy + Send + 'static,
    access_token: String,
) {
    let rounds = f64::from(ROUNDS);
    let probes = [Probe::ValidateToken(access_token), Probe::GetJwks];
    let mut alone = vec![Vec::new(); probes.len()];
    let mut flooded = vec![Vec::new(); probes.len()];
    let mut flood_rates = 0.0;
    for _ in 0..ROUNDS {
        for (probe, samples) in probes.iter().zip(&mut alone) {
            samples.extend(latencies(channel.clone(), probe.clone()).await);
        }
        let flood = Flood::start(channel.clone(), clients, login).await;
        for (probe, samples) in probes.iter().zip(&mut flooded) {
            samples.extend(latencies(channel.clone(), probe.clone()).await);
        }
        flood_rates += flood.rates().0;
        flood.stop().await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| RPC | p50 ms alone | p99 ms alone | p50 ms in the flood | p99 ms in the flood | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for ((probe, alone), flooded) in probes.iter().zip(alone).zip(flooded) {
        let name = match probe {
            Probe::ValidateToken(_) => "ValidateToken",
            Probe::GetJwks => "GetJwks (from memory)",
        };
        println!("{name}:");
        let (alone_p50, alone_p99) = p99(alone);
        let (flood_p50, flood_p99) = p99(flooded);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | x{:.2} |",
            ms(alone_p50),
            ms(alone_p99),
            ms(flood_p50),
            ms(flood_p99),
            flood_p99.as_secs_f64() / alone_p99.as_secs_f64()
        );
    }
    println!("the flood ran at {:.1} logins/s", flood_rates / rounds);
}
