//! Read RPCs side by side, in one run against one server on PostgreSQL: the bare health check,
//! GetJwks, ValidateToken, GetUser with a service token and with a person's access token, and
//! ListUsers. Each target gets the same closed-loop load (by default 4 HTTP/2 connections x 16
//! calls in flight, tonic clients over TCP with nodelay) for a fixed time after a warm-up; the
//! targets run in alternating rounds (forward, then backward) so that a drift of the shared
//! machine's speed hits them alike. Every response is checked; any error fails the run. Prints a
//! table per round, a summary with the CPU each side used per call and the SQL statements per
//! call, and the ratio of GetUser (service token) throughput to the health check's, over all
//! rounds and over the rounds other people's processes left quiet:
//!
//!     cargo bench --bench reads
//!
//! Knobs: IDENTITY_BENCH_SECS (measured seconds per target and round, default 5),
//! IDENTITY_BENCH_WARMUP_SECS (default 1), IDENTITY_BENCH_ROUNDS (default 3),
//! IDENTITY_BENCH_CONNECTIONS (default 4), IDENTITY_BENCH_IN_FLIGHT (per connection, default 16),
//! IDENTITY_BENCH_USERS (members besides the administrator, default 200),
//! IDENTITY_BENCH_CLIENT_THREADS (the load generator's threads, default 1) and
//! IDENTITY_BENCH_STATEMENTS=0 (skip counting the SQL statements per call).
//!
//! Needs PostgreSQL (IDENTITY_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
//! makes its own database and drops it at the end.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::load::{Call, Load, Outcome, cores, env_or, measure, status_text, with_auth};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHasher as _};
use identity::{
    auth::secret_token,
    config::ServiceTokenConfig,
    proto::{
        self, account_service_client::AccountServiceClient, auth_service_client::AuthServiceClient,
        user_service_client::UserServiceClient,
    },
    store::Store,
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const OPERATOR: &str = "idt_bench_operator";
/// A backend service allowed to read users (`users.read`): GetUser, ListUsers, ValidateToken.
const READER: &str = "idt_bench_reader";
const PASSWORD: &str = "lantern orbit canyon 42";
/// The person whose access token is used: an active member of the account.
const PERSON: &str = "user001@bench.test";
/// A round counts as quiet for a comparison when other processes (other people's work on this
/// shared machine) used less than this many cores during both of its measurements.
const QUIET: f64 = 0.25;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Health,
    GetJwks,
    ValidateToken,
    GetUserService,
    GetUserPerson,
    ListUsers,
}

impl Target {
    const ALL: [Target; 6] = [
        Target::Health,
        Target::GetJwks,
        Target::ValidateToken,
        Target::GetUserService,
        Target::GetUserPerson,
        Target::ListUsers,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Health => "Health/Check",
            Target::GetJwks => "GetJwks",
            Target::ValidateToken => "ValidateToken",
            Target::GetUserService => "GetUser (service token)",
            Target::GetUserPerson => "GetUser (person)",
            Target::ListUsers => "ListUsers (first page)",
        }
    }

    /// Whether the server asks the database.
    fn uses_database(self) -> bool {
        !matches!(self, Target::Health | Target::GetJwks)
    }
}

/// What the calls need: the account, its members, and credentials.
struct Fixture {
    account_id: String,
    member_ids: Vec<String>,
    /// `Bearer <READER>`.
    reader: MetadataValue<Ascii>,
    /// The person's access token, bare (for ValidateToken) and as `Bearer <token>`.
    person_token: String,
    person: MetadataValue<Ascii>,
    person_id: String,
    page_size: usize,
    /// Members still invited.
    invited: usize,
}

fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}").parse().expect("header")
}

/// One in-flight slot: a client of each service on one connection.
struct Caller {
    health: HealthClient<Channel>,
    auth: AuthServiceClient<Channel>,
    users: UserServiceClient<Channel>,
    fixture: Arc<Fixture>,
    /// Which member GetUser reads next: each slot walks the members from its own offset.
    next: usize,
}

impl Caller {
    fn new(channel: &Channel, fixture: Arc<Fixture>, slot: usize) -> Self {
        Self {
            health: HealthClient::new(channel.clone()),
            auth: AuthServiceClient::new(channel.clone()),
            users: UserServiceClient::new(channel.clone()),
            next: slot * 7,
            fixture,
        }
    }

    fn next_member(&mut self) -> String {
        self.next = (self.next + 1) % self.fixture.member_ids.len();
        self.fixture.member_ids[self.next].clone()
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
            }
            Target::GetJwks => {
                let response = self
                    .auth
                    .get_jwks(proto::GetJwksRequest {})
                    .await
                    .map_err(status_text)?
                    .into_inner();
                if response.keys.is_empty() {
                    return Err("GetJwks answered no keys".into());
                }
            }
            Target::ValidateToken => {
                let response = self
                    .auth
                    .validate_token(with_auth(
                        &f.reader,
                        proto::ValidateTokenRequest {
                            access_token: f.person_token.clone(),
                        },
                    ))
                    .await
                    .map_err(status_text)?
                    .into_inner();
                if response.user_id != f.person_id {
                    return Err(format!("ValidateToken answered {}", response.user_id));
                }
            }
            Target::GetUserService | Target::GetUserPerson => {
                let user_id = self.next_member();
                let auth = if target == Target::GetUserService {
                    &f.reader
                } else {
                    &f.person
                };
                let user = self
                    .users
                    .get_user(with_auth(
                        auth,
                        proto::GetUserRequest {
                            account_id: f.account_id.clone(),
                            user_id: user_id.clone(),
                        },
                    ))
                    .await
                    .map_err(status_text)?
                    .into_inner()
                    .user;
                if user.map(|u| u.id) != Some(user_id) {
                    return Err("GetUser answered another user".into());
                }
            }
            Target::ListUsers => {
                let response = self
                    .users
                    .list_users(with_auth(
                        &f.reader,
                        proto::ListUsersRequest {
                            account_id: f.account_id.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map_err(status_text)?
                    .into_inner();
                if response.users.len() != f.page_size {
                    return Err(format!("ListUsers answered {} users", response.users.len()));
                }
            }
        }
        Ok(())
    }
}

/// Transactions committed in the database so far (each statement outside a transaction is one).
async fn commits(store: &Store) -> anyhow::Result<i64> {
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await?
        .expect("pg_stat_database row");
    Ok(row.try_get_by_index(0)?)
}

/// SQL statements per call of each database target: `n` calls one at a time, counted by the
/// database's committed transactions. A backend reports its counts when it has been idle for
/// 10 s at most, so each count waits 12 s. The health monitor's ping every 2 s adds about 0.003.
async fn statements_per_call(
    store: &Store,
    channel: &Channel,
    fixture: &Arc<Fixture>,
    n: u64,
) -> anyhow::Result<Vec<(Target, f64)>> {
    let settle = Duration::from_secs(12);
    let mut caller = Caller::new(channel, fixture.clone(), 0);
    let mut counted = Vec::new();
    tokio::time::sleep(settle).await;
    let mut before = commits(store).await?;
    for target in Target::ALL.into_iter().filter(|t| t.uses_database()) {
        for _ in 0..n {
            caller
                .call(target)
                .await
                .map_err(|err| anyhow::anyhow!("{}: {err}", target.name()))?;
        }
        tokio::time::sleep(settle).await;
        let after = commits(store).await?;
        // The count's own SELECT is one transaction.
        counted.push((target, (after - before - 1) as f64 / n as f64));
        before = after;
    }
    Ok(counted)
}

fn main() -> anyhow::Result<()> {
    common::load::on_two_runtimes(run)
}

async fn run(url: String, server: tokio::runtime::Handle) -> anyhow::Result<()> {
    let load = Load::from_env();
    let members: usize = env_or("IDENTITY_BENCH_USERS", 200);

    let mut config = common::config(url, OPERATOR)?;
    config.service_tokens.push(ServiceTokenConfig {
        name: "reader".into(),
        scopes: vec!["users.read".into()],
        sha256: secret_token::digest_hex(READER),
    });
    // No invitation email is delivered during the run, and the person's access token outlives a
    // long run (its lifetime changes nothing a call does).
    config.outbox_interval = Duration::from_secs(3600);
    config.access_token_ttl = Duration::from_secs(24 * 3600);
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

    let started = Instant::now();
    let fixture = Arc::new(seed(&store, &channel, members).await?);
    println!(
        "seeded an account of {} members ({} invited) in {:.1} s",
        fixture.member_ids.len(),
        fixture.invited,
        started.elapsed().as_secs_f64()
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

    let mut totals: Vec<Outcome> = Target::ALL.iter().map(|_| Outcome::default()).collect();
    let mut ratios = Vec::new();
    let mut rates: Vec<Vec<f64>> = Target::ALL.iter().map(|_| Vec::new()).collect();
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
        println!("| RPC | calls/s | p50 ms | p99 ms | errors | other processes, cores |");
        println!("|---|---|---|---|---|---|");
        for (target, outcome) in Target::ALL.iter().zip(&mut outcomes) {
            let (p50, p99) = outcome.percentiles();
            println!(
                "| {} | {:.0} | {p50:.2} | {p99:.2} | {} | {:.2} |",
                target.name(),
                outcome.rate(),
                outcome.errors,
                outcome.busy()
            );
        }
        let ratio = outcomes[3].rate() / outcomes[0].rate();
        let busy = Outcome::busy;
        let quiet = busy(&outcomes[0]) < QUIET && busy(&outcomes[3]) < QUIET;
        println!(
            "GetUser (service token) / health: {ratio:.3}x{}",
            if quiet {
                ""
            } else {
                " (other processes were busy during one of the two)"
            }
        );
        ratios.push((ratio, quiet));
        let failed: Vec<String> = Target::ALL
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.errors > 0)
            .map(|(t, o)| {
                format!(
                    "{}: {} errors, first: {}",
                    t.name(),
                    o.errors,
                    o.first_error.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if !failed.is_empty() {
            anyhow::bail!("calls failed in round {round}:\n{}", failed.join("\n"));
        }
        for ((total, rates), outcome) in totals.iter_mut().zip(&mut rates).zip(outcomes) {
            rates.push(outcome.rate());
            total.add(outcome);
        }
    }

    let statements = if env_or("IDENTITY_BENCH_STATEMENTS", 1) != 0 {
        statements_per_call(&store, &channel, &fixture, 2000).await?
    } else {
        Vec::new()
    };

    let health_rate = totals[0].rate();
    println!();
    println!(
        "all {} rounds ({} calls in flight; p50 and p99 over all rounds' calls; CPU in microseconds \
         per call, from /proc, during the measured windows):",
        load.rounds,
        load.connections * load.in_flight
    );
    println!(
        "| RPC | calls/s | lowest and highest round | x health | p50 ms | p99 ms | server CPU | \
         load generator CPU | PostgreSQL CPU | other processes, cores | idle cores | SQL statements per \
         call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for ((target, total), rates) in Target::ALL.iter().zip(&mut totals).zip(&rates) {
        let (p50, p99) = total.percentiles();
        let per_call = |secs: f64| 1e6 * secs / total.calls as f64;
        let statements = match statements.iter().find(|(t, _)| t == target) {
            Some((_, n)) => format!("{n:.2}"),
            None if !target.uses_database() => "0".to_owned(),
            None => "not counted".to_owned(),
        };
        let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = rates.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.0} | {lowest:.0} to {highest:.0} | {:.3} | {p50:.2} | {p99:.2} | {:.0} | {:.0} | \
             {:.0} | {:.2} | {:.2} | {statements} |",
            target.name(),
            total.rate(),
            total.rate() / health_rate,
            per_call(total.cpu.server),
            per_call(total.cpu.load),
            per_call(total.cpu.postgres),
            total.busy(),
            total.cpu.idle / total.seconds,
        );
    }
    let ratio = totals[3].rate() / health_rate;
    let mut quiet: Vec<f64> = ratios.iter().filter(|(_, q)| *q).map(|(r, _)| *r).collect();
    quiet.sort_by(f64::total_cmp);
    println!(
        "GetUser (service token) / health over all rounds: {ratio:.3}x (round by round: {}); \
         target at least 0.2x: {}",
        ratios
            .iter()
            .map(|(r, q)| format!("{r:.3}{}", if *q { "" } else { " (busy)" }))
            .collect::<Vec<_>>()
            .join(", "),
        if ratio >= 0.2 { "met" } else { "NOT met" }
    );
    match quiet.get(quiet.len() / 2) {
        Some(median) => println!(
            "median over the {} of {} rounds where other processes used under {QUIET} cores \
             during both: {median:.3}x",
            quiet.len(),
            ratios.len()
        ),
        None => println!("no round was quiet: other processes used {QUIET} cores or more"),
    }
    Ok(())
}

/// An account of `members` people besides its administrator, one in ten still invited (so a
/// page of ListUsers has invitations to look up), the rest active; `PERSON` has a password and
/// logs in.
async fn seed(store: &Store, channel: &Channel, members: usize) -> anyhow::Result<Fixture> {
    let account = AccountServiceClient::new(channel.clone())
        .create_account(common::authorized(
            OPERATOR,
            proto::CreateAccountRequest {
                name: "Bench".into(),
                administrator_email: "admin@bench.test".into(),
                administrator_display_name: "Admin".into(),
                limits: Some(proto::AccountLimits {
                    max_users: 100_000,
                    max_groups: 5,
                }),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .account
        .expect("account");
    let mut users = UserServiceClient::new(channel.clone());
    let roles = [
        proto::Role::MediaLibraryViewOnly,
        proto::Role::Developer,
        proto::Role::MediaLibraryFullAccess,
        proto::Role::MediaLibraryRestricted,
        proto::Role::Finance,
    ];
    for n in 1..=members {
        users
            .create_user(common::authorized(
                OPERATOR,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: format!("user{n:03}@bench.test"),
                    display_name: format!("User {n}"),
                    role: roles[(n - 1) % roles.len()] as i32,
                    ..Default::default()
                },
            ))
            .await?;
    }
    // Accepting an invitation by its link takes the emailed token; do what it does directly.
    let db = store.connection();
    let backend = db.get_database_backend();
    let account_uuid: uuid::Uuid = account.id.parse()?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE memberships SET status = 'active', accepted_at = now(), version = version + 1, \
         updated_at = now() WHERE account_id = $1 AND email_key LIKE 'user%' \
         AND email_key NOT LIKE '%0@bench.test'",
        [account_uuid.into()],
    ))
    .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "DELETE FROM invitations i USING memberships m WHERE i.account_id = $1 \
         AND m.account_id = i.account_id AND m.user_id = i.user_id AND m.status = 'active'",
        [account_uuid.into()],
    ))
    .await?;
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .map_err(|err| anyhow::anyhow!("{err}"))?
        .to_string();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE users SET password_hash = $1 WHERE email_key = $2",
        [hash.into(), PERSON.into()],
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;

    let all = users
        .list_users(common::authorized(
            OPERATOR,
            proto::ListUsersRequest {
                account_id: account.id.clone(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .users;
    anyhow::ensure!(all.len() == members + 1, "{} members listed", all.len());
    let invited = all
        .iter()
        .filter(|u| u.status == proto::MembershipStatus::Invited as i32)
        .count();
    let person_id = all
        .iter()
        .find(|u| u.email == PERSON)
        .expect("the person")
        .id
        .clone();
    let tokens = match AuthServiceClient::new(channel.clone())
        .login(proto::LoginRequest {
            email: PERSON.into(),
            password: PASSWORD.into(),
            account_id: String::new(),
        })
        .await?
        .into_inner()
        .outcome
    {
        Some(proto::login_response::Outcome::Tokens(tokens)) => tokens,
        other => anyhow::bail!("login answered {other:?}"),
    };
    Ok(Fixture {
        account_id: account.id,
        member_ids: all.into_iter().map(|u| u.id).collect(),
        reader: bearer(READER),
        person: bearer(&tokens.access_token),
        person_token: tokens.access_token,
        person_id,
        page_size: 50.min(members + 1),
        invited,
    })
}
