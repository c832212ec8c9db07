//! Email through the real SES API, against moto's SES emulator on loopback: what arrives, what
//! waits through an outage and arrives exactly once, what is rejected, when retries stop.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use identity::{
    auth::secret_token,
    config::{Config, MailerKind},
    email::{outbox, templates::Email},
    proto,
    store::entities::{invitation, outbox_email},
};
use sea_orm::EntityTrait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::harness::*;

pub const SENDER: &str = "no-reply@identity.test";
const FROM: &str = "Acme Identity <no-reply@identity.test>";

/// `moto_server`: `$MOTO_SERVER`, else the one `tests/run` installs into target/tools/venv.
pub fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/moto_server");
    assert!(
        installed.exists(),
        "the SES emulator is missing: {} does not exist. Run the suite with `tests/run`, which \
         installs it (pip package moto[server]) into target/tools/venv, or set MOTO_SERVER to a \
         moto_server binary",
        installed.display()
    );
    installed
}

/// One moto server on its own port, stopped when dropped.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
}

impl Moto {
    /// Starts moto on a free port and verifies the sender's identity in it.
    pub async fn start() -> Self {
        let mut moto = Self {
            port: free_port(),
            child: None,
        };
        moto.restart().await;
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port; moto forgets everything, so the sender is verified again.
    pub async fn restart(&mut self) {
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto_server().display()));
        self.child = Some(child);
        let started = tokio::time::Instant::now();
        while self.get("/moto-api/data.json").await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not answer on port {} within 60 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.verify(SENDER).await;
    }

    /// Stops the emulator: SES calls now fail to connect.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Verifies an identity (an address or a domain), as SES requires before sending from it.
    pub async fn verify(&self, identity: &str) {
        let sdk = emulator_aws_config()
            .endpoint_url(self.endpoint())
            .load()
            .await;
        aws_sdk_sesv2::Client::new(&sdk)
            .create_email_identity()
            .email_identity(identity)
            .send()
            .await
            .unwrap();
    }

    /// Everything moto accepted, from its inspection endpoint: `source`, `destinations`,
    /// `subject`, `body` (the HTML part when both were sent) and `id`.
    pub async fn messages(&self) -> Vec<Value> {
        let body = self.get("/moto-api/data.json").await.unwrap();
        let data: Value = serde_json::from_str(&body).unwrap();
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The messages to `to`.
    pub async fn messages_to(&self, to: &str) -> Vec<Value> {
        self.messages()
            .await
            .into_iter()
            .filter(|m| recipients(m).iter().any(|r| r == to))
            .collect()
    }

    /// A plain HTTP/1.1 GET on loopback (no HTTP client crate in the test build).
    async fn get(&self, path: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(std::io::Error::other(head.to_owned()));
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_owned())
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub fn recipients(message: &Value) -> Vec<String> {
    message["destinations"]["ToAddresses"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The first link of an HTML body, its entities decoded.
pub fn first_link(html: &str) -> String {
    let start = html.find("href=\"").expect("a link in the body") + "href=\"".len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#61;", "=")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
}

/// The SES mailer pointed at `moto`, a short worker interval.
fn ses(moto: &Moto) -> impl FnOnce(&mut Config) + use<> {
    let endpoint = moto.endpoint();
    move |config: &mut Config| {
        config.email.mailer = MailerKind::Ses;
        config.email.from = Some(FROM.to_owned());
        config.email.reply_to = vec!["help@identity.test".to_owned()];
        config.email.ses_region = Some("us-east-1".to_owned());
        config.email.ses_endpoint_url = Some(endpoint);
        config.outbox_interval = Duration::from_millis(50);
    }
}

async fn start(moto: &Moto) -> TestServer {
    TestServer::start_on(Arc::new(TestDb::new().await), ses(moto)).await
}

/// A server whose own worker stays idle (its first pass would come after an hour): the test
/// delivers with `deliver`, so nothing races its passes.
async fn start_idle(moto: &Moto) -> TestServer {
    let ses = ses(moto);
    TestServer::start_on(Arc::new(TestDb::new().await), move |config: &mut Config| {
        ses(config);
        config.outbox_interval = Duration::from_secs(3600);
    })
    .await
}

/// One delivery pass, as the server's worker runs it: its store, mailer, clock and policy.
async fn deliver(server: &TestServer) -> outbox::Delivery {
    outbox::deliver_due(
        &server.app.store,
        server.app.mailer.as_ref(),
        server.app.clock.as_ref(),
        outbox::Policy {
            retry_horizon: server.app.config.email.retry_horizon,
        },
        outbox::BATCH,
    )
    .await
    .unwrap()
}

/// Every outbox row, oldest first.
async fn outbox_rows(server: &TestServer) -> Vec<outbox_email::Model> {
    use sea_orm::QueryOrder;
    outbox_email::Entity::find()
        .order_by_asc(outbox_email::Column::CreatedAt)
        .order_by_asc(outbox_email::Column::Id)
        .all(server.app.store.connection())
        .await
        .unwrap()
}

/// Waits (up to 20 s) until `ready` holds for every outbox row; returns them.
async fn wait_rows(
    server: &TestServer,
    what: &str,
    ready: impl Fn(&outbox_email::Model) -> bool,
) -> Vec<outbox_email::Model> {
    let started = tokio::time::Instant::now();
    loop {
        let rows = outbox_rows(server).await;
        if !rows.is_empty() && rows.iter().all(&ready) {
            return rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not every email is {what}: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An account whose administrator invites `count` people over gRPC; returns their addresses.
async fn invite_people(server: &TestServer, domain: &str, count: usize) -> Vec<String> {
    let (account, admin) = server
        .create_account("Acme", &format!("admin@{domain}"))
        .await;
    server.activate(&admin).await;
    let token = server.token_for(&admin).await;
    let mut emails = Vec::new();
    for i in 0..count {
        let email = format!("person{i}@{domain}");
        server
            .users()
            .create_user(with_token(
                &token,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: email.clone(),
                    role: proto::Role::Developer as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        emails.push(email);
    }
    emails
}

#[tokio::test]
async fn an_invitation_created_over_grpc_arrives_at_ses_with_a_link_to_its_invitation() {
    let moto = Moto::start().await;
    let server = start(&moto).await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    server.activate(&admin).await;
    let user = server
        .users()
        .create_user(with_token(
            &server.token_for(&admin).await,
            proto::CreateUserRequest {
                account_id: account.id.clone(),
                email: "New.Person@acme.test".into(),
                role: proto::Role::Developer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();

    let rows = wait_rows(&server, "sent", |row| row.status == "sent").await;
    let row = rows
        .iter()
        .find(|row| row.recipient == "New.Person@acme.test")
        .unwrap();
    assert_eq!(row.kind, "invitation");
    assert_eq!(row.attempts, 1);

    let messages = moto.messages_to("New.Person@acme.test").await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message["source"], FROM);
    assert_eq!(message["subject"], "Admin invited you to Acme");
    assert_eq!(
        row.provider_message_id.as_deref(),
        message["id"].as_str(),
        "the SES message id is recorded"
    );
    let body = message["body"].as_str().unwrap();
    assert!(body.contains("invited you to the <strong>Acme</strong> account"));

    // The link is under the public URL, and its token is the one stored (as SHA-256) for this
    // membership.
    let link = first_link(body);
    let public_url = &server.app.config.public_url;
    let token = link
        .strip_prefix(&format!("{public_url}/invitations/accept?token="))
        .unwrap_or_else(|| panic!("unexpected link {link}"));
    let invitation = invitation::Entity::find_by_id((
        account.id.parse::<Uuid>().unwrap(),
        user.id.parse::<Uuid>().unwrap(),
    ))
    .one(server.app.store.connection())
    .await
    .unwrap()
    .unwrap();
    assert_eq!(secret_token::digest_hex(token), invitation.token_hash);
    // The delivered row keeps no copy of the token.
    assert!(!row.payload.contains(token));

    // The link works: AcceptInvitation with its token sets the password and activates the user.
    let accepted = server
        .auth()
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: token.to_owned(),
            password: "lantern orbit canyon 42".to_owned(),
            display_name: String::new(),
        })
        .await
        .expect("the emailed link is accepted")
        .into_inner();
    let user = accepted.user.unwrap();
    assert_eq!(user.status, proto::MembershipStatus::Active as i32);
    assert!(user.has_password);
    assert!(!accepted.tokens.unwrap().access_token.is_empty());
}

#[tokio::test]
async fn emails_wait_while_ses_is_down_and_each_arrives_once_after() {
    let mut moto = Moto::start().await;
    let server = start(&moto).await;
    moto.stop().await;
    let people = invite_people(&server, "outage.test", 4).await;

    // Each email was tried once, failed to connect, and waits with a backoff.
    let first = wait_rows(&server, "tried once", |row| {
        row.status == "pending" && row.attempts == 1
    })
    .await;
    assert_eq!(first.len(), people.len() + 1);
    let now = server.clock.now_utc();
    for row in &first {
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(error.starts_with("connection error"), "{error}");
        assert!(row.next_attempt_at > now);
        assert!(row.next_attempt_at <= now + chrono::Duration::seconds(5));
    }

    // Later: a second try, scheduled after the first.
    server.clock.advance(chrono::Duration::minutes(16));
    let second = wait_rows(&server, "tried twice", |row| {
        row.status == "pending" && row.attempts == 2
    })
    .await;
    for (before, after) in first.iter().zip(&second) {
        assert!(after.next_attempt_at > before.next_attempt_at);
    }

    // SES is back: every email is delivered, and exactly once.
    moto.restart().await;
    server.clock.advance(chrono::Duration::minutes(16));
    let sent = wait_rows(&server, "sent", |row| row.status == "sent").await;
    assert!(
        sent.iter()
            .all(|row| row.attempts == 3 && row.last_error.is_none())
    );
    let messages = moto.messages().await;
    assert_eq!(messages.len(), sent.len(), "{messages:#?}");
    for person in people.iter().chain([&"admin@outage.test".to_owned()]) {
        assert_eq!(moto.messages_to(person).await.len(), 1, "{person}");
    }
}

#[tokio::test]
async fn a_rejected_recipient_is_failed_after_one_attempt_with_the_reason() {
    let moto = Moto::start().await;
    let server = start_idle(&moto).await;
    // SES (and the emulator) refuses an address without a domain. The API never accepts one, so
    // it is queued directly, as a stale or imported address would be.
    let secret = "https://app.example.com/reset?token=SECRET";
    outbox::enqueue(
        server.app.store.connection(),
        None,
        "nobody",
        &Email::PasswordReset {
            link: secret.to_owned(),
            expires_in_minutes: 30,
        },
        server.clock.now_utc(),
    )
    .await
    .unwrap();

    assert_eq!(
        deliver(&server).await,
        outbox::Delivery {
            claimed: 1,
            failed: 1,
            ..Default::default()
        }
    );
    let rows = outbox_rows(&server).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 1);
    let reason = row.last_error.as_deref().unwrap_or_default();
    assert!(reason.contains("Missing domain"), "{reason}");
    assert!(!row.payload.contains("SECRET"), "{}", row.payload);
    assert!(moto.messages().await.is_empty());

    // Not retried: time passes, nothing changes.
    server.clock.advance(chrono::Duration::hours(2));
    assert_eq!(deliver(&server).await, outbox::Delivery::default());
    assert_eq!(outbox_rows(&server).await, rows);
    assert!(moto.messages().await.is_empty());
}

#[tokio::test]
async fn a_rejected_message_is_failed_after_one_attempt_with_the_reason() {
    let moto = Moto::start().await;
    // A sender SES has not verified: every message from it is rejected.
    let server = TestServer::start_on(Arc::new(TestDb::new().await), {
        let ses = ses(&moto);
        move |config: &mut Config| {
            ses(config);
            config.email.from = Some("someone@unverified.test".to_owned());
        }
    })
    .await;
    server.create_account("Acme", "admin@acme.test").await;

    let rows = wait_rows(&server, "failed", |row| row.status == "failed").await;
    assert_eq!(rows[0].attempts, 1);
    let reason = rows[0].last_error.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("MessageRejected") && reason.contains("not verified"),
        "{reason}"
    );
    assert!(!rows[0].payload.contains("token="), "{}", rows[0].payload);
    assert!(moto.messages().await.is_empty());
}

#[tokio::test]
async fn a_claim_left_by_a_dead_worker_is_sent_again_after_its_lease() {
    use sea_orm::{ActiveValue::Set, TransactionTrait};
    let moto = Moto::start().await;
    let server = start_idle(&moto).await;
    // A worker claimed this row and died before recording the result (whether SES got the
    // email is unknown): the row is `sending`, attempt 1, its lease running.
    let now = server.clock.now_utc();
    let txn = server.app.store.connection().begin().await.unwrap();
    let id = outbox::enqueue(
        &txn,
        None,
        "crash@acme.test",
        &Email::MfaCode {
            code: "424242".into(),
            expires_in_minutes: 10,
        },
        now,
    )
    .await
    .unwrap();
    outbox_email::Entity::update(outbox_email::ActiveModel {
        id: Set(id),
        status: Set("sending".into()),
        attempts: Set(1),
        next_attempt_at: Set(now + outbox::LEASE),
        ..Default::default()
    })
    .exec(&txn)
    .await
    .unwrap();
    txn.commit().await.unwrap();

    // While the lease runs, no other worker touches it, up to its last second.
    let claimed = outbox_rows(&server).await;
    assert_eq!(claimed[0].status, "sending");
    server
        .clock
        .advance(outbox::LEASE - chrono::Duration::seconds(1));
    assert_eq!(deliver(&server).await, outbox::Delivery::default());
    assert_eq!(outbox_rows(&server).await, claimed);
    assert!(moto.messages().await.is_empty());

    // After it, the email is sent again, as attempt 2, once.
    server.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(
        deliver(&server).await,
        outbox::Delivery {
            claimed: 1,
            sent: 1,
            ..Default::default()
        }
    );
    let rows = outbox_rows(&server).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].attempts, 2);
    let messages = moto.messages_to("crash@acme.test").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["subject"], "Your login code: 424242");
    assert!(messages[0]["body"].as_str().unwrap().contains("424242"));
    assert!(!rows[0].payload.contains("424242"));
}

#[tokio::test]
async fn retries_stop_at_the_horizon() {
    // Nothing listens on the endpoint: every attempt fails to connect.
    let server = TestServer::start_on(Arc::new(TestDb::new().await), |config| {
        config.email.mailer = MailerKind::Ses;
        config.email.from = Some(FROM.to_owned());
        config.email.ses_region = Some("us-east-1".to_owned());
        config.email.ses_endpoint_url = Some(format!("http://127.0.0.1:{}", free_port()));
        config.email.retry_horizon = Duration::from_secs(3600);
    })
    .await;
    server.create_account("Acme", "admin@acme.test").await;
    let horizon = chrono::Duration::hours(1);

    let mut attempts = 0;
    let mut next_attempt_at = None;
    let row = loop {
        let row = wait_rows(&server, "tried again", |row| {
            row.status == "failed" || (row.status == "pending" && row.attempts > attempts)
        })
        .await
        .remove(0);
        if row.status == "failed" {
            break row;
        }
        // Each retry is scheduled later than the one before, and never past the horizon.
        assert!(next_attempt_at < Some(row.next_attempt_at));
        assert!(row.next_attempt_at <= row.created_at + horizon);
        attempts = row.attempts;
        next_attempt_at = Some(row.next_attempt_at);
        assert!(attempts < 10, "still retrying after {attempts} attempts");
        server.clock.advance(chrono::Duration::minutes(16));
    };
    // Tries at 0, 16, 32 and 48 minutes, the last at the horizon itself.
    assert_eq!(row.attempts, 5);
    assert!(server.clock.now_utc() >= row.created_at + horizon);
    let reason = row.last_error.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("gave up after 5 attempts in 3600s: connection error"),
        "{reason}"
    );
    assert!(!row.payload.contains("token="));
}

#[tokio::test]
async fn the_binary_sends_through_ses_with_credentials_from_the_aws_environment() {
    let moto = Moto::start().await;
    let dir = std::env::temp_dir().join(format!("identity-ses-{}", Uuid::new_v4()));
    let env = [
        ("IDENTITY_DATA_DIR", dir.display().to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_MAILER", "ses".to_owned()),
        ("IDENTITY_EMAIL_FROM", FROM.to_owned()),
        ("IDENTITY_SES_REGION", "us-east-1".to_owned()),
        ("IDENTITY_SES_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let running = crate::cli::Running::start(&env).await;
    // The embedded run invites its bootstrap administrator: that email goes through SES.
    let started = tokio::time::Instant::now();
    let message = loop {
        if let Some(message) = moto
            .messages_to(identity::bootstrap::BOOTSTRAP_ADMIN_EMAIL)
            .await
            .pop()
        {
            break message;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing arrived at the emulator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(message["source"], FROM);
    let output = running.stop().await;
    let link = first_link(message["body"].as_str().unwrap());
    let token = link.split("token=").nth(1).unwrap();
    assert!(
        !output.contains(token),
        "the link was logged by the SES transport"
    );
    let _ = std::fs::remove_dir_all(dir);
}

mod pg_only {
    use super::*;

    #[tokio::test]
    async fn two_replicas_deliver_each_queued_email_exactly_once_after_an_outage() {
        let mut moto = Moto::start().await;
        let db = Arc::new(TestDb::postgres().await);
        let one = TestServer::start_on(db.clone(), ses(&moto)).await;
        let two = TestServer::start_on(db.clone(), ses(&moto)).await;
        moto.stop().await;
        let people = invite_people(&one, "replicas.test", 30).await;
        let queued = people.len() + 1;

        // Both replicas try while SES is down; nothing is lost.
        let tried = wait_rows(&one, "tried", |row| {
            row.status == "pending" && row.attempts >= 1
        })
        .await;
        assert_eq!(tried.len(), queued);

        moto.restart().await;
        for server in [&one, &two] {
            server.clock.advance(chrono::Duration::minutes(16));
        }
        let sent = wait_rows(&two, "sent", |row| row.status == "sent").await;
        assert_eq!(sent.len(), queued);

        let messages = moto.messages().await;
        assert_eq!(messages.len(), queued, "{messages:#?}");
        for person in people.iter().chain([&"admin@replicas.test".to_owned()]) {
            assert_eq!(moto.messages_to(person).await.len(), 1, "{person}");
        }
        let mut ids: Vec<_> = sent
            .iter()
            .map(|row| row.provider_message_id.clone().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), queued);
    }

    #[tokio::test]
    async fn two_replicas_share_a_backlog_without_sending_twice() {
        let moto = Moto::start().await;
        let db = Arc::new(TestDb::postgres().await);
        // Two replicas with SES up from the start, racing for the same fresh rows.
        let one = TestServer::start_on(db.clone(), ses(&moto)).await;
        let two = TestServer::start_on(db.clone(), ses(&moto)).await;
        let people = invite_people(&one, "race.test", 40).await;
        let sent = wait_rows(&two, "sent", |row| row.status == "sent").await;
        assert_eq!(sent.len(), people.len() + 1);
        assert!(sent.iter().all(|row| row.attempts == 1));
        assert_eq!(moto.messages().await.len(), sent.len());
    }
}
