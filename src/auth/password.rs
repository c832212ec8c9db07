//! Passwords: argon2id (m=19,456 KiB, t=2, p=1) computed on a bounded pool off the async workers,
//! so a login flood queues instead of exhausting memory; and the password policy.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use argon2::password_hash::phc::Output;
use argon2::{Argon2, Block, Params, PasswordHash, PasswordHasher as _};
use zeroize::Zeroizing;

use crate::domain::error::{DomainError, DomainResult};

/// A password as received; wiped from memory when dropped.
pub type Password = Zeroizing<String>;

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// It matches. `rehash` carries a new hash when the stored one used other parameters.
    Match {
        rehash: Option<String>,
    },
    Mismatch,
}

type Job = Box<dyn FnOnce() + Send>;

/// The pool's instruments, from the global meter provider (a no-op without OTLP).
struct Metrics {
    /// Jobs waiting for a thread: sent, or waiting to be sent when the queue is full.
    length: opentelemetry::metrics::UpDownCounter<i64>,
    wait_time: opentelemetry::metrics::Histogram<f64>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("identity");
        Metrics {
            length: meter
                .i64_up_down_counter("identity.password.queue.length")
                .with_unit("{job}")
                .with_description(
                    "Password hashes and verifications waiting for a thread of the hashing pool",
                )
                .build(),
            wait_time: meter
                .f64_histogram("identity.password.queue.wait_time")
                .with_unit("s")
                .with_boundaries(crate::telemetry::DURATION_BUCKETS.to_vec())
                .with_description(
                    "Time a password hash or verification waited for a thread of the hashing pool",
                )
                .build(),
        }
    })
}

/// A job in the queue, from the moment it asks for a place until a thread takes it: counted in
/// the queue's length while it lives, and traced as `identity.password.queue` under the caller's
/// span (none when the caller is not traced: the pool's spans are parts of a call, never traces
/// of their own).
struct Queued {
    operation: &'static str,
    since: Instant,
    /// Ends, with the wait, when the job is dropped.
    _span: tracing::Span,
}

impl Queued {
    fn new(operation: &'static str, caller: &tracing::Span) -> Self {
        metrics().length.add(1, &[]);
        let span = if caller.is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                parent: caller,
                "identity.password.queue",
                identity.password.operation = operation,
            )
        };
        Self {
            operation,
            since: Instant::now(),
            _span: span,
        }
    }

    /// A thread took the job: the wait ends, and the work's own span, `identity.password.hash`,
    /// begins under the caller's.
    fn taken(self, caller: &tracing::Span) -> tracing::Span {
        let operation = self.operation;
        metrics().wait_time.record(
            self.since.elapsed().as_secs_f64(),
            &[opentelemetry::KeyValue::new("operation", operation)],
        );
        drop(self);
        if caller.is_none() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            parent: caller,
            "identity.password.hash",
            identity.password.operation = operation,
        )
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        metrics().length.add(-1, &[]);
    }
}

/// Hashes and verifies passwords on a fixed pool of `concurrency` threads, so never more hashes
/// (19 MiB each) are in flight than the pool has threads; further requests wait in a bounded
/// queue. The threads run at the lowest scheduling priority (SCHED_IDLE): a login flood uses the
/// idle CPU, and any other thread of the service that wakes preempts a hash.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: tokio::sync::mpsc::Sender<Job>,
    /// A real hash of a random password: unknown emails are verified against it, so they take
    /// as long as known ones.
    dummy: Arc<String>,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        Params::DEFAULT,
    )
}

fn hash_now(password: &str) -> DomainResult<String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| DomainError::internal(anyhow::anyhow!("password hashing failed: {e}")))
}

thread_local! {
    /// A pool thread's argon2 memory (19 MiB at the current parameters), kept from one
    /// verification to the next: no allocation, zeroing or page faults per login, and no
    /// address-space changes that would stall the other threads of the process.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Verifies `password` against a PHC string in the calling thread's kept memory (hashes with
/// more memory than the current parameters, from a future upgrade, get memory of their own).
/// The result is compared in constant time.
fn verify_now(password: &[u8], hash: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let computed = if blocks > Params::DEFAULT.block_count() {
        argon2.hash_password_into(password, salt, out)
    } else {
        MEMORY.with_borrow_mut(|memory| {
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        })
    };
    computed.is_ok() && Output::new(out).is_ok_and(|computed| computed == *expected)
}

fn current_params(hash: &PasswordHash) -> bool {
    hash.algorithm.as_str() == "argon2id"
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() == Params::DEFAULT_M_COST
                && p.t_cost() == Params::DEFAULT_T_COST
                && p.p_cost() == Params::DEFAULT_P_COST
        })
}

fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(error) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        policy,
    ) {
        tracing::warn!(?error, "password hashing runs at normal priority");
    }
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> DomainResult<Self> {
        let dummy = hash_now(&crate::auth::secret_token::generate(""))?;
        let threads = concurrency.max(1);
        let (jobs, receiver) = tokio::sync::mpsc::channel::<Job>(threads * 256);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match receiver.lock() {
                            Ok(mut receiver) => receiver.blocking_recv(),
                            Err(_) => None,
                        };
                        match job {
                            Some(job) => job(),
                            None => break,
                        }
                    }
                })
                .map_err(DomainError::internal)?;
        }
        Ok(Self {
            jobs,
            dummy: Arc::new(dummy),
        })
    }

    /// Runs `work` (a hash or a verification, `operation`) on the pool and waits for its result.
    async fn on_pool<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> DomainResult<T> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let caller = tracing::Span::current();
        let queued = Queued::new(operation, &caller);
        self.jobs
            .send(Box::new(move || {
                let hashing = queued.taken(&caller);
                let _ = reply.send(hashing.in_scope(work));
            }))
            .await
            .map_err(|_| DomainError::internal(anyhow::anyhow!("the password pool has stopped")))?;
        result.await.map_err(DomainError::internal)
    }

    pub async fn hash(&self, password: &Password) -> DomainResult<String> {
        let password = password.clone();
        self.on_pool("hash", move || hash_now(&password)).await?
    }

    /// Checks `password` against `stored`; `None` (unknown person, no password) is checked against
    /// the dummy hash and never matches, in the same time.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> DomainResult<Verified> {
        let known = stored.is_some();
        let stored = stored.unwrap_or(self.dummy.as_str()).to_owned();
        let password = password.clone();
        self.on_pool("verify", move || {
            let Ok(hash) = PasswordHash::new(&stored) else {
                return Ok(Verified::Mismatch);
            };
            if !verify_now(password.as_bytes(), &hash) || !known {
                return Ok(Verified::Mismatch);
            }
            let rehash = if current_params(&hash) {
                None
            } else {
                Some(hash_now(&password)?)
            };
            Ok(Verified::Match { rehash })
        })
        .await?
    }
}

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// The password policy: 8 to 128 characters, no composition rules, not common or easily guessed
/// (zxcvbn score 3 or more, with the email and name as known inputs), not containing the email's
/// local part. `Err` says which rule failed.
pub fn check_policy(password: &str, email: &str, display_name: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if length > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if local.chars().count() >= 3 && password.to_lowercase().contains(&local) {
        return Err("must not contain your email address".to_owned());
    }
    let inputs: Vec<&str> = [email, local.as_str(), display_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let score = u8::from(zxcvbn::zxcvbn(password, &inputs).score());
    if score < 3 {
        return Err(
            "is too common or too easy to guess; a longer passphrase of unrelated words works well"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_rule_that_failed() {
        let email = "ada.lovelace@example.com";
        assert!(
            check_policy("short", email, "")
                .unwrap_err()
                .contains("at least 8")
        );
        assert!(
            check_policy(&"x".repeat(129), email, "")
                .unwrap_err()
                .contains("at most 128")
        );
        assert!(
            check_policy("password123", email, "")
                .unwrap_err()
                .contains("too common")
        );
        assert!(
            check_policy("qwertyuiop", email, "")
                .unwrap_err()
                .contains("too common")
        );
        assert!(
            check_policy("my ada.lovelace vault 9", email, "")
                .unwrap_err()
                .contains("email")
        );
        assert!(check_policy("correct horse battery staple", email, "").is_ok());
        assert!(check_policy("Tr0ub4dor&3-orbit-lantern", email, "").is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_people_never_match() {
        let hasher = PasswordHasher::new(2).unwrap();
        let password: Password = Zeroizing::new("correct horse battery staple".to_owned());
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            hasher.verify(&password, Some(&hash)).await.unwrap(),
            Verified::Match { rehash: None }
        );
        let wrong: Password = Zeroizing::new("wrong horse".to_owned());
        assert_eq!(
            hasher.verify(&wrong, Some(&hash)).await.unwrap(),
            Verified::Mismatch
        );
        assert_eq!(
            hasher.verify(&password, None).await.unwrap(),
            Verified::Mismatch
        );
    }

    #[test]
    fn kept_memory_verifies_like_the_library_for_any_parameters() {
        let password = b"correct horse battery staple";
        let cases = [
            (argon2::Algorithm::Argon2id, Params::DEFAULT),
            (
                argon2::Algorithm::Argon2id,
                Params::new(8 * 1024, 1, 1, None).unwrap(),
            ),
            (
                argon2::Algorithm::Argon2i,
                Params::new(4 * 1024, 3, 2, Some(16)).unwrap(),
            ),
            (
                argon2::Algorithm::Argon2d,
                Params::new(4 * 1024, 1, 1, Some(64)).unwrap(),
            ),
            // More memory than the kept buffer: verified in memory of its own.
            (
                argon2::Algorithm::Argon2id,
                Params::new(24 * 1024, 1, 1, None).unwrap(),
            ),
        ];
        // Twice, so each case also runs in memory a larger case left behind.
        for _ in 0..2 {
            for (algorithm, params) in &cases {
                let argon2 = Argon2::new(*algorithm, argon2::Version::V0x13, params.clone());
                let stored = argon2.hash_password(password).unwrap().to_string();
                let hash = PasswordHash::new(&stored).unwrap();
                assert!(verify_now(password, &hash), "{stored}");
                assert!(
                    !verify_now(b"correct horse battery stapler", &hash),
                    "{stored}"
                );
            }
        }
    }

    #[tokio::test]
    async fn old_parameters_are_upgraded_on_a_match() {
        let weak = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let old = weak
            .hash_password(b"correct horse battery staple")
            .unwrap()
            .to_string();
        let hasher = PasswordHasher::new(1).unwrap();
        let password: Password = Zeroizing::new("correct horse battery staple".to_owned());
        match hasher.verify(&password, Some(&old)).await.unwrap() {
            Verified::Match { rehash: Some(new) } => assert!(new.contains("m=19456,t=2,p=1")),
            other => panic!("{other:?}"),
        }
    }
}
