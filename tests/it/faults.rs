//! Faults the service must ride out unaided: its PostgreSQL server restarted under a write load.
//! The test runs a PostgreSQL cluster of its own (`initdb` and `pg_ctl` of the installed
//! PostgreSQL, its own folder and port), never the server the other tests share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use identity::proto;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::harness::*;
use crate::health::wait_for;

/// A PostgreSQL cluster in a temporary folder, stopped and removed on drop.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

/// The folder of the installed PostgreSQL's programs (`pg_config --bindir`, or Debian's layout).
fn postgres_bin() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "initdb and pg_ctl of an installed PostgreSQL are needed (Debian: apt-get install postgresql)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL program, run as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root).
fn postgres_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

impl PrivateCluster {
    fn run(&self, program: &str, args: &[&str]) {
        let output = postgres_command(&self.bin, program)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("identity-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = free_port();
        let cluster = Self {
            dir,
            port,
            bin: postgres_bin(),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        cluster.pg_ctl("start");
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        match action {
            "start" => self.run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-o",
                    &options,
                    "-l",
                    &log,
                    "-w",
                    "start",
                ],
            ),
            _ => self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", action]),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = postgres_command(&self.bin, "pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

/// One write of the load and what it was answered.
struct Write {
    email: String,
    result: Result<(), tonic::Status>,
    took: Duration,
}

#[tokio::test]
async fn a_database_restart_under_writes_loses_nothing_acknowledged_and_heals_unaided() {
    let cluster = PrivateCluster::start();
    let db = Arc::new(TestDb::at(cluster.url()));
    let server = Arc::new(TestServer::start_on(db, |_| {}).await);
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: account.id.clone(),
                max_users: Some(100_000),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Four writers, one CreateUser at a time each, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (server, stop, account_id) = (server.clone(), stop.clone(), account.id.clone());
            tokio::spawn(async move {
                let mut writes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let email = format!("w{w}.{n}@acme.test");
                    n += 1;
                    let started = Instant::now();
                    let result = server
                        .users()
                        .create_user(with_token(
                            OPERATOR,
                            proto::CreateUserRequest {
                                account_id: account_id.clone(),
                                email: email.clone(),
                                role: proto::Role::Developer as i32,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ());
                    let failed = result.is_err();
                    writes.push(Write {
                        email,
                        result,
                        took: started.elapsed(),
                    });
                    if failed {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                writes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    // The server stops (its connections end) and stays down a moment: health follows.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl("stop");
        cluster
    })
    .await
    .unwrap();
    wait_for(&server, "", ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl("start");
        cluster
    })
    .await
    .unwrap();
    wait_for(&server, "", ServingStatus::Serving).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(writer.await.unwrap());
    }

    let acknowledged: Vec<&Write> = writes.iter().filter(|w| w.result.is_ok()).collect();
    let failed: Vec<&Write> = writes.iter().filter(|w| w.result.is_err()).collect();
    // Every failure is UNAVAILABLE (with RetryInfo), answered fast.
    for write in &failed {
        let status = write.result.as_ref().unwrap_err();
        assert_eq!(
            (status.code(), reason(status).as_str()),
            (Code::Unavailable, "UNAVAILABLE"),
            "{}: {status:?}",
            write.email
        );
        assert!(write.took < Duration::from_secs(5), "{:?}", write.took);
    }
    assert!(!failed.is_empty(), "the restart was not noticed");
    // Writes succeeded before and after the restart, without help.
    let last_failure = writes
        .iter()
        .rposition(|w| w.result.is_err())
        .unwrap_or_default();
    assert!(
        acknowledged.len() > 8 && writes[last_failure..].iter().any(|w| w.result.is_ok()),
        "{} acknowledged, {} failed",
        acknowledged.len(),
        failed.len()
    );
    // No acknowledged write was lost.
    let listed = server
        .users()
        .list_users(with_token(
            OPERATOR,
            proto::ListUsersRequest {
                account_id: account.id.clone(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .users;
    let emails: std::collections::HashSet<&str> = listed.iter().map(|u| u.email.as_str()).collect();
    for write in &acknowledged {
        assert!(
            emails.contains(write.email.as_str()),
            "lost: {}",
            write.email
        );
    }
    eprintln!(
        "restart under load: {} writes acknowledged, {} UNAVAILABLE (slowest {:?}), none lost",
        acknowledged.len(),
        failed.len(),
        failed.iter().map(|w| w.took).max().unwrap_or_default()
    );
    drop(server);
    drop(restarted);
}
