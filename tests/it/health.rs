//! Health: SERVING per service while the database answers; NOT_SERVING on shutdown.

use std::time::Duration;

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::*;

pub async fn status_of(server: &TestServer, service: &str) -> ServingStatus {
    let response = server
        .health()
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// Polls until `service` reports `want` (the monitor runs every 100 ms in tests).
pub async fn wait_for(server: &TestServer, service: &str, want: ServingStatus) {
    for _ in 0..100 {
        if status_of(server, service).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{service:?} never became {want:?}");
}

#[tokio::test]
async fn every_service_reports_serving() {
    let server = TestServer::start().await;
    for service in std::iter::once("").chain(identity::server::SERVICE_NAMES.iter().copied()) {
        wait_for(&server, service, ServingStatus::Serving).await;
    }
    let unknown = server
        .health()
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_before_the_server_stops() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let server = TestServer::start_on(db, |config| {
        config.shutdown_delay = Duration::from_millis(1500);
    })
    .await;
    wait_for(&server, "", ServingStatus::Serving).await;
    let mut health = server.health();
    let addr = server.addr;
    let stopping = tokio::spawn(server.shutdown());
    // During the drain delay the server still answers, and says it is going away.
    let mut seen_not_serving = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = health
            .check(HealthCheckRequest {
                service: "identity.v1.UserService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            seen_not_serving = true;
            break;
        }
    }
    assert!(
        seen_not_serving,
        "health never turned NOT_SERVING during the drain"
    );
    stopping.await.unwrap().unwrap();
    // After the drain the port is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
