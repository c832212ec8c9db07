//! The audit log's costs, in one run on PostgreSQL:
//!
//! 1. **RecordAuditEvents throughput**: clients send batches of 500 Media Library events to the
//!    real server over gRPC for a fixed time; prints the events recorded per second, and how long
//!    the server's chainer (running throughout) then takes to link what is still queued.
//! 2. **What an audited write costs**: the unit of work of CreateGroup (lock the account, check the
//!    name, insert the group, count it, commit), run by concurrent writers through the store on a
//!    database of its own, in rotating rounds: without the event; with it while the chainer links
//!    the events as they come (as in production); and with it while the chainer waits (its work
//!    done after the measurement), which splits the append's own cost from the chainer's on these
//!    shared cores. Prints rates, mean latencies and ratios. CreateGroup through gRPC (audited) is
//!    measured too, for scale.
//!
//!     cargo bench --bench audit
//!
//! Knobs: IDENTITY_BENCH_SECS (seconds per measurement, default 5), IDENTITY_BENCH_ROUNDS
//! (default 3), IDENTITY_BENCH_CLIENTS (concurrent RecordAuditEvents callers, default 4),
//! IDENTITY_BENCH_WRITERS (concurrent group writers, default 8), IDENTITY_BENCH_ONLY=writes (skip
//! the RecordAuditEvents part).
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use identity::app::audit::chain_pending;
use identity::auth::secret_token;
use identity::config::ServiceTokenConfig;
use identity::domain::accounts::AccountChange;
use identity::domain::audit::{Change, Draft, EventActor, Origin, Target, action};
use identity::domain::groups;
use identity::proto::{
    self, account_service_client::AccountServiceClient, audit_service_client::AuditServiceClient,
    group_service_client::GroupServiceClient,
};
use identity::store::Store;
use identity::store::accounts::Counter;
use tonic::transport::Channel;
use uuid::Uuid;

const OPERATOR: &str = "idt_bench_operator";
const DAM: &str = "idt_bench_dam";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dam_event(n: u64) -> proto::AuditEvent {
    proto::AuditEvent {
        category: proto::AuditCategory::MediaLibrary as i32,
        action: "file.renamed".into(),
        actor: Some(proto::AuditActor {
            r#type: proto::ActorType::User as i32,
            id: "0190c4d2-7a3e-7cc1-9a51-3b1f6f1b2c3d".into(),
            display: "editor@bench.test".into(),
        }),
        target: Some(proto::AuditTarget {
            r#type: "file".into(),
            id: format!("file_{n}"),
            display: format!("campaign-{n}.jpg"),
        }),
        ip_address: "203.0.113.7".into(),
        user_agent: "dam/2.4".into(),
        metadata: [("folder".to_owned(), "/campaigns/2026".to_owned())].into(),
        changes: vec![proto::AuditChange {
            field: "name".into(),
            before: Some("draft.jpg".into()),
            after: Some(format!("campaign-{n}.jpg")),
        }],
        ..Default::default()
    }
}

/// One CreateGroup unit of work through the store, with its audit event or without.
async fn create_group(store: &Store, account_id: Uuid, n: u64, audited: bool) -> Duration {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let name = groups::name(&format!("group {n}")).unwrap();
    let tx = store.begin().await.unwrap();
    let account = tx.lock_account(account_id).await.unwrap().unwrap();
    let taken = tx
        .group_name_taken(account_id, name.key(), None)
        .await
        .unwrap();
    let group = groups::create(&account, &name, "", taken, now).unwrap();
    tx.insert_group(&group).await.unwrap();
    tx.add_to_counter(account_id, Counter::Groups, 1)
        .await
        .unwrap();
    if audited {
        let event = Draft::new(action::GROUP_CREATED, EventActor::system())
            .target(Target::new("group", group.id, &group.name))
            .changes([Change::new("name", None::<&str>, Some(&group.name))])
            .into_event(account_id, &Origin::default(), now);
        tx.append_audit(&[event]).await.unwrap();
    }
    tx.commit().await.unwrap();
    started.elapsed()
}

struct Rate {
    per_second: f64,
    mean_ms: f64,
}

/// `writers` tasks run CreateGroup's unit of work for `secs`, each on its own account (as
/// tenants do; one account's writes queue on its row).
async fn group_writes(
    store: &Store,
    accounts: &[Uuid],
    secs: u64,
    audited: bool,
    counter: &Arc<AtomicU64>,
) -> Rate {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for &account_id in accounts {
        let store = store.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut total) = (0u64, Duration::ZERO);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                total += create_group(&store, account_id, n, audited).await;
                done += 1;
            }
            (done, total)
        }));
    }
    let (mut done, mut total) = (0u64, Duration::ZERO);
    for task in tasks {
        let (d, t) = task.await.unwrap();
        done += d;
        total += t;
    }
    Rate {
        per_second: done as f64 / secs as f64,
        mean_ms: total.as_secs_f64() * 1000.0 / done.max(1) as f64,
    }
}

async fn record_batches(channel: Channel, account_id: String, secs: u64, clients: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = AuditServiceClient::new(channel.clone());
        let account_id = account_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0u64;
            let mut n = c * 1_000_000_000;
            while Instant::now() < deadline {
                let events: Vec<_> = (0..500).map(|i| dam_event(n + i)).collect();
                n += 500;
                let ids = client
                    .record_audit_events(common::authorized(
                        DAM,
                        proto::RecordAuditEventsRequest {
                            account_id: account_id.clone(),
                            events,
                            request_id: Uuid::now_v7().to_string(),
                        },
                    ))
                    .await
                    .expect("RecordAuditEvents")
                    .into_inner()
                    .event_ids;
                recorded += ids.len() as u64;
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += task.await.unwrap();
    }
    recorded as f64 / started.elapsed().as_secs_f64()
}

/// The CreateGroup comparison on a database of its own, with no server: its chainer is started
/// and stopped here.
async fn group_comparison(url: String, writers: u64, secs: u64, rounds: u64) -> anyhow::Result<()> {
    let database = identity::config::Database::Postgres {
        url: identity::config::Secret::new(url),
    };
    let store = Store::connect(&database, 16).await?;
    store.migrate().await?;
    let mut accounts = Vec::new();
    for n in 0..writers.max(1) {
        let account = identity::domain::accounts::Account::new(
            format!("Bench {n}"),
            100,
            i32::MAX,
            chrono::Utc::now(),
        );
        let tx = store.begin().await?;
        tx.insert_account(&account).await?;
        tx.commit().await?;
        accounts.push(account.id);
    }
    println!(
        "\nCreateGroup's unit of work, {writers} writers on their own accounts, {secs} s per side:"
    );
    println!(
        "  round | plain/s | audited/s | audited, chainer waiting/s | plain ms | audited ms | waiting ms"
    );
    let counter = Arc::new(AtomicU64::new(0));
    let (mut plain_all, mut live_all, mut waiting_all) = (0.0, 0.0, 0.0);
    for round in 1..=rounds {
        let mut rates: [Option<Rate>; 3] = [None, None, None];
        // Rotate the order, so a drift of the machine's speed hits every side alike.
        for k in 0..3 {
            let side = (k + round as usize - 1) % 3;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let chainer =
                (side == 1).then(|| identity::app::audit::spawn_chainer(store.clone(), stop_rx));
            rates[side] = Some(group_writes(&store, &accounts, secs, side != 0, &counter).await);
            let _ = stop_tx.send(true);
            if let Some(chainer) = chainer {
                chainer.await?;
            }
            // What the waiting side appended is linked between measurements.
            chain_pending(&store).await?;
        }
        let [Some(plain), Some(live), Some(waiting)] = rates else {
            unreachable!("every side ran")
        };
        println!(
            "  {round:>5} | {:>7.0} | {:>9.0} | {:>26.0} | {:>8.2} | {:>10.2} | {:>10.2}",
            plain.per_second,
            live.per_second,
            waiting.per_second,
            plain.mean_ms,
            live.mean_ms,
            waiting.mean_ms
        );
        plain_all += plain.per_second;
        live_all += live.per_second;
        waiting_all += waiting.per_second;
    }
    println!(
        "  all rounds: plain {:.0}/s; audited {:.0}/s: {:.3}x the plain write's time (target: at most 1.2x); \
         audited with the chainer waiting {:.0}/s: {:.3}x",
        plain_all / rounds as f64,
        live_all / rounds as f64,
        plain_all / live_all,
        waiting_all / rounds as f64,
        plain_all / waiting_all
    );
    let report = identity::app::audit::verify(&store, None).await?;
    assert!(report.iter().all(|r| r.result.is_ok() && r.unchained == 0));
    Ok(())
}

async fn run(url: String) -> anyhow::Result<()> {
    let secs = env_or("IDENTITY_BENCH_SECS", 5);
    let rounds = env_or("IDENTITY_BENCH_ROUNDS", 3);
    let clients = env_or("IDENTITY_BENCH_CLIENTS", 4);
    let writers = env_or("IDENTITY_BENCH_WRITERS", 8);
    let mut config = common::config(url, OPERATOR)?;
    config.service_tokens.push(ServiceTokenConfig {
        name: "dam".into(),
        scopes: vec!["audit.write".into()],
        sha256: secret_token::digest_hex(DAM),
    });
    let (store, addr) = common::start_server(config).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut accounts = Vec::new();
    for n in 0..1 {
        let account = AccountServiceClient::new(channel.clone())
            .create_account(common::authorized(
                OPERATOR,
                proto::CreateAccountRequest {
                    name: format!("Bench {n}"),
                    administrator_email: format!("admin{n}@bench.test"),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .account
            .unwrap();
        let id: Uuid = account.id.parse()?;
        // Room for every group the bench creates.
        let tx = store.begin().await?;
        tx.update_account(
            id,
            &AccountChange {
                max_groups: Some(i32::MAX),
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await?;
        tx.commit().await?;
        accounts.push(id);
    }
    chain_pending(&store).await?;

    let only = std::env::var("IDENTITY_BENCH_ONLY").unwrap_or_default();
    println!("RecordAuditEvents, batches of 500, {clients} clients, {secs} s per round:");
    let mut rates = Vec::new();
    for round in 1..=rounds {
        if only == "writes" {
            break;
        }
        let rate = record_batches(channel.clone(), accounts[0].to_string(), secs, clients).await;
        // The server's own chainer links what is left; the bench only watches the queue.
        let started = Instant::now();
        let left = store.unchained_count(accounts[0]).await?;
        while store.unchained_count(accounts[0]).await? > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "  round {round}: {rate:>8.0} events/s recorded; {left} left unlinked at the end, linked by the server's chainer in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        rates.push(rate);
    }
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    println!("  mean {mean:.0} events/s (target: at least 10,000)");

    common::on_scratch_database(|url| group_comparison(url, writers, secs, rounds)).await?;

    // For scale: the real RPC, one caller at a time.
    let token = OPERATOR;
    let mut groups = GroupServiceClient::new(channel.clone());
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < Duration::from_secs(secs) {
        groups
            .create_group(common::authorized(
                token,
                proto::CreateGroupRequest {
                    account_id: accounts[0].to_string(),
                    name: format!("rpc group {calls}"),
                    ..Default::default()
                },
            ))
            .await?;
        calls += 1;
    }
    println!(
        "\nCreateGroup over gRPC (audited), one caller: {:.2} ms per call",
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(calls)
    );
    let report = identity::app::audit::verify(&store, None).await?;
    let broken = report.iter().filter(|r| r.result.is_err()).count();
    let checked: u64 = report.iter().map(|r| r.checked).sum();
    println!(
        "verify: {} chains, {checked} events, {broken} broken",
        report.len()
    );
    assert_eq!(broken, 0);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(common::on_scratch_database(run))
}
