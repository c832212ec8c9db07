//! ListUsers keyset pagination: page 1 and page 1,000 of a 100,000-user account, through the
//! real server on PostgreSQL. Prints its figures; run with
//!
//!     cargo bench --bench list_users
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use identity::proto::{self, user_service_client::UserServiceClient};
use sea_orm::{ConnectionTrait, Statement};
use tonic::transport::Channel;

const USERS: usize = 100_000;
const PAGE_SIZE: i32 = 100;
const TARGET_PAGE: usize = 1_000;
const ROUNDS: usize = 2_000;
const OPERATOR: &str = "idt_bench_operator";

fn request<T>(message: T) -> tonic::Request<T> {
    common::authorized(OPERATOR, message)
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        mean,
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::on_scratch_database(run).await
}

async fn run(url: String) -> anyhow::Result<()> {
    let (store, addr) = common::start_server(common::config(url, OPERATOR)?).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let account = proto::account_service_client::AccountServiceClient::new(channel.clone())
        .create_account(request(proto::CreateAccountRequest {
            name: "Bench".into(),
            administrator_email: "admin@bench.test".into(),
            limits: Some(proto::AccountLimits {
                max_users: 1_000_000,
                max_groups: 5,
            }),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .account
        .expect("account");

    // 100,000 members, written in bulk (the API path is measured by the tests, not here).
    let started = Instant::now();
    let db = store.connection();
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, email, email_key, display_name, password_hash, mfa_enabled, version, created_at, updated_at) \
         SELECT gen_random_uuid(), e, e, 'User ' || g, NULL, false, 1, now(), now() \
         FROM (SELECT g, 'user' || lpad(g::text, 6, '0') || '@bench.test' AS e FROM generate_series(1, {USERS}) g) s"
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO memberships (account_id, user_id, email_key, role, status, invited_by, accepted_at, last_login_at, version, created_at, updated_at) \
         SELECT $1, id, email_key, 'developer', 'active', NULL, now(), NULL, 1, now(), now() FROM users WHERE email_key LIKE 'user%@bench.test'",
        [account.id.parse::<uuid::Uuid>()?.into()],
    ))
    .await?;
    db.execute_unprepared(&format!(
        "UPDATE accounts SET user_count = user_count + {USERS}"
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    println!(
        "seeded {USERS} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Walk to page 1,000 as a client would, keeping its token.
    let mut users = UserServiceClient::new(channel);
    let list = |page_token: String| proto::ListUsersRequest {
        account_id: account.id.clone(),
        page_size: PAGE_SIZE,
        page_token,
        ..Default::default()
    };
    let mut token = String::new();
    let walk = Instant::now();
    for _ in 1..TARGET_PAGE {
        token = users
            .list_users(request(list(token)))
            .await?
            .into_inner()
            .next_page_token;
    }
    let walked = walk.elapsed();
    let last = users
        .list_users(request(list(token.clone())))
        .await?
        .into_inner();
    assert_eq!(last.users.len(), PAGE_SIZE as usize);
    println!(
        "walked pages 1..{TARGET_PAGE} in {:.2} s ({:.2} ms a page); page {TARGET_PAGE} starts at {}",
        walked.as_secs_f64(),
        ms(walked) / (TARGET_PAGE - 1) as f64,
        last.users[0].email
    );

    // Page 1 and page 1,000, interleaved so both see the same machine.
    let mut first = Vec::with_capacity(ROUNDS);
    let mut thousandth = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        users.list_users(request(list(String::new()))).await?;
        first.push(t.elapsed());
        let t = Instant::now();
        users.list_users(request(list(token.clone()))).await?;
        thousandth.push(t.elapsed());
    }
    let (a, b) = (stats(first), stats(thousandth));
    println!();
    println!(
        "ListUsers, page_size {PAGE_SIZE}, {USERS} users, {ROUNDS} calls each, one connection:"
    );
    println!("| page | mean ms | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| 1 | {:.2} | {:.2} | {:.2} |",
        ms(a.mean),
        ms(a.p50),
        ms(a.p99)
    );
    println!(
        "| {TARGET_PAGE} | {:.2} | {:.2} | {:.2} |",
        ms(b.mean),
        ms(b.p50),
        ms(b.p99)
    );
    println!(
        "page {TARGET_PAGE} / page 1 (mean): {:.2}",
        b.mean.as_secs_f64() / a.mean.as_secs_f64()
    );

    // For contrast: the same page by OFFSET, in the database alone.
    let offset_sql = format!(
        "SELECT user_id FROM memberships WHERE account_id = '{}' ORDER BY email_key, user_id LIMIT {PAGE_SIZE} OFFSET {}",
        account.id,
        (TARGET_PAGE - 1) * PAGE_SIZE as usize
    );
    let mut offset = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        db.query_all_raw(Statement::from_string(
            db.get_database_backend(),
            offset_sql.clone(),
        ))
        .await?;
        offset.push(t.elapsed());
    }
    let o = stats(offset);
    println!(
        "contrast, OFFSET query for page {TARGET_PAGE} in the database alone: mean {:.2} ms, p50 {:.2} ms",
        ms(o.mean),
        ms(o.p50)
    );
    Ok(())
}
