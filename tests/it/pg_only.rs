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
    let name = db.pg_name().unwrap().to_owned();
    let admin = sea_orm::Database::connect(
        std::env::var("IDENTITY_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
    )
    .await
    .unwrap();
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    wait_for(&server, "", ServingStatus::NotServing).await;
    wait_for(
        &server,
        "identity.v1.AccountService",
        ServingStatus::NotServing,
    )
    .await;

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
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
    ];

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
