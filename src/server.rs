//! Assembles the gRPC server: the six services behind the authentication layer, per-service
//! health that follows the database, reflection v1 and v1alpha, and graceful shutdown.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::app::App;
use crate::email::outbox;
use crate::grpc;
use crate::proto;
use crate::telemetry;

/// The services whose health is reported, besides the overall `""`.
pub const SERVICE_NAMES: &[&str] = &[
    "identity.v1.AccountService",
    "identity.v1.UserService",
    "identity.v1.GroupService",
    "identity.v1.AuthService",
    "identity.v1.AccessService",
    "identity.v1.AuditService",
];

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Serves `app` on `listener` until `shutdown` resolves. Then health turns NOT_SERVING, the
/// server keeps answering for the configured delay (so load balancers drain it), stops taking
/// calls and lets in-flight calls finish within the grace period.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let (stopping_tx, stopping_rx) = watch::channel(false);

    // Health follows the database: NOT_SERVING while it does not answer. Every service is
    // registered before the first call is accepted.
    let database_up = app.store.ping().await;
    set_all(
        &reporter,
        if database_up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        },
    )
    .await;
    let monitor = {
        let reporter = reporter.clone();
        let store = app.store.clone();
        let interval = app.config.health_interval;
        let stopping = stopping_rx.clone();
        tokio::spawn(async move {
            let mut last = Some(database_up);
            loop {
                let up = tokio::time::timeout(Duration::from_secs(2), store.ping())
                    .await
                    .unwrap_or(false);
                let stopping_now = *stopping.borrow();
                if stopping_now {
                    break;
                }
                if last != Some(up) {
                    if up {
                        tracing::info!("database reachable: SERVING");
                    } else {
                        tracing::warn!("database unreachable: NOT_SERVING");
                    }
                    let status = if up {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    set_all(&reporter, status).await;
                    last = Some(up);
                }
                tokio::time::sleep(interval).await;
            }
        })
    };

    // google.rpc is registered too, so grpcurl decodes ErrorInfo, BadRequest and RetryInfo.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("reflection v1")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("reflection v1alpha")?;

    let (stop_worker, worker_stop) = watch::channel(false);
    let mut outbox_worker = outbox::spawn_worker(
        app.store.clone(),
        app.mailer.clone(),
        app.clock.clone(),
        app.config.outbox_interval,
        outbox::Policy {
            retry_horizon: app.config.email.retry_horizon,
        },
        worker_stop.clone(),
    );
    // The feed of access changes from other replicas (PostgreSQL). A tick every quarter of the
    // staleness bound proves the feed current well within it.
    let access_feed = app.store.has_feed().then(|| {
        let cache = app.access.cache().clone();
        let tick = (app.config.access_staleness / 4).max(std::time::Duration::from_millis(50));
        app.store.listen(
            tick,
            std::sync::Arc::new(move |event| cache.hear(event)),
            worker_stop.clone(),
        )
    });
    // The key set over HTTP, when asked for.
    let http = match app.config.http_listen_addr {
        Some(addr) => {
            let listener = bind(addr).await?;
            tracing::info!(addr = %listener.local_addr()?, "http listening");
            Some(tokio::spawn(crate::http::serve(
                listener,
                app.keys.clone(),
                worker_stop.clone(),
            )))
        }
        None => None,
    };
    // The audit log: this replica's chainer, and retention (one replica at a time).
    let mut chainer = crate::app::audit::spawn_chainer(app.store.clone(), worker_stop.clone());
    let retention = crate::app::audit::spawn_retention(
        app.store.clone(),
        app.clock.clone(),
        app.config.audit_retention,
        worker_stop.clone(),
    );
    let housekeeping =
        crate::housekeeping::spawn(app.store.clone(), app.clock.clone(), worker_stop);

    let delay = app.config.shutdown_delay;
    let grace = app.config.shutdown_grace;
    let (stop_tx, stop_rx) = watch::channel(false);
    let drain = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
            // The outbox worker takes no new batch; queued emails wait for another replica or
            // the next start.
            let _ = stop_worker.send(true);
            set_all(&reporter, ServingStatus::NotServing).await;
            tracing::info!(
                delay_s = delay.as_secs(),
                "shutting down: NOT_SERVING, draining"
            );
            tokio::time::sleep(delay).await;
            let _ = stop_tx.send(true);
        })
    };

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        // Headers up to this size reach the authentication layer, which refuses an oversized
        // credential in that call alone; at hyper's 16 KiB default, HTTP/2's guard against
        // CONTINUATION floods answers a 64 KiB header by closing the whole connection (GOAWAY).
        .http2_max_header_list_size(HEADER_LIST_BYTES)
        .trace_fn(telemetry::rpc_span)
        .layer(grpc::authn::AuthLayer::new(
            app.authenticator.clone(),
            app.config.max_request_bytes,
            app.config.client_ip_header.as_deref(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(grpc::account_service(&app))
        .add_service(grpc::user_service(&app))
        .add_service(grpc::group_service(&app))
        .add_service(grpc::auth_service(&app))
        .add_service(grpc::access_service(&app))
        .add_service(grpc::audit_service(&app));
    let mut server_stop = stop_rx.clone();
    let mut server = Box::pin(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    }));

    // Wait for the server; once it stops taking calls, give in-flight ones the grace period.
    let mut stopped = stop_rx;
    let told_to_stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = &mut server => result.map_err(anyhow::Error::from),
        () = told_to_stop => match tokio::time::timeout(grace, &mut server).await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => {
                tracing::warn!(grace_s = grace.as_secs(), "in-flight calls did not finish in time");
                Ok(())
            }
        },
    };
    monitor.abort();
    drain.abort();
    housekeeping.abort();
    retention.abort();
    if let Some(feed) = access_feed {
        feed.abort();
    }
    if let Some(http) = http {
        http.abort();
    }
    // Let a delivery pass under way record what it sent, so a restart does not leave claimed
    // emails to be sent again after their lease. (Aborting the drain task above dropped the
    // worker's stop sender, which stops it too when the server ended without a signal.)
    if tokio::time::timeout(grace, &mut outbox_worker)
        .await
        .is_err()
    {
        tracing::warn!("the outbox worker did not stop in time");
        outbox_worker.abort();
    }
    // Chain what this replica appended, so a stop leaves nothing for the others to pick up.
    if tokio::time::timeout(grace, &mut chainer).await.is_err() {
        chainer.abort();
    }
    result
}

/// The largest header block of a call (all its metadata) the server reads.
const HEADER_LIST_BYTES: u32 = 256 << 10;

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
