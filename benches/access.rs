//! Access checks, in one run against one server on PostgreSQL: the bare health check, CheckAccess
//! on an account of 1,000 shares and on one of 1,000,000, and BatchCheckAccess of 100 items on the
//! large one; the first (cold) CheckAccess of each account, and the resident memory the large
//! account's load adds, per share.
//!
//! Each account has a Restricted user (ACTIVE) in 5 groups, 45 other groups and 1,000 other
//! members. Its shares are written in bulk, one statement: ids like the DAM's (24 lowercase hex
//! characters, as ObjectIds), mostly folders and files, two shares per resource, 6% of them to the
//! user or one of their groups and the rest to other members and groups. Every check asks for VIEW
//! for the user on a file with 3 ancestor folders, nearest first; a pool of 4,096 checks per
//! account, half on shared files and half on unshared ones, mixes hits and misses. Every answer is
//! compared with the level computed from the shares in the database; a wrong answer or a failed
//! call fails the run.
//!
//! The throughput targets get the same closed-loop load (by default 4 HTTP/2 connections x 16
//! calls in flight, tonic clients over TCP with nodelay) for a fixed time after a warm-up, in
//! alternating rounds (forward, then backward) so that a drift of the shared machine's speed hits
//! them alike. The cold check of each account comes first, before any other check of it; the
//! bench's resident memory (this process runs the server) is read from /proc/self/status before
//! and after the large account's cold check, each after a settling pause. Prints a table per
//! round, a summary with the CPU each side used per call, and each target with PASS or MISS:
//!
//!     cargo bench --bench access
//!
//! Targets: CheckAccess (1M shares) at least 0.5x the health check's calls/s; a batch of 100
//! costs at most 3 single checks (time per call, from calls/s under the same load); p99 of
//! CheckAccess at 1M shares at most 1.2x the p99 at 1k; at most 150 resident bytes per share. A
//! missed target is reported, not an error.
//!
//! Knobs: IDENTITY_BENCH_SECS (measured seconds per target and round, default 5),
//! IDENTITY_BENCH_WARMUP_SECS (default 1), IDENTITY_BENCH_ROUNDS (default 3),
//! IDENTITY_BENCH_CONNECTIONS (default 4), IDENTITY_BENCH_IN_FLIGHT (per connection, default 16),
//! IDENTITY_BENCH_CLIENT_THREADS (the load generator's threads, default 1),
//! IDENTITY_BENCH_SHARES (the large account's shares, default 1,000,000),
//! IDENTITY_BENCH_SMALL_SHARES (the small account's, default 1,000) and
//! IDENTITY_BENCH_SETTLE_SECS (the pause before each resident-memory reading, default 2).
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::load::{Call, Load, Outcome, cores, env_or, measure, status_text, with_auth};

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use identity::{
    proto::{
        self, access_service_client::AccessServiceClient,
        account_service_client::AccountServiceClient, group_service_client::GroupServiceClient,
        user_service_client::UserServiceClient,
    },
    store::Store,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The bench's service token: an operator that also checks and shares.
const OPERATOR: &str = "idt_bench_operator";
const SCOPES: [&str; 3] = ["accounts.operate", "access.check", "access.share"];
/// The checked user's groups.
const GROUPS: usize = 5;
/// Groups of the account the checked user is not in.
const OTHER_GROUPS: usize = 45;
/// Members besides the administrator and the checked user.
const OTHER_USERS: usize = 1_000;
/// Ancestor folders of every checked file.
const ANCESTORS: usize = 3;
/// Checks per account, cycled through by the callers.
const POOL: usize = 4_096;
/// Items of a BatchCheckAccess, and the distinct batches per account.
const BATCH: usize = 100;
const BATCHES: usize = 64;
/// Resource numbers are the counter of an ObjectId: 3 bytes.
const MAX_RESOURCE: u32 = 1 << 24;
/// A round counts as quiet when other processes (other people's work on this shared machine)
/// used less than this many cores during both measurements of a comparison.
const QUIET: f64 = 0.25;

/// The targets.
const CHECK_PER_HEALTH_MIN: f64 = 0.5;
const BATCH_COST_MAX: f64 = 3.0;
const P99_GROWTH_MAX: f64 = 1.2;
const BYTES_PER_SHARE_MAX: f64 = 150.0;

/// "1k", "1M", or the number itself.
fn count_label(n: u32) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The high half of Knuth's multiplicative hash of `x + salt`: the seeding SQL computes the same
/// (`((x::bigint + salt) * 2654435761 % 4294967296) / 65536`), so the bench knows each resource's
/// type without reading the shares back.
fn mix(x: u32, salt: u64) -> u64 {
    ((u64::from(x) + salt) * 2_654_435_761 % 4_294_967_296) / 65_536
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Folder,
    File,
    Collection,
}

/// What resource number `r` of the share space is: 40% folders, 55% files, 5% collections.
fn kind(r: u32) -> Kind {
    match mix(r, 0) % 20 {
        0..8 => Kind::Folder,
        8..19 => Kind::File,
        _ => Kind::Collection,
    }
}

/// A DAM id for resource number `n` of an account, shaped like an ObjectId: a timestamp (one
/// second per 64 resources), the account's 10-character machine part, and `n` as the counter. The
/// seeding SQL builds the same string.
fn object_id(machine: &str, n: u32) -> String {
    format!("{:08x}{machine}{n:06x}", 1_700_000_000 + n / 64)
}

/// A ratio of one round, and whether other processes stayed quiet during both of its
/// measurements: each round's figures, then the median over the quiet rounds.
fn round_by_round(all: &[(f64, bool)]) -> String {
    let mut quiet: Vec<f64> = all.iter().filter(|(_, q)| *q).map(|(r, _)| *r).collect();
    quiet.sort_by(f64::total_cmp);
    let rounds = all
        .iter()
        .map(|(r, q)| format!("{r:.3}{}", if *q { "" } else { " (busy)" }))
        .collect::<Vec<_>>()
        .join(", ");
    match quiet.get(quiet.len() / 2) {
        Some(median) => format!(
            "round by round {rounds}; median over the {} quiet rounds {median:.3}",
            quiet.len()
        ),
        None => format!("round by round {rounds}; no round was quiet"),
    }
}

/// One check and the level it must answer (a `proto::AccessLevel` value).
struct Check {
    request: proto::CheckAccessRequest,
    level: i32,
}

/// One BatchCheckAccess and the level each item must answer.
struct Batch {
    request: proto::BatchCheckAccessRequest,
    levels: Vec<i32>,
}

/// One account under test.
struct Side {
    label: String,
    shares: u32,
    checks: Vec<Check>,
    batches: Vec<Batch>,
}

/// Compares an answer with the level computed from the shares.
fn verify(what: &str, expected: i32, allowed: bool, level: i32) -> Result<(), String> {
    let should = expected >= proto::AccessLevel::View as i32;
    if allowed != should || level != expected {
        return Err(format!(
            "{what} answered allowed = {allowed}, level {level}; the shares give allowed = \
             {should}, level {expected}"
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Health,
    CheckSmall,
    CheckLarge,
    BatchLarge,
}

impl Target {
    const ALL: [Target; 4] = [
        Target::Health,
        Target::CheckSmall,
        Target::CheckLarge,
        Target::BatchLarge,
    ];

    fn name(self, fixture: &Fixture) -> String {
        match self {
            Target::Health => "Health/Check".to_owned(),
            Target::CheckSmall => format!("CheckAccess, {} shares", fixture.small.label),
            Target::CheckLarge => format!("CheckAccess, {} shares", fixture.large.label),
            Target::BatchLarge => {
                format!("BatchCheckAccess x{BATCH}, {} shares", fixture.large.label)
            }
        }
    }

    /// Access checks each call makes.
    fn checks(self) -> usize {
        match self {
            Target::Health => 0,
            Target::CheckSmall | Target::CheckLarge => 1,
            Target::BatchLarge => BATCH,
        }
    }
}

/// What the calls need: both accounts' checks and the credentials.
struct Fixture {
    /// `Bearer <OPERATOR>`.
    auth: MetadataValue<Ascii>,
    small: Side,
    large: Side,
}

/// A request from the bench's service token.
fn request<T>(message: T) -> tonic::Request<T> {
    common::authorized(OPERATOR, message)
}

/// One in-flight slot: a client of each service on one connection.
struct Caller {
    health: HealthClient<Channel>,
    access: AccessServiceClient<Channel>,
    fixture: Arc<Fixture>,
    /// Which check or batch comes next: each slot walks the pool from its own offset.
    next: usize,
}

impl Caller {
    fn new(channel: &Channel, fixture: Arc<Fixture>, slot: usize) -> Self {
        Self {
            health: HealthClient::new(channel.clone()),
            access: AccessServiceClient::new(channel.clone()),
            next: slot * 97,
            fixture,
        }
    }

    fn next(&mut self, len: usize) -> usize {
        self.next = self.next.wrapping_add(1);
        self.next % len
    }

    async fn check(&mut self, side: &Side) -> Result<(), String> {
        let check = &side.checks[self.next(side.checks.len())];
        let response = self
            .access
            .check_access(with_auth(&self.fixture.auth, check.request.clone()))
            .await
            .map_err(status_text)?
            .into_inner();
        verify("CheckAccess", check.level, response.allowed, response.level)
    }

    async fn batch(&mut self, side: &Side) -> Result<(), String> {
        let batch = &side.batches[self.next(side.batches.len())];
        let response = self
            .access
            .batch_check_access(with_auth(&self.fixture.auth, batch.request.clone()))
            .await
            .map_err(status_text)?
            .into_inner();
        if response.results.len() != batch.levels.len() {
            return Err(format!(
                "BatchCheckAccess answered {} results for {} items",
                response.results.len(),
                batch.levels.len()
            ));
        }
        for (i, (result, level)) in response.results.iter().zip(&batch.levels).enumerate() {
            verify(
                &format!("BatchCheckAccess item {i}"),
                *level,
                result.allowed,
                result.level,
            )?;
        }
        Ok(())
    }
}

impl Call for Caller {
    type Target = Target;

    /// One call of `target`; an error unless the status is OK and the answer is what it must be.
    async fn call(&mut self, target: Target) -> Result<(), String> {
        let f = self.fixture.clone();
        match target {
            Target::Health => {
                let response = self
                    .health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map_err(status_text)?
                    .into_inner();
                if response.status != ServingStatus::Serving as i32 {
                    return Err(format!("health status {}", response.status));
                }
                Ok(())
            }
            Target::CheckSmall => self.check(&f.small).await,
            Target::CheckLarge => self.check(&f.large).await,
            Target::BatchLarge => self.batch(&f.large).await,
        }
    }
}

/// This process's resident memory in bytes (VmRSS of /proc/self/status).
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?
        .trim()
        .parse::<u64>()?;
    Ok(kib * 1024)
}

/// The first CheckAccess of an account, which loads it: its time, checked like every answer.
async fn cold_check(channel: &Channel, fixture: &Fixture, side: &Side) -> anyhow::Result<Duration> {
    let check = &side.checks[0];
    let started = Instant::now();
    let response = AccessServiceClient::new(channel.clone())
        .check_access(with_auth(&fixture.auth, check.request.clone()))
        .await
        .map_err(|status| anyhow::anyhow!("first CheckAccess: {}", status_text(status)))?
        .into_inner();
    let took = started.elapsed();
    verify(
        "the first CheckAccess",
        check.level,
        response.allowed,
        response.level,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(took)
}

/// One warm CheckAccess of an account, for contrast with the cold one.
async fn warm_check(channel: &Channel, fixture: &Fixture, side: &Side) -> anyhow::Result<Duration> {
    let check = &side.checks[1 % side.checks.len()];
    let started = Instant::now();
    let response = AccessServiceClient::new(channel.clone())
        .check_access(with_auth(&fixture.auth, check.request.clone()))
        .await
        .map_err(|status| anyhow::anyhow!("CheckAccess: {}", status_text(status)))?
        .into_inner();
    let took = started.elapsed();
    verify("CheckAccess", check.level, response.allowed, response.level)
        .map_err(anyhow::Error::msg)?;
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    common::load::on_two_runtimes(run)
}

async fn run(url: String, server: tokio::runtime::Handle) -> anyhow::Result<()> {
    let load = Load::from_env();
    let small_shares: u32 = env_or("IDENTITY_BENCH_SMALL_SHARES", 1_000);
    let large_shares: u32 = env_or("IDENTITY_BENCH_SHARES", 1_000_000);
    let settle = Duration::from_secs_f64(env_or("IDENTITY_BENCH_SETTLE_SECS", 2.0));
    for shares in [small_shares, large_shares] {
        // Shared resources are numbered below shares / 2, unshared files up to shares.
        anyhow::ensure!(
            (2..MAX_RESOURCE).contains(&shares),
            "share counts go from 2 to {}",
            MAX_RESOURCE - 1
        );
    }

    let mut config = common::config(url, OPERATOR)?;
    for token in &mut config.service_tokens {
        token.scopes = SCOPES.iter().map(|&s| s.to_owned()).collect();
    }
    // No invitation email is delivered during the run.
    config.outbox_interval = Duration::from_secs(3600);
    let (store, addr) = server.spawn(common::start_server(config)).await??;
    let mut channels = Vec::new();
    for _ in 0..load.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let channel = channels[0].clone();

    // Both accounts are seeded before either is checked: the service loads an account at its
    // first check.
    let small = seed(&store, &channel, "small", "a1c9e3b7d4", small_shares).await?;
    let large = seed(&store, &channel, "large", "5f02b8e61a", large_shares).await?;
    store.connection().execute_unprepared("ANALYZE").await?;
    let mut rng = StdRng::seed_from_u64(20261202);
    let fixture = Arc::new(Fixture {
        auth: format!("Bearer {OPERATOR}").parse()?,
        small: side(&store, &small, &mut rng).await?,
        large: side(&store, &large, &mut rng).await?,
    });
    for side in [&fixture.small, &fixture.large] {
        let allowed = side
            .checks
            .iter()
            .filter(|c| c.level >= proto::AccessLevel::View as i32)
            .count();
        println!(
            "{} shares: {} checks of a file with {ANCESTORS} ancestor folders, {allowed} allowed \
             ({:.0}%), {} batches of {BATCH}",
            side.label,
            side.checks.len(),
            100.0 * allowed as f64 / side.checks.len() as f64,
            side.batches.len()
        );
    }

    // Cold loads: the small account, then the large one between two readings of the resident
    // memory.
    let small_cold = cold_check(&channel, &fixture, &fixture.small).await?;
    tokio::time::sleep(settle).await;
    let before = resident_bytes()?;
    let large_cold = cold_check(&channel, &fixture, &fixture.large).await?;
    tokio::time::sleep(settle).await;
    let after = resident_bytes()?;
    let large_warm = warm_check(&channel, &fixture, &fixture.large).await?;
    let bytes_per_share = (after as f64 - before as f64) / f64::from(fixture.large.shares);
    println!(
        "first CheckAccess (cold load): {} shares {:.1} ms, {} shares {:.1} ms (the next one \
         {:.2} ms); resident memory {:.1} MiB before and {:.1} MiB after the large load",
        fixture.small.label,
        small_cold.as_secs_f64() * 1000.0,
        fixture.large.label,
        large_cold.as_secs_f64() * 1000.0,
        large_warm.as_secs_f64() * 1000.0,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
    );
    println!(
        "cores: {}, server worker threads: {}, load generator threads: {}, {} connections x {} \
         calls in flight, {} rounds of {:.1} s (after {:.1} s of warm-up) per target",
        cores(),
        cores(),
        env_or("IDENTITY_BENCH_CLIENT_THREADS", 1),
        channels.len(),
        load.in_flight,
        load.rounds,
        load.measure.as_secs_f64(),
        load.warmup.as_secs_f64()
    );

    let names: Vec<String> = Target::ALL.iter().map(|t| t.name(&fixture)).collect();
    let index = |target: Target| Target::ALL.iter().position(|&t| t == target).unwrap();
    let (health, check_small, check_large, batch_large) = (
        index(Target::Health),
        index(Target::CheckSmall),
        index(Target::CheckLarge),
        index(Target::BatchLarge),
    );
    let mut totals: Vec<Outcome> = Target::ALL.iter().map(|_| Outcome::default()).collect();
    // Per round: CheckAccess (large) / health calls/s, batch cost in single checks, and whether
    // other processes stayed quiet during both measurements of each.
    let mut per_round_health = Vec::new();
    let mut per_round_cost = Vec::new();
    for round in 1..=load.rounds {
        // Forward in odd rounds, backward in even ones.
        let mut order: Vec<usize> = (0..Target::ALL.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        let mut outcomes: Vec<Option<Outcome>> = Target::ALL.iter().map(|_| None).collect();
        for i in order {
            outcomes[i] = Some(
                measure(Target::ALL[i], &channels, load, |channel, slot| {
                    Caller::new(channel, fixture.clone(), slot)
                })
                .await,
            );
        }
        let mut outcomes: Vec<Outcome> = outcomes.into_iter().map(Option::unwrap).collect();
        println!();
        println!("round {round}:");
        println!(
            "| RPC | calls/s | checks/s | p50 ms | p99 ms | errors | other processes, cores |"
        );
        println!("|---|---|---|---|---|---|---|");
        for ((target, name), outcome) in Target::ALL.iter().zip(&names).zip(&mut outcomes) {
            let (p50, p99) = outcome.percentiles();
            println!(
                "| {name} | {:.0} | {:.0} | {p50:.2} | {p99:.2} | {} | {:.2} |",
                outcome.rate(),
                outcome.rate() * target.checks() as f64,
                outcome.errors,
                outcome.busy()
            );
        }
        let quiet = |a: usize, b: usize| outcomes[a].busy() < QUIET && outcomes[b].busy() < QUIET;
        let per_health = outcomes[check_large].rate() / outcomes[health].rate();
        let cost = outcomes[check_large].rate() / outcomes[batch_large].rate();
        println!(
            "CheckAccess ({}) / health: {per_health:.3}x; a batch of {BATCH} costs {cost:.2} \
             single checks",
            fixture.large.label
        );
        per_round_health.push((per_health, quiet(check_large, health)));
        per_round_cost.push((cost, quiet(check_large, batch_large)));
        let failed: Vec<String> = names
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.errors > 0)
            .map(|(name, o)| {
                format!(
                    "{name}: {} errors, first: {}",
                    o.errors,
                    o.first_error.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if !failed.is_empty() {
            anyhow::bail!("calls failed in round {round}:\n{}", failed.join("\n"));
        }
        for (total, outcome) in totals.iter_mut().zip(outcomes) {
            total.add(outcome);
        }
    }

    println!();
    println!(
        "all {} rounds ({} calls in flight; p50 and p99 over all rounds' calls; CPU in microseconds \
         per call, from /proc, during the measured windows):",
        load.rounds,
        channels.len() * load.in_flight
    );
    println!(
        "| RPC | calls/s | checks/s | x health | p50 ms | p99 ms | server CPU | load generator CPU \
         | PostgreSQL CPU | other processes, cores | idle cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let health_rate = totals[health].rate();
    let mut p99s = vec![f64::NAN; totals.len()];
    for (((target, name), total), p99_of) in Target::ALL
        .iter()
        .zip(&names)
        .zip(&mut totals)
        .zip(&mut p99s)
    {
        let (p50, p99) = total.percentiles();
        *p99_of = p99;
        let per_call = |secs: f64| 1e6 * secs / total.calls as f64;
        println!(
            "| {name} | {:.0} | {:.0} | {:.3} | {p50:.2} | {p99:.2} | {:.0} | {:.0} | {:.0} | \
             {:.2} | {:.2} |",
            total.rate(),
            total.rate() * target.checks() as f64,
            total.rate() / health_rate,
            per_call(total.cpu.server),
            per_call(total.cpu.load),
            per_call(total.cpu.postgres),
            total.busy(),
            total.cpu.idle / total.seconds,
        );
    }

    let per_health = totals[check_large].rate() / health_rate;
    let cost = totals[check_large].rate() / totals[batch_large].rate();
    let growth = p99s[check_large] / p99s[check_small];
    println!();
    println!(
        "CheckAccess ({}) / health: {}",
        fixture.large.label,
        round_by_round(&per_round_health)
    );
    println!(
        "a batch of {BATCH} in single checks: {}",
        round_by_round(&per_round_cost)
    );
    println!(
        "(a round is quiet when other processes used under {QUIET} cores during both \
         measurements)"
    );

    let verdict = |met: bool| if met { "PASS" } else { "MISS" };
    println!();
    println!(
        "targets (over all rounds; an account of {} shares against one of {}):",
        fixture.large.label, fixture.small.label
    );
    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    println!("| Health/Check calls/s | {health_rate:.0} | | |");
    println!(
        "| CheckAccess ({}) calls/s, x health | {:.0}, {per_health:.3}x | >= {CHECK_PER_HEALTH_MIN}x | {} |",
        fixture.large.label,
        totals[check_large].rate(),
        verdict(per_health >= CHECK_PER_HEALTH_MIN)
    );
    println!(
        "| CheckAccess ({}) p50 / p99 ms | {:.2} / {:.2} | | |",
        fixture.large.label,
        totals[check_large].percentiles().0,
        p99s[check_large]
    );
    println!(
        "| BatchCheckAccess x{BATCH} ({}) calls/s; cost in single checks (time per call) | \
         {:.0}; {cost:.2} | <= {BATCH_COST_MAX} | {} |",
        fixture.large.label,
        totals[batch_large].rate(),
        verdict(cost <= BATCH_COST_MAX)
    );
    println!(
        "| CheckAccess p99 ms at {} and at {} shares; ratio | {:.2} and {:.2}; {growth:.3}x | <= \
         {P99_GROWTH_MAX}x | {} |",
        fixture.small.label,
        fixture.large.label,
        p99s[check_small],
        p99s[check_large],
        verdict(growth <= P99_GROWTH_MAX)
    );
    println!(
        "| cold load of the {} account (first CheckAccess) ms | {:.1} | | |",
        fixture.large.label,
        large_cold.as_secs_f64() * 1000.0
    );
    println!(
        "| resident bytes per share | {bytes_per_share:.1} | <= {BYTES_PER_SHARE_MAX} | {} |",
        verdict(bytes_per_share <= BYTES_PER_SHARE_MAX)
    );
    Ok(())
}

/// An account as seeded: ids and the shape of its shares.
struct Seeded {
    account_id: String,
    user_id: String,
    groups: Vec<String>,
    machine: &'static str,
    shares: u32,
}

/// An account with `shares` shares: through the API, the account (room for 50 groups), the
/// Restricted user and the groups; in bulk, the other members and the shares. The user's
/// membership is made ACTIVE as accepting the invitation would.
async fn seed(
    store: &Store,
    channel: &Channel,
    tag: &str,
    machine: &'static str,
    shares: u32,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let account = AccountServiceClient::new(channel.clone())
        .create_account(request(proto::CreateAccountRequest {
            name: format!("Bench {tag}"),
            administrator_email: format!("admin@{tag}.bench.test"),
            administrator_display_name: "Admin".into(),
            limits: Some(proto::AccountLimits {
                max_users: 10_000,
                max_groups: (GROUPS + OTHER_GROUPS) as i32,
            }),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .account
        .expect("account");
    let user_id = UserServiceClient::new(channel.clone())
        .create_user(request(proto::CreateUserRequest {
            account_id: account.id.clone(),
            email: format!("restricted@{tag}.bench.test"),
            display_name: "Restricted".into(),
            role: proto::Role::MediaLibraryRestricted as i32,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .user
        .expect("user")
        .id;

    // The other members, in bulk (the API path is measured by the tests, not here).
    let db = store.connection();
    let backend = db.get_database_backend();
    let account_uuid: uuid::Uuid = account.id.parse()?;
    let user_uuid: uuid::Uuid = user_id.parse()?;
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, email, email_key, display_name, password_hash, mfa_enabled, version, \
         created_at, updated_at) \
         SELECT gen_random_uuid(), e, e, 'Other ' || g, NULL, false, 1, now(), now() \
         FROM (SELECT g, 'other' || lpad(g::text, 5, '0') || '@{tag}.bench.test' AS e \
         FROM generate_series(1, {OTHER_USERS}) g) s"
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO memberships (account_id, user_id, email_key, role, status, invited_by, \
             accepted_at, last_login_at, version, created_at, updated_at) \
             SELECT $1, id, email_key, 'media_library_restricted', 'active', NULL, now(), NULL, 1, \
             now(), now() FROM users WHERE email_key LIKE 'other%@{tag}.bench.test'"
        ),
        [account_uuid.into()],
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!("UPDATE accounts SET user_count = user_count + {OTHER_USERS} WHERE id = $1"),
        [account_uuid.into()],
    ))
    .await?;
    let others: Vec<String> = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT user_id FROM memberships WHERE account_id = $1 AND email_key LIKE 'other%' \
             ORDER BY email_key",
            [account_uuid.into()],
        ))
        .await?
        .iter()
        .map(|row| {
            row.try_get_by_index::<uuid::Uuid>(0)
                .map(|id| id.to_string())
        })
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        others.len() == OTHER_USERS,
        "{} other members",
        others.len()
    );

    // The user's groups, each with a few other members too, and groups the user is not in.
    let mut groups = GroupServiceClient::new(channel.clone());
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for n in 0..GROUPS + OTHER_GROUPS {
        let name = if n < GROUPS {
            format!("Team {n}")
        } else {
            format!("Other {n}")
        };
        let group_id = groups
            .create_group(request(proto::CreateGroupRequest {
                account_id: account.id.clone(),
                name,
                ..Default::default()
            }))
            .await?
            .into_inner()
            .group
            .expect("group")
            .id;
        let mut members: Vec<String> = others
            .iter()
            .enumerate()
            .filter(|(k, _)| {
                if n < GROUPS {
                    k % 50 == n
                } else {
                    k % OTHER_GROUPS == n - GROUPS
                }
            })
            .map(|(_, id)| id.clone())
            .collect();
        if n < GROUPS {
            members.push(user_id.clone());
        }
        groups
            .add_group_members(request(proto::AddGroupMembersRequest {
                account_id: account.id.clone(),
                group_id: group_id.clone(),
                user_ids: members,
            }))
            .await?;
        if n < GROUPS {
            mine.push(group_id);
        } else {
            theirs.push(group_id);
        }
    }

    // Accepting an invitation by its link takes the emailed token; do what it does directly.
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE memberships SET status = 'active', accepted_at = now(), version = version + 1, \
         updated_at = now() WHERE account_id = $1 AND user_id = $2",
        [account_uuid.into(), user_uuid.into()],
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "DELETE FROM invitations WHERE account_id = $1 AND user_id = $2",
        [account_uuid.into(), user_uuid.into()],
    ))
    .await?;

    // The shares, in one statement. Share g is on resource r = g / 2 (two per resource); the
    // resource's type and the pair's subject slots come from `mix` of r, the level from `mix` of
    // g. Slot s of 100: 0 the user, 1 to 5 their groups, 6 to 52 other groups, 53 to 99 other
    // members; a pair takes slots s and s + 50 (mod 100), never the same subject.
    let uuids = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let seeded = Instant::now();
    let inserted = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO shares (account_id, id, resource_type, resource_id, subject_type, \
                 subject_id, level, created_by, created_at, updated_at) \
                 SELECT $1, gen_random_uuid(), \
                   CASE WHEN k < 8 THEN 2 WHEN k < 19 THEN 1 ELSE 3 END, \
                   lpad(to_hex(1700000000 + r / 64), 8, '0') || '{machine}' || lpad(to_hex(r), 6, '0'), \
                   CASE WHEN s = 0 OR s >= 53 THEN 'user' ELSE 'group' END, \
                   CASE WHEN s = 0 THEN $2 \
                     WHEN s <= 5 THEN mine[s] \
                     WHEN s < 53 THEN theirs[1 + (r + s) % cardinality(theirs)] \
                     ELSE others[1 + (r + s) % cardinality(others)] END, \
                   CASE WHEN v < 7 THEN 'view' WHEN v < 9 THEN 'contribute' ELSE 'manage' END, \
                   'service:bench', now(), now() \
                 FROM (SELECT g, g / 2 AS r, \
                     ((((g / 2)::bigint) * 2654435761 % 4294967296) / 65536 % 20)::int AS k, \
                     (((((g / 2)::bigint + 1000003) * 2654435761 % 4294967296) / 65536 % 100 \
                       + 50 * (g % 2)) % 100)::int AS s, \
                     ((((g::bigint + 2000003) * 2654435761 % 4294967296) / 65536) % 10)::int AS v \
                   FROM generate_series(0, {last}) AS g) AS x, \
                 (SELECT ARRAY[{mine}]::uuid[] AS mine, ARRAY[{theirs}]::uuid[] AS theirs, \
                   (SELECT array_agg(user_id ORDER BY email_key) FROM memberships \
                    WHERE account_id = $1 AND email_key LIKE 'other%') AS others) AS a",
                last = shares - 1,
                mine = uuids(&mine),
                theirs = uuids(&theirs),
            ),
            [account_uuid.into(), user_uuid.into()],
        ))
        .await?
        .rows_affected();
    anyhow::ensure!(inserted == u64::from(shares), "{inserted} shares inserted");
    // Caches see the new data at the next revision.
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE accounts SET access_revision = access_revision + 1 WHERE id = $1",
        [account_uuid.into()],
    ))
    .await?;
    println!(
        "seeded the {tag} account: {OTHER_USERS} other members, {} groups, {} shares in {:.1} s \
         ({:.1} s in all)",
        GROUPS + OTHER_GROUPS,
        count_label(shares),
        seeded.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        account_id: account.id,
        user_id,
        groups: mine,
        machine,
        shares,
    })
}

/// A random resource number below `below` of kind `want`.
fn pick(rng: &mut StdRng, below: u32, want: Kind) -> u32 {
    loop {
        let r = rng.gen_range(0..below);
        if kind(r) == want {
            return r;
        }
    }
}

/// The account's checks and batches, with the levels the shares give: each check is on a file
/// (half of them files with shares, half files without) with `ANCESTORS` distinct shared folders.
async fn side(store: &Store, seeded: &Seeded, rng: &mut StdRng) -> anyhow::Result<Side> {
    let resources = seeded.shares.div_ceil(2);
    let mut placements = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        let file = if rng.gen_bool(0.5) {
            pick(rng, resources, Kind::File)
        } else {
            rng.gen_range(resources..2 * resources)
        };
        let mut folders: Vec<u32> = Vec::with_capacity(ANCESTORS);
        while folders.len() < ANCESTORS {
            let folder = pick(rng, resources, Kind::Folder);
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
        placements.push((
            object_id(seeded.machine, file),
            folders
                .into_iter()
                .map(|f| object_id(seeded.machine, f))
                .collect::<Vec<_>>(),
        ));
    }

    // The highest level of the shares reaching the user on each resource the pool names, read in
    // chunks.
    let mut names: Vec<&str> = placements
        .iter()
        .flat_map(|(file, folders)| std::iter::once(file).chain(folders).map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let subjects = std::iter::once(&seeded.user_id)
        .chain(&seeded.groups)
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let db = store.connection();
    let mut reached: HashMap<(String, String), i32> = HashMap::new();
    for chunk in names.chunks(500) {
        let ids = chunk
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT CASE resource_type WHEN 1 THEN 'file' WHEN 2 THEN 'folder' \
                     ELSE 'collection' END, resource_id, level FROM shares WHERE account_id = '{}' \
                     AND subject_id IN ({subjects}) AND resource_id IN ({ids})",
                    seeded.account_id
                ),
            ))
            .await?;
        for row in rows {
            let level = match row.try_get_by_index::<String>(2)?.as_str() {
                "view" => proto::AccessLevel::View,
                "contribute" => proto::AccessLevel::Contribute,
                "manage" => proto::AccessLevel::Manage,
                other => anyhow::bail!("a share of level {other:?}"),
            } as i32;
            let key = (
                row.try_get_by_index::<String>(0)?,
                row.try_get_by_index::<String>(1)?,
            );
            let highest = reached.entry(key).or_insert(level);
            *highest = (*highest).max(level);
        }
    }
    let level_on = |kind: &str, id: &str| {
        reached
            .get(&(kind.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or(proto::AccessLevel::None as i32)
    };

    let mut checks = Vec::with_capacity(POOL);
    let mut targets = Vec::with_capacity(POOL);
    for (file, folders) in placements {
        let level = folders
            .iter()
            .map(|f| level_on("folder", f))
            .fold(level_on("file", &file), i32::max);
        let target = proto::ResourceCheck {
            resource: Some(proto::ResourceRef {
                r#type: proto::ResourceType::File as i32,
                id: file,
            }),
            ancestor_folder_ids: folders,
            ..Default::default()
        };
        checks.push(Check {
            request: proto::CheckAccessRequest {
                account_id: seeded.account_id.clone(),
                user_id: seeded.user_id.clone(),
                target: Some(proto::check_access_request::Target::Resource(
                    target.clone(),
                )),
                required_level: proto::AccessLevel::View as i32,
                consistency_token: String::new(),
            },
            level,
        });
        targets.push((target, level));
    }
    let batches = (0..BATCHES)
        .map(|b| {
            let window: Vec<&(proto::ResourceCheck, i32)> = (0..BATCH)
                .map(|k| &targets[(b * POOL / BATCHES + k) % targets.len()])
                .collect();
            Batch {
                request: proto::BatchCheckAccessRequest {
                    account_id: seeded.account_id.clone(),
                    consistency_token: String::new(),
                    items: window
                        .iter()
                        .map(|(target, _)| proto::CheckAccessItem {
                            user_id: seeded.user_id.clone(),
                            target: Some(proto::check_access_item::Target::Resource(
                                target.clone(),
                            )),
                            required_level: proto::AccessLevel::View as i32,
                        })
                        .collect(),
                },
                levels: window.iter().map(|(_, level)| *level).collect(),
            }
        })
        .collect();
    Ok(Side {
        label: count_label(seeded.shares),
        shares: seeded.shares,
        checks,
        batches,
    })
}
