//! The closed-loop load of the throughput benches: callers on a few HTTP/2 connections, each
//! calling again as soon as its answer arrives, a warm-up, a measured window, and the CPU each
//! side used in it, read from /proc.

use std::{str::FromStr, time::Duration};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The load applied to each target.
#[derive(Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
}

impl Load {
    /// IDENTITY_BENCH_CONNECTIONS (4), IDENTITY_BENCH_IN_FLIGHT per connection (16),
    /// IDENTITY_BENCH_WARMUP_SECS (1), IDENTITY_BENCH_SECS (5) and IDENTITY_BENCH_ROUNDS (3).
    pub fn from_env() -> Self {
        Self {
            connections: env_or("IDENTITY_BENCH_CONNECTIONS", 4),
            in_flight: env_or("IDENTITY_BENCH_IN_FLIGHT", 16),
            warmup: Duration::from_secs_f64(env_or("IDENTITY_BENCH_WARMUP_SECS", 1.0)),
            measure: Duration::from_secs_f64(env_or("IDENTITY_BENCH_SECS", 5.0)),
            rounds: env_or("IDENTITY_BENCH_ROUNDS", 3usize).max(1),
        }
    }
}

/// Runs `run` on a scratch database with the server and the load generator on runtimes of their
/// own (threads named `server` and `load`, IDENTITY_BENCH_CLIENT_THREADS of them, default 1), so
/// the CPU each side uses can be told apart. `run` gets the database URL and the server's runtime.
pub fn on_two_runtimes<F, Fut>(run: F) -> anyhow::Result<()>
where
    F: FnOnce(String, tokio::runtime::Handle) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .thread_name("server")
        .enable_all()
        .build()?;
    let handle = server.handle().clone();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("IDENTITY_BENCH_CLIENT_THREADS", 1))
        .thread_name("load")
        .enable_all()
        .build()?
        .block_on(super::on_scratch_database(move |url| run(url, handle)));
    server.shutdown_background();
    result
}

/// `message` with `authorization` set to `auth`.
pub fn with_auth<T>(auth: &MetadataValue<Ascii>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", auth.clone());
    request
}

/// A failed call, for the report.
pub fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// One in-flight slot: a call of a target, checked (an error unless the answer is right).
pub trait Call: Send + 'static {
    type Target: Copy + Send + 'static;
    fn call(&mut self, target: Self::Target) -> impl Future<Output = Result<(), String>> + Send;
}

/// CPU seconds used, by whom, read from /proc: this process's threads by name (the server's
/// runtime names its threads `server`; everything else here is the load generator), PostgreSQL's
/// processes, the machine's other busy time (other people's work on this shared machine) and its
/// idle time.
#[derive(Default, Clone, Copy)]
pub struct Cpu {
    pub server: f64,
    pub load: f64,
    pub postgres: f64,
    pub other: f64,
    pub idle: f64,
}

impl Cpu {
    pub fn now() -> Self {
        let mut cpu = Self::default();
        for (comm, secs) in super::cpu::threads() {
            if comm.starts_with("server") {
                cpu.server += secs;
            } else {
                cpu.load += secs;
            }
        }
        cpu.postgres = super::cpu::postgres();
        // Until `since`, `other` holds all the machine's busy time.
        (cpu.other, cpu.idle) = super::cpu::machine();
        cpu
    }

    pub fn since(&self, before: &Self) -> Self {
        let (server, load, postgres) = (
            self.server - before.server,
            self.load - before.load,
            self.postgres - before.postgres,
        );
        Self {
            server,
            load,
            postgres,
            other: self.other - before.other - server - load - postgres,
            idle: self.idle - before.idle,
        }
    }

    pub fn add(&mut self, other: &Self) {
        self.server += other.server;
        self.load += other.load;
        self.postgres += other.postgres;
        self.other += other.other;
        self.idle += other.idle;
    }
}

/// One target's measurement in one round (or the sum of several).
#[derive(Default)]
pub struct Outcome {
    /// Calls answered OK within the measured window.
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latencies: Vec<Duration>,
    pub seconds: f64,
    pub cpu: Cpu,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds
    }

    /// Other processes' cores during the measurement.
    pub fn busy(&self) -> f64 {
        self.cpu.other / self.seconds
    }

    pub fn add(&mut self, other: Outcome) {
        self.calls += other.calls;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.seconds += other.seconds;
        self.cpu.add(&other.cpu);
    }

    /// p50 and p99 in ms (sorts the samples).
    pub fn percentiles(&mut self) -> (f64, f64) {
        if self.latencies.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        self.latencies.sort_unstable();
        let at = |n: usize| self.latencies[n].as_secs_f64() * 1000.0;
        let len = self.latencies.len();
        (at(len / 2), at(len * 99 / 100))
    }
}

/// `load.connections x load.in_flight` callers of `target`, made by `caller` (from a connection
/// and the slot's number), each calling in a loop: a warm-up, then the measured window.
pub async fn measure<C: Call>(
    target: C::Target,
    channels: &[Channel],
    load: Load,
    caller: impl Fn(&Channel, usize) -> C,
) -> Outcome {
    let started = tokio::time::Instant::now();
    let from = started + load.warmup;
    let until = from + load.measure;
    let mut tasks = Vec::new();
    for channel in channels {
        for _ in 0..load.in_flight {
            let mut caller = caller(channel, tasks.len());
            tasks.push(tokio::spawn(async move {
                let mut out = Outcome::default();
                loop {
                    let t = tokio::time::Instant::now();
                    if t >= until {
                        break;
                    }
                    let result = caller.call(target).await;
                    let done = tokio::time::Instant::now();
                    match result {
                        Ok(()) if done >= from && done <= until => {
                            out.calls += 1;
                            out.latencies.push(done - t);
                        }
                        Ok(()) => {}
                        Err(err) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(err);
                        }
                    }
                }
                out
            }));
        }
    }
    tokio::time::sleep_until(from).await;
    let before = Cpu::now();
    tokio::time::sleep_until(until).await;
    let cpu = Cpu::now().since(&before);
    let mut total = Outcome::default();
    for task in tasks {
        total.add(task.await.expect("caller"));
    }
    total.seconds = load.measure.as_secs_f64();
    total.cpu = cpu;
    total
}
