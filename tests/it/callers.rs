//! Callers: access tokens (offline with GetJwks, online with ValidateToken), service tokens and
//! scopes, expiry on the server's clock, and the contract's not-yet-served RPCs.

use identity::proto;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn access_tokens_verify_offline_against_the_published_key_set() {
    let server = TestServer::start().await;
    let (_, admin) = server.create_account("Acme", "admin@acme.test").await;
    let token = server.token_for(&admin).await;

    // GetJwks needs no credentials.
    let jwks = server
        .auth()
        .get_jwks(proto::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let key = &jwks.keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );

    // A verifier that knows only the JWKS document accepts the token.
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.jwks_json).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["identity"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], admin.id);
    assert_eq!(claims["acc"], admin.account_id);
    assert_eq!(claims["role"], "account_administrator");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        15 * 60
    );
}

#[tokio::test]
async fn validate_token_answers_services_with_the_claims() {
    let server = TestServer::start().await;
    let (_, admin) = server.create_account("Acme", "admin@acme.test").await;
    server.activate(&admin).await;
    let token = server.token_for(&admin).await;
    let request = |t: &str| proto::ValidateTokenRequest {
        access_token: t.to_owned(),
    };
    let info = server
        .auth()
        .validate_token(with_token(DAM, request(&token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.user_id, admin.id);
    assert_eq!(info.account_id, admin.account_id);
    assert_eq!(info.role, proto::Role::AccountAdministrator as i32);
    assert_eq!(info.amr, ["pwd"]);
    assert_eq!(info.email, "admin@acme.test");

    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_error(
        server
            .auth()
            .validate_token(with_token(DAM, request(&tampered)))
            .await,
        Code::Unauthenticated,
        "ACCESS_TOKEN_INVALID",
    );
    assert_error(
        server
            .auth()
            .validate_token(tonic::Request::new(request(&token)))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    let status = assert_error(
        server
            .auth()
            .validate_token(with_token(DAM, request("")))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["access_token"]);
    // A token never appears in an error message.
    assert!(!status.message().contains(&token));
}

#[tokio::test]
async fn a_token_of_a_member_who_is_not_active_gets_one_answer_everywhere() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    // A live session of the invited administrator, which no login starts.
    let token = server
        .session_token(
            admin.id.parse().unwrap(),
            account.id.parse().unwrap(),
            identity::domain::roles::Role::AccountAdministrator,
            &admin.email,
        )
        .await;
    let profile = || async {
        server
            .users()
            .get_my_profile(with_token(&token, proto::GetMyProfileRequest {}))
            .await
    };
    let get_account = || async {
        server
            .accounts()
            .get_account(with_token(
                &token,
                proto::GetAccountRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await
    };
    let validate = || async {
        server
            .auth()
            .validate_token(with_token(
                DAM,
                proto::ValidateTokenRequest {
                    access_token: token.clone(),
                },
            ))
            .await
    };
    let status = assert_error(
        profile().await,
        Code::Unauthenticated,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    assert!(
        status.message().contains("not an active member"),
        "{status:?}"
    );
    assert_error(
        get_account().await,
        Code::Unauthenticated,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    assert_error(
        validate().await,
        Code::Unauthenticated,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    // Once the invitation is accepted, the same token works for every check alike.
    server.activate(&admin).await;
    profile().await.unwrap();
    get_account().await.unwrap();
    assert_eq!(validate().await.unwrap().into_inner().user_id, admin.id);
}

#[tokio::test]
async fn tokens_expire_after_fifteen_minutes_of_server_time() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let token = server.token_for(&admin).await;
    let get = || {
        with_token(
            &token,
            proto::GetAccountRequest {
                account_id: account.id.clone(),
            },
        )
    };
    server.accounts().get_account(get()).await.unwrap();

    server.clock.advance(chrono::Duration::minutes(14));
    server.accounts().get_account(get()).await.unwrap();

    server.clock.advance(chrono::Duration::minutes(1));
    assert_error(
        server.accounts().get_account(get()).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    assert_error(
        server
            .auth()
            .validate_token(with_token(
                DAM,
                proto::ValidateTokenRequest {
                    access_token: token.clone(),
                },
            ))
            .await,
        Code::Unauthenticated,
        "ACCESS_TOKEN_EXPIRED",
    );
}

#[tokio::test]
async fn tokens_signed_by_another_key_are_refused() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let foreign = other.token_for(&admin).await;
    assert_error(
        server
            .accounts()
            .get_account(with_token(
                &foreign,
                proto::GetAccountRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
}
