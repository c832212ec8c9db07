//! Rules about several connections, replicas or processes on one PostgreSQL database.

use std::{sync::Arc, time::Duration};

use identity::proto::{self, CreateAccountRequest};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::cli::{Running, binary};
use crate::harness::*;
use crate::health::wait_for;

#[tokio::test]
async fn health_follows_the_database() {
    let db = Arc::new(TestDb::postgres().await);
    let server = TestServer::start_on(db.clone(), |_| {}).await;
    wait_for(
        &server,
        "identity.v1.AccountService",
        ServingStatus::Serving,
    )
    .await;

    // Cut the service off its database: no new connections, existing ones killed.
    db.cut_off().await;
    wait_for(&server, "", ServingStatus::NotServing).await;
    wait_for(
        &server,
        "identity.v1.AccountService",
        ServingStatus::NotServing,
    )
    .await;

    db.allow_connections(true).await;
    wait_for(&server, "", ServingStatus::Serving).await;
    wait_for(
        &server,
        "identity.v1.AccountService",
        ServingStatus::Serving,
    )
    .await;
}

#[tokio::test]
async fn concurrent_migrations_wait_for_each_other() {
    let db = TestDb::postgres().await;
    let stores = [db.store().await, db.store().await, db.store().await];
    let results = futures::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for result in results {
        result.unwrap();
    }
    assert!(stores[0].pending_migrations().await.unwrap().is_empty());
    // Applying again changes nothing.
    stores[1].migrate().await.unwrap();
}

#[tokio::test]
async fn concurrent_retries_of_one_create_make_one_account() {
    let db = Arc::new(TestDb::postgres().await);
    let one = TestServer::start_on(db.clone(), |_| {}).await;
    let two = TestServer::start_on(db.clone(), |_| {}).await;
    let request = CreateAccountRequest {
        name: "Once".into(),
        administrator_email: "once@example.com".into(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let calls = (0..10).map(|i| {
        let mut client = if i % 2 == 0 {
            one.accounts()
        } else {
            two.accounts()
        };
        let request = request.clone();
        async move { client.create_account(with_token(OPERATOR, request)).await }
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().into_inner().account.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let count = identity::store::entities::account::Entity::find()
        .count(one.app.store.connection())
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn production_mode_refuses_an_unmigrated_database_and_prints_no_secrets() {
    let db = TestDb::postgres().await;
    let identity::config::Database::Postgres { url } = &db.database else {
        unreachable!()
    };
    let env = [
        ("IDENTITY_DATABASE_URL", url.expose().to_owned()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_SECRET_KEY", "c2VjcmV0LWtleS1vZi10aGUtcHJvZHVjdGlvbi10ZXN0LXJ1bg==".to_owned()),
        (
            "IDENTITY_SIGNING_KEYS",
            serde_json::json!([{
                "kid": "prod-1",
                "private_key_pem": identity::auth::keys::generate_ed25519("prod-1").unwrap().private_key_pem.expose(),
            }])
            .to_string(),
        ),
        ("IDENTITY_MAILER", "console".to_owned()),
    ];

    // Without a mailer named, production mode does not start: the console one, the embedded
    // mode's default, would print live links and codes into the log.
    let unnamed = tokio::process::Command::new(binary())
        .arg("serve")
        .envs(
            env.iter()
                .filter(|(k, _)| *k != "IDENTITY_MAILER")
                .map(|(k, v)| (*k, v.as_str())),
        )
        .env_remove("IDENTITY_MAILER")
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .unwrap();
    assert!(!unnamed.status.success());
    let stderr = String::from_utf8_lossy(&unnamed.stderr);
    assert!(stderr.contains("IDENTITY_MAILER must be set"), "{stderr}");

    let refused = tokio::process::Command::new(binary())
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("identity migrate"), "{stderr}");
    assert!(
        !stderr.contains(url.expose()),
        "the database URL leaked: {stderr}"
    );

    let migrated = tokio::process::Command::new(binary())
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let running = Running::start(&env).await;
    let output = running.stop().await;
    assert!(!output.contains("BEGIN PRIVATE KEY"), "{output}");
    assert!(!output.contains("Bearer"), "{output}");
    assert!(!output.contains(url.expose()), "{output}");
    // The console mailer, asked for by name, is warned about.
    assert!(
        output.contains("IDENTITY_MAILER=console: every email"),
        "{output}"
    );
    // Nothing was created by the service on its own.
    let store = db.store().await;
    let accounts = identity::store::entities::account::Entity::find()
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(accounts, 0);
    let _ = Duration::ZERO;
    let _ = proto::GetJwksRequest {};
}

/// Two replicas of the service on one database, and an account with a Restricted member on the
/// first. The staleness bound is the default, 1 s.
async fn two_replicas() -> (crate::sharing::Acme, TestServer, Arc<TestDb>) {
    let db = Arc::new(TestDb::postgres().await);
    let a = TestServer::start_on(db.clone(), |_| {}).await;
    let b = TestServer::start_on(db.clone(), |_| {}).await;
    (crate::sharing::Acme::on(a).await, b, db)
}

/// The level of `user_id` on a file under folder `shared`, asked of `server` with `token`.
async fn level_on(
    server: &TestServer,
    acme: &crate::sharing::Acme,
    token: &str,
) -> proto::AccessLevel {
    let response = crate::sharing::access(server)
        .check_access(with_token(
            DAM,
            proto::CheckAccessRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                target: Some(proto::check_access_request::Target::Resource(
                    crate::sharing::placed(crate::sharing::file("f"), &["shared"]),
                )),
                consistency_token: token.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    proto::AccessLevel::try_from(response.level).unwrap()
}

async fn revoke(acme: &crate::sharing::Acme, share: &str) -> String {
    crate::sharing::access(&acme.server)
        .revoke_share(with_token(
            DAM,
            proto::RevokeShareRequest {
                account_id: acme.account.clone(),
                share_id: share.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .consistency_token
}

/// The default staleness bound, and a moment past it (a margin for a busy machine).
const BOUND: Duration = Duration::from_millis(1000);
const PAST_BOUND: Duration = Duration::from_millis(BOUND.as_millis() as u64 + 300);

#[tokio::test]
async fn a_revoke_on_one_replica_is_seen_on_another_with_its_token_at_once_and_within_the_bound_without()
 {
    let (acme, b, _db) = two_replicas().await;
    let shared = crate::sharing::folder("shared");
    let (share, token) = acme
        .share(
            shared.clone(),
            crate::sharing::to_user(&acme.rita.id),
            proto::AccessLevel::Manage,
        )
        .await;
    // B loads the account with the share.
    assert_eq!(
        level_on(&b, &acme, &token).await,
        proto::AccessLevel::Manage
    );
    assert_eq!(level_on(&b, &acme, "").await, proto::AccessLevel::Manage);

    // With the revoke's token, B answers from data at least that fresh: denied at once.
    let revoked = revoke(&acme, &share).await;
    assert_eq!(
        level_on(&b, &acme, &revoked).await,
        proto::AccessLevel::None
    );
    // The replica that made the change sees it at once, without a token.
    let (share, _) = acme
        .share(
            shared.clone(),
            crate::sharing::to_user(&acme.rita.id),
            proto::AccessLevel::View,
        )
        .await;
    assert_eq!(
        level_on(&acme.server, &acme, "").await,
        proto::AccessLevel::View
    );

    // Without a token, B is never staler than the bound.
    revoke(&acme, &share).await;
    tokio::time::sleep(PAST_BOUND).await;
    assert_eq!(level_on(&b, &acme, "").await, proto::AccessLevel::None);
}

#[tokio::test]
async fn a_dropped_listen_connection_does_not_leave_a_replica_stale_past_the_bound() {
    let (acme, b, db) = two_replicas().await;
    let (share, token) = acme
        .share(
            crate::sharing::folder("shared"),
            crate::sharing::to_user(&acme.rita.id),
            proto::AccessLevel::Contribute,
        )
        .await;
    assert_eq!(
        level_on(&b, &acme, &token).await,
        proto::AccessLevel::Contribute
    );

    // Kill every LISTEN connection and let no new connection in: the replicas cannot listen
    // again, so the revoke below is never notified (the pools keep their open connections).
    db.allow_connections(false).await;
    let admin = admin_connection().await;
    let name = db.pg_name().unwrap().to_owned();
    let killed = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND query ILIKE 'LISTEN%'"
            ),
        ))
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "both replicas listen");
    // Until the killed backends are gone (they could still deliver a notification).
    for _ in 0..100 {
        let listening = admin
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = '{name}' AND query ILIKE 'LISTEN%'"
                ),
            ))
            .await
            .unwrap();
        if listening.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    revoke(&acme, &share).await;

    // B keeps answering, and within the bound it has caught up by polling.
    tokio::time::sleep(PAST_BOUND).await;
    assert_eq!(level_on(&b, &acme, "").await, proto::AccessLevel::None);
    db.allow_connections(true).await;
}

#[tokio::test]
async fn a_session_ended_on_one_replica_is_refused_there_at_once_and_on_another_within_the_bound() {
    let (acme, b, _db) = two_replicas().await;
    let token = acme.server.token_for(&acme.rita).await;
    let profile = |server: &TestServer| {
        let mut users = server.users();
        let token = token.clone();
        async move {
            users
                .get_my_profile(with_token(&token, proto::GetMyProfileRequest {}))
                .await
        }
    };
    // Both replicas accept the token (and hold the account's data).
    profile(&acme.server).await.unwrap();
    profile(&b).await.unwrap();

    acme.server
        .auth()
        .logout(with_token(&token, proto::LogoutRequest {}))
        .await
        .unwrap();
    assert_error(
        profile(&acme.server).await,
        tonic::Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    tokio::time::sleep(PAST_BOUND).await;
    assert_error(
        profile(&b).await,
        tonic::Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

#[tokio::test]
async fn a_lost_database_answers_unavailable_with_retry_info_not_internal() {
    use tonic_types::StatusExt;
    let db = Arc::new(TestDb::postgres().await);
    let server = TestServer::start_on(db.clone(), |_| {}).await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    // Cut the service off: its open connections die, new ones are refused.
    db.cut_off().await;
    // A read and a write, each on a connection that died or cannot be opened.
    for _ in 0..2 {
        let read = server
            .accounts()
            .get_account(with_token(
                OPERATOR,
                proto::GetAccountRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await;
        let status = assert_error(read, tonic::Code::Unavailable, "UNAVAILABLE");
        assert!(status.get_error_details().retry_info().is_some());
        let write = server
            .users()
            .create_user(with_token(
                OPERATOR,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: "new@acme.test".into(),
                    role: proto::Role::Developer as i32,
                    ..Default::default()
                },
            ))
            .await;
        let status = assert_error(write, tonic::Code::Unavailable, "UNAVAILABLE");
        assert!(status.get_error_details().retry_info().is_some());
    }
    db.allow_connections(true).await;
    // Back: the same write lands.
    let mut landed = false;
    for _ in 0..50 {
        let write = server
            .users()
            .create_user(with_token(
                OPERATOR,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: "new@acme.test".into(),
                    role: proto::Role::Developer as i32,
                    ..Default::default()
                },
            ))
            .await;
        if write.is_ok() {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(landed, "the service did not recover");
}
