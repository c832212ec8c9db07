//! Requests a caller gets wrong or an attacker crafts: bytes that are not the RPC's message, a
//! message over the configured limit, an oversized credential, and random bytes to every RPC.
//! Each is that one call's fault: a clear status for it, and nothing else on the connection ends.

use std::str::FromStr;

use bytes::{Buf, BufMut};
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::harness::*;

/// Sends its bytes as they are and reads the answer's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

/// Calls `path` with `body` as the request's bytes and `token`, if any, as the bearer.
pub async fn send(
    channel: tonic::transport::Channel,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = match token {
        Some(token) => with_token(token, body),
        None => tonic::Request::new(body),
    };
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_str(path).unwrap(),
        Raw,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn bytes_that_are_not_the_message_are_the_callers_fault() {
    let server = TestServer::start().await;
    let garbage: [&[u8]; 4] = [
        // Field 1 with wire type 7, which does not exist.
        &[0x0f],
        // A varint longer than ten bytes.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        // A string field that says 5 bytes and holds 1.
        &[0x0a, 0x05, 0x61],
        // A string field that is not UTF-8.
        &[0x0a, 0x02, 0xc3, 0x28],
    ];
    for body in garbage {
        let status = send(
            server.channel(),
            "/identity.v1.UserService/ListUsers",
            Some(OPERATOR),
            body.to_vec(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::InvalidArgument, "MESSAGE_UNDECODABLE"),
            "{body:?}: {status:?}"
        );
    }
}

#[tokio::test]
async fn a_message_over_the_configured_limit_is_resource_exhausted() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let server = TestServer::start_on(db, |config| config.max_request_bytes = 64 << 10).await;
    // An unknown length-delimited field (number 1000) of 100 KiB.
    let mut body = vec![0xc2, 0x3e];
    let data = vec![b'x'; 100 << 10];
    let mut len = data.len();
    while len >= 0x80 {
        body.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    body.push(len as u8);
    body.extend(data);
    let status = send(
        server.channel(),
        "/identity.v1.UserService/ListUsers",
        Some(OPERATOR),
        body.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
        "{status:?}"
    );
    assert!(status.message().contains("65536 bytes"), "{status:?}");
    // Under the limit, the same field is skipped as unknown: the request is read.
    body.truncate(body.len() - (50 << 10));
    let status = send(
        server.channel(),
        "/identity.v1.UserService/ListUsers",
        Some(OPERATOR),
        body,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn an_oversized_bearer_token_fails_its_own_call_only() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    let huge = "a".repeat(64 << 10);
    let request = || identity::proto::ListUsersRequest {
        account_id: account.id.clone(),
        ..Default::default()
    };
    // Ten ordinary calls on the same connection, at the same time as the oversized one.
    let ordinary = (0..10).map(|_| {
        let mut users = server.users();
        let request = request();
        async move { users.list_users(with_token(OPERATOR, request)).await }
    });
    let mut users = server.users();
    let (oversized, ordinary) = tokio::join!(
        users.list_users(with_token(&huge, request())),
        futures::future::join_all(ordinary)
    );
    let status = oversized.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unauthenticated, "CREDENTIALS_INVALID"),
        "{status:?}"
    );
    for answer in ordinary {
        assert_eq!(answer.unwrap().into_inner().users.len(), 1);
    }
    // The connection still serves.
    server
        .users()
        .list_users(with_token(OPERATOR, request()))
        .await
        .unwrap();
}

#[tokio::test]
async fn random_bytes_to_every_rpc_are_never_a_server_fault() {
    let server = TestServer::start().await;
    let (_, admin) = server.create_account("Acme", "admin@acme.test").await;
    server.activate(&admin).await;
    let person = server.token_for(&admin).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1de7);
    let mut faults = Vec::new();
    for (path, callers) in identity::grpc::callers::RPCS {
        use identity::domain::actor::Callers;
        let token = match callers {
            Callers::Persons => person.as_str(),
            Callers::Services(scopes) | Callers::PersonsAndServices(scopes)
                if scopes.contains(&identity::domain::actor::Scope::AuditWrite) =>
            {
                DAM
            }
            _ => OPERATOR,
        };
        for _ in 0..25 {
            let len = rng.gen_range(0..200);
            let body: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if let Err(status) = send(server.channel(), path, Some(token), body.clone()).await
                && matches!(status.code(), Code::Internal | Code::Unknown)
            {
                faults.push(format!("{path} {body:?}: {status:?}"));
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}
