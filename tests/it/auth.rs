//! AuthService: invitations, password login with email codes, throttling, sessions with
//! rotating refresh tokens, resets, password changes and personal MFA. Time moves on the
//! server's manual clock; emails are read from the outbox before delivery.

use std::sync::Arc;
use std::time::Duration;

use identity::proto::{self, login_response::Outcome};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::*;

pub const PASSWORD: &str = "lantern orbit canyon 42";
const NEW_PASSWORD: &str = "quiet harbor violet 77";

/// A server whose outbox is not delivered during the test, so emails keep their links and codes.
async fn server() -> TestServer {
    TestServer::start_on(Arc::new(TestDb::new().await), |config| {
        config.outbox_interval = Duration::from_secs(3600);
    })
    .await
}

/// The secret (`link` token or `code`) of the newest `kind` email to `to`.
pub async fn secret_in_email(server: &TestServer, to: &str, kind: &str) -> String {
    let emails = server.emails_to(to).await;
    let email = emails
        .iter()
        .rev()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} email to {to}: {emails:?}"));
    let payload: serde_json::Value = serde_json::from_str(&email.payload).unwrap();
    if let Some(code) = payload["code"].as_str() {
        return code.to_owned();
    }
    let link = payload["link"].as_str().unwrap();
    link.split("token=").nth(1).unwrap().to_owned()
}

/// An account whose administrator accepted the invitation with `PASSWORD`; returns the account
/// and the administrator's email.
pub async fn account_with_admin(server: &TestServer, email: &str) -> (proto::Account, proto::User) {
    let (account, admin) = server.create_account("Acme", email).await;
    let token = secret_in_email(server, email, "invitation").await;
    let accepted = server
        .auth()
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: token,
            password: PASSWORD.into(),
            display_name: "Ada Admin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.user.as_ref().unwrap().id, admin.id);
    (account, accepted.user.unwrap())
}

pub fn login(email: &str, password: &str) -> proto::LoginRequest {
    proto::LoginRequest {
        email: email.into(),
        password: password.into(),
        account_id: String::new(),
    }
}

/// A Developer invited by `admin_token` into `account_id`.
async fn invite_developer(
    server: &TestServer,
    admin_token: &str,
    account_id: &str,
    email: &str,
) -> proto::User {
    server
        .users()
        .create_user(with_token(
            admin_token,
            proto::CreateUserRequest {
                account_id: account_id.to_owned(),
                email: email.to_owned(),
                role: proto::Role::Developer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

async fn tokens_of(server: &TestServer, request: proto::LoginRequest) -> proto::SessionTokens {
    match server
        .auth()
        .login(request)
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        Outcome::Tokens(tokens) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    }
}

async fn profile(server: &TestServer, access_token: &str) -> Result<proto::User, tonic::Status> {
    server
        .users()
        .get_my_profile(with_token(access_token, proto::GetMyProfileRequest {}))
        .await
        .map(|r| r.into_inner().user.unwrap())
}

#[tokio::test]
async fn an_invitation_link_sets_the_password_and_logs_in_once() {
    let server = server().await;
    let (account, admin) = server.create_account("Acme", "ada@acme.test").await;
    let token = secret_in_email(&server, "ada@acme.test", "invitation").await;

    let described = server
        .auth()
        .get_invitation(proto::GetInvitationRequest {
            invitation_token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (described.email.as_str(), described.account_name.as_str()),
        ("ada@acme.test", "Acme")
    );
    assert!(!described.has_password);

    // The password policy applies, and a refused password spends nothing.
    for (weak, rule) in [
        ("short", "at least 8"),
        ("password123", "too common"),
        ("ada-acme-vault-key", "email"),
    ] {
        let status = assert_error(
            server
                .auth()
                .accept_invitation(proto::AcceptInvitationRequest {
                    invitation_token: token.clone(),
                    password: weak.into(),
                    display_name: String::new(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["password"]);
        assert!(
            status.message().contains(rule),
            "{weak}: {}",
            status.message()
        );
        assert!(
            !status.message().contains(weak),
            "the password is never echoed"
        );
    }

    let accepted = server
        .auth()
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: token.clone(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let user = accepted.user.unwrap();
    assert_eq!(user.status, proto::MembershipStatus::Active as i32);
    assert!(user.has_password);
    let tokens = accepted.tokens.unwrap();
    assert_eq!(tokens.account_id, account.id);
    assert_eq!(
        profile(&server, &tokens.access_token).await.unwrap().id,
        admin.id
    );

    // Single use.
    assert_error(
        server
            .auth()
            .accept_invitation(proto::AcceptInvitationRequest {
                invitation_token: token,
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "INVITATION_INVALID",
    );
    // And the person can now log in with the password.
    tokens_of(&server, login("ADA@acme.test", PASSWORD)).await;
}

#[tokio::test]
async fn an_expired_invitation_says_so_and_a_resend_replaces_the_link() {
    let server = server().await;
    let (account, admin) = account_with_admin(&server, "ada@acme.test").await;
    let admin_token = tokens_of(&server, login("ada@acme.test", PASSWORD))
        .await
        .access_token;
    let user = invite_developer(&server, &admin_token, &account.id, "late@acme.test").await;
    let old = secret_in_email(&server, "late@acme.test", "invitation").await;
    server
        .clock
        .advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let accept = |token: String| proto::AcceptInvitationRequest {
        invitation_token: token,
        password: PASSWORD.into(),
        display_name: String::new(),
    };
    let status = assert_error(
        server.auth().accept_invitation(accept(old.clone())).await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
    assert!(
        status.message().contains("administrator"),
        "{}",
        status.message()
    );

    // The administrator resends (the admin's session is older than 7 days by now: log in again).
    let admin_token = tokens_of(&server, login("ada@acme.test", PASSWORD))
        .await
        .access_token;
    server
        .users()
        .resend_invitation(with_token(
            &admin_token,
            proto::ResendInvitationRequest {
                account_id: account.id.clone(),
                user_id: user.id.clone(),
            },
        ))
        .await
        .unwrap();
    let new = secret_in_email(&server, "late@acme.test", "invitation").await;
    assert_ne!(new, old);
    assert_error(
        server.auth().accept_invitation(accept(old)).await,
        Code::FailedPrecondition,
        "INVITATION_INVALID",
    );
    server.auth().accept_invitation(accept(new)).await.unwrap();
    let _ = admin;
}

#[tokio::test]
async fn login_failures_are_one_generic_answer() {
    let server = server().await;
    let (account, admin) = account_with_admin(&server, "ada@acme.test").await;
    // A second member, then disabled.
    let admin_token = tokens_of(&server, login("ada@acme.test", PASSWORD))
        .await
        .access_token;
    let bob = invite_developer(&server, &admin_token, &account.id, "bob@acme.test").await;
    let bob_link = secret_in_email(&server, "bob@acme.test", "invitation").await;
    server
        .auth()
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: bob_link,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap();
    server
        .users()
        .disable_user(with_token(
            &admin_token,
            proto::DisableUserRequest {
                account_id: account.id.clone(),
                user_id: bob.id.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();

    let mut messages = Vec::new();
    for request in [
        login("nobody@acme.test", PASSWORD),
        login("ada@acme.test", "wrong password here"),
        login("bob@acme.test", PASSWORD),
    ] {
        let status = assert_error(
            server.auth().login(request).await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
        messages.push(status.message().to_owned());
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    let _ = admin;
}

#[tokio::test]
async fn five_failures_pause_logins_with_retry_info() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    wrong_passwords(&server, "ada@acme.test", 5).await;
    // Even the right password waits now.
    let status = assert_error(
        server.auth().login(login("ada@acme.test", PASSWORD)).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    let wait = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert_eq!(wait, Duration::from_secs(30));
    server.clock.advance(chrono::Duration::seconds(31));
    // One more failure doubles the wait.
    assert_error(
        server
            .auth()
            .login(login("ada@acme.test", "wrong password here"))
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let status = assert_error(
        server.auth().login(login("ada@acme.test", PASSWORD)).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
    assert_eq!(
        status
            .get_error_details()
            .retry_info()
            .unwrap()
            .retry_delay
            .unwrap(),
        Duration::from_secs(60)
    );
    server.clock.advance(chrono::Duration::seconds(61));
    tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    // Success forgets the failures.
    assert_error(
        server
            .auth()
            .login(login("ada@acme.test", "wrong password here"))
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
}

/// `count` wrong passwords for `email`, each refused as invalid.
async fn wrong_passwords(server: &TestServer, email: &str, count: usize) {
    for _ in 0..count {
        assert_error(
            server
                .auth()
                .login(login(email, "wrong password here"))
                .await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
}

#[tokio::test]
async fn a_login_records_its_time_and_forgets_earlier_failures() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    wrong_passwords(&server, "ada@acme.test", 4).await;
    server.clock.advance(chrono::Duration::minutes(1));
    let tokens = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let me = profile(&server, &tokens.access_token).await.unwrap();
    assert_eq!(
        me.last_login_time.map(|t| t.seconds),
        Some(server.clock.now_utc().timestamp())
    );
    // Had the failures been kept, these would be refused: the login above was the fifth attempt.
    wrong_passwords(&server, "ada@acme.test", 4).await;
    let tokens = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;

    // The same when the password leads to an email code instead of a session.
    server
        .auth()
        .enable_mfa(with_token(&tokens.access_token, proto::EnableMfaRequest {}))
        .await
        .unwrap();
    wrong_passwords(&server, "ada@acme.test", 4).await;
    challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    wrong_passwords(&server, "ada@acme.test", 4).await;
    challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
}

#[tokio::test]
async fn a_right_password_outside_login_forgets_failures_too() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let tokens = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    // Turning MFA off asks for the password: five right ones count as no failure.
    for _ in 0..5 {
        server
            .auth()
            .enable_mfa(with_token(&tokens.access_token, proto::EnableMfaRequest {}))
            .await
            .unwrap();
        server
            .auth()
            .disable_mfa(with_token(
                &tokens.access_token,
                proto::DisableMfaRequest {
                    current_password: PASSWORD.into(),
                },
            ))
            .await
            .unwrap();
    }
    wrong_passwords(&server, "ada@acme.test", 4).await;
    tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
}

#[tokio::test]
async fn parallel_guesses_get_no_more_than_five_evaluations() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let calls = (0..20).map(|_| {
        let mut auth = server.auth();
        async move {
            auth.login(login("ada@acme.test", "wrong password here"))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let evaluated = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .is_some_and(|s| reason(s) == "INVALID_CREDENTIALS")
        })
        .count();
    let throttled = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .is_some_and(|s| reason(s) == "LOGIN_THROTTLED")
        })
        .count();
    assert_eq!((evaluated, throttled), (5, 15));
}

#[tokio::test]
async fn parallel_right_passwords_all_log_in() {
    // Attempts being checked are not failures: twenty at once with the right password wait for
    // each other's checks and all get a session.
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let calls = (0..20).map(|_| {
        let mut auth = server.auth();
        async move { auth.login(login("ada@acme.test", PASSWORD)).await }
    });
    let results = futures::future::join_all(calls).await;
    let refused: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(reason))
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let sessions: std::collections::HashSet<_> = results
        .into_iter()
        .map(|r| match r.unwrap().into_inner().outcome.unwrap() {
            Outcome::Tokens(tokens) => tokens.session_id,
            other => panic!("expected tokens, got {other:?}"),
        })
        .collect();
    assert_eq!(sessions.len(), 20);
    // And the throttle still counts: five wrong guesses pause the next.
    wrong_passwords(&server, "ada@acme.test", 5).await;
    assert_error(
        server.auth().login(login("ada@acme.test", PASSWORD)).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_ends_the_session() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let first = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let refresh = |token: &str| proto::RefreshSessionRequest {
        refresh_token: token.to_owned(),
    };
    let second = server
        .auth()
        .refresh_session(refresh(&first.refresh_token))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(profile(&server, &second.access_token).await.is_ok());

    // The spent token again: the whole session ends, the newest token included.
    assert_error(
        server
            .auth()
            .refresh_session(refresh(&first.refresh_token))
            .await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_REUSED",
    );
    assert_error(
        server
            .auth()
            .refresh_session(refresh(&second.refresh_token))
            .await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        profile(&server, &second.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.auth().refresh_session(refresh("rt_unknown")).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_INVALID",
    );
}

#[tokio::test]
async fn logout_is_seen_by_validate_token_at_once() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let tokens = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let validate = || {
        with_token(
            DAM,
            proto::ValidateTokenRequest {
                access_token: tokens.access_token.clone(),
            },
        )
    };
    let info = server
        .auth()
        .validate_token(validate())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.amr, ["pwd"]);
    server
        .auth()
        .logout(with_token(&tokens.access_token, proto::LogoutRequest {}))
        .await
        .unwrap();
    let status = assert_error(
        server.auth().validate_token(validate()).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .get("subject")
            .map(String::as_str),
        Some("access_token")
    );
    assert_error(
        server
            .auth()
            .refresh_session(proto::RefreshSessionRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    // People do not validate tokens; services do.
    let other = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    assert_error(
        server
            .auth()
            .validate_token(with_token(
                &other.access_token,
                proto::ValidateTokenRequest {
                    access_token: other.access_token.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_by_their_owner() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let a = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    server.clock.advance(chrono::Duration::seconds(1));
    let b = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let sessions = server
        .auth()
        .list_my_sessions(with_token(
            &b.access_token,
            proto::ListMySessionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    // Newest first; the acceptance's session is listed too.
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0].id, b.session_id);
    assert!(sessions[0].current && !sessions[1].current);
    assert_eq!(sessions[0].account_name, "Acme");
    server
        .auth()
        .revoke_session(with_token(
            &b.access_token,
            proto::RevokeSessionRequest {
                session_id: a.session_id.clone(),
            },
        ))
        .await
        .unwrap();
    assert_error(
        profile(&server, &a.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server
            .auth()
            .revoke_session(with_token(
                &b.access_token,
                proto::RevokeSessionRequest {
                    session_id: a.session_id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
}

/// Logs in and passes the emailed code; returns the outcome of VerifyMfaChallenge.
async fn challenge_of(server: &TestServer, request: proto::LoginRequest) -> proto::MfaChallenge {
    match server
        .auth()
        .login(request)
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        Outcome::MfaChallenge(challenge) => challenge,
        other => panic!("expected an email code challenge, got {other:?}"),
    }
}

fn verify(challenge: &proto::MfaChallenge, code: &str) -> proto::VerifyMfaChallengeRequest {
    proto::VerifyMfaChallengeRequest {
        challenge_id: challenge.challenge_id.clone(),
        code: code.into(),
    }
}

#[tokio::test]
async fn personal_mfa_asks_for_the_emailed_code() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let tokens = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let me = server
        .auth()
        .enable_mfa(with_token(&tokens.access_token, proto::EnableMfaRequest {}))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(me.mfa_enabled);

    let challenge = challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    assert_eq!(challenge.masked_email, "a***@a***.test");
    assert_eq!(
        (challenge.attempts_remaining, challenge.resends_remaining),
        (5, 5)
    );
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    assert_eq!(code.len(), 6);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let status = assert_error(
        server
            .auth()
            .verify_mfa_challenge(verify(&challenge, wrong))
            .await,
        Code::Unauthenticated,
        "MFA_CODE_INVALID",
    );
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .get("attempts_remaining")
            .map(String::as_str),
        Some("4")
    );
    let done = server
        .auth()
        .verify_mfa_challenge(verify(&challenge, &code))
        .await
        .unwrap()
        .into_inner();
    let tokens = match done.outcome.unwrap() {
        proto::verify_mfa_challenge_response::Outcome::Tokens(t) => t,
        other => panic!("{other:?}"),
    };
    let info = server
        .auth()
        .validate_token(with_token(
            DAM,
            proto::ValidateTokenRequest {
                access_token: tokens.access_token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.amr, ["pwd", "otp"]);
    // Single use.
    assert_error(
        server
            .auth()
            .verify_mfa_challenge(verify(&challenge, &code))
            .await,
        Code::FailedPrecondition,
        "MFA_CHALLENGE_EXPIRED",
    );
}

#[tokio::test]
async fn codes_expire_die_after_five_wrong_tries_and_only_the_newest_counts() {
    let server = server().await;
    let (account, _) = account_with_admin(&server, "ada@acme.test").await;
    let admin = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    // The account enforces MFA now.
    server
        .accounts()
        .update_account_settings(with_token(
            &admin.access_token,
            proto::UpdateAccountSettingsRequest {
                account_id: account.id.clone(),
                settings: Some(proto::AccountSettings { enforce_mfa: true }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enforce_mfa".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    // Expiry after 10 minutes.
    let challenge = challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    server.clock.advance(chrono::Duration::minutes(10));
    assert_error(
        server
            .auth()
            .verify_mfa_challenge(verify(&challenge, &code))
            .await,
        Code::FailedPrecondition,
        "MFA_CHALLENGE_EXPIRED",
    );

    // Resends: not within 30 s; the old code dies; at most 5.
    let challenge = challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    let first = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    let resend = || proto::ResendMfaCodeRequest {
        challenge_id: challenge.challenge_id.clone(),
    };
    let status = assert_error(
        server.auth().resend_mfa_code(resend()).await,
        Code::ResourceExhausted,
        "MFA_RESEND_TOO_SOON",
    );
    assert_eq!(
        status.get_error_details().retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(30))
    );
    let mut newest = first.clone();
    for left in (0..5).rev() {
        server.clock.advance(chrono::Duration::seconds(30));
        let again = server
            .auth()
            .resend_mfa_code(resend())
            .await
            .unwrap()
            .into_inner()
            .mfa_challenge
            .unwrap();
        assert_eq!(again.resends_remaining, left);
        newest = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    }
    server.clock.advance(chrono::Duration::seconds(30));
    assert_error(
        server.auth().resend_mfa_code(resend()).await,
        Code::ResourceExhausted,
        "MFA_RESEND_LIMIT_REACHED",
    );
    if first != newest {
        assert_error(
            server
                .auth()
                .verify_mfa_challenge(verify(&challenge, &first))
                .await,
            Code::Unauthenticated,
            "MFA_CODE_INVALID",
        );
    }
    server
        .auth()
        .verify_mfa_challenge(verify(&challenge, &newest))
        .await
        .unwrap();

    // Five wrong codes kill a challenge, even for the right code afterwards.
    let challenge = challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_error(
            server
                .auth()
                .verify_mfa_challenge(verify(&challenge, wrong))
                .await,
            Code::Unauthenticated,
            "MFA_CODE_INVALID",
        );
    }
    assert_error(
        server
            .auth()
            .verify_mfa_challenge(verify(&challenge, &code))
            .await,
        Code::FailedPrecondition,
        "MFA_CHALLENGE_EXPIRED",
    );

    // Enforced MFA cannot be turned off, and the profile shows it.
    assert_error(
        server
            .auth()
            .disable_mfa(with_token(
                &admin.access_token,
                proto::DisableMfaRequest {
                    current_password: PASSWORD.into(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "MFA_ENFORCED",
    );
    assert!(
        profile(&server, &admin.access_token)
            .await
            .unwrap()
            .mfa_enforced
    );
}

#[tokio::test]
async fn a_person_in_several_accounts_passes_the_code_then_picks_one() {
    let server = server().await;
    let (first, _) = account_with_admin(&server, "ada@acme.test").await;
    // A second account with the same person as administrator.
    let (second, _) = server.create_account("Zenith", "ada@acme.test").await;
    let link = secret_in_email(&server, "ada@acme.test", "added_to_account").await;
    server
        .auth()
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: link,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap();

    let challenge = challenge_of(&server, login("ada@acme.test", PASSWORD)).await;
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    let selection = match server
        .auth()
        .verify_mfa_challenge(verify(&challenge, &code))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        proto::verify_mfa_challenge_response::Outcome::AccountSelection(s) => s,
        other => panic!("{other:?}"),
    };
    let names: Vec<_> = selection
        .accounts
        .iter()
        .map(|a| a.account_name.as_str())
        .collect();
    assert_eq!(names, ["Acme", "Zenith"]);
    let select = |account_id: &str| proto::SelectAccountRequest {
        selection_token: selection.selection_token.clone(),
        account_id: account_id.to_owned(),
    };
    let tokens = server
        .auth()
        .select_account(select(&second.id))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(tokens.account_id, second.id);
    assert_error(
        server.auth().select_account(select(&first.id)).await,
        Code::FailedPrecondition,
        "ACCOUNT_SELECTION_EXPIRED",
    );
    // Naming the account up front still asks the code (several accounts), then logs in there.
    let named = challenge_of(
        &server,
        proto::LoginRequest {
            account_id: first.id.clone(),
            ..login("ada@acme.test", PASSWORD)
        },
    )
    .await;
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    match server
        .auth()
        .verify_mfa_challenge(verify(&named, &code))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        proto::verify_mfa_challenge_response::Outcome::Tokens(t) => {
            assert_eq!(t.account_id, first.id)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_password_reset_link_sets_a_new_password_and_ends_every_session() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let before = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    // The same empty answer for known and unknown emails.
    for email in ["ada@acme.test", "nobody@acme.test"] {
        server
            .auth()
            .request_password_reset(proto::RequestPasswordResetRequest {
                email: email.into(),
            })
            .await
            .unwrap();
    }
    // The email is queued in the background.
    let mut token = None;
    for _ in 0..50 {
        if server
            .emails_to("ada@acme.test")
            .await
            .iter()
            .any(|e| e.kind == "password_reset")
        {
            token = Some(secret_in_email(&server, "ada@acme.test", "password_reset").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("a reset email");
    assert!(server.emails_to("nobody@acme.test").await.is_empty());
    let reset = |password: &str| proto::ResetPasswordRequest {
        reset_token: token.clone(),
        new_password: password.into(),
    };
    assert_error(
        server.auth().reset_password(reset("password")).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    server
        .auth()
        .reset_password(reset(NEW_PASSWORD))
        .await
        .unwrap();
    assert_error(
        profile(&server, &before.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.auth().login(login("ada@acme.test", PASSWORD)).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    tokens_of(&server, login("ada@acme.test", NEW_PASSWORD)).await;
    assert_error(
        server
            .auth()
            .reset_password(reset("another fine passphrase 9"))
            .await,
        Code::FailedPrecondition,
        "RESET_TOKEN_INVALID",
    );
    assert!(
        server
            .emails_to("ada@acme.test")
            .await
            .iter()
            .any(|e| e.kind == "password_changed")
    );
}

#[tokio::test]
async fn reset_links_expire_after_an_hour() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    server
        .auth()
        .request_password_reset(proto::RequestPasswordResetRequest {
            email: "ada@acme.test".into(),
        })
        .await
        .unwrap();
    let mut token = None;
    for _ in 0..50 {
        if server
            .emails_to("ada@acme.test")
            .await
            .iter()
            .any(|e| e.kind == "password_reset")
        {
            token = Some(secret_in_email(&server, "ada@acme.test", "password_reset").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.clock.advance(chrono::Duration::hours(1));
    assert_error(
        server
            .auth()
            .reset_password(proto::ResetPasswordRequest {
                reset_token: token.unwrap(),
                new_password: NEW_PASSWORD.into(),
            })
            .await,
        Code::FailedPrecondition,
        "RESET_TOKEN_EXPIRED",
    );
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let server = server().await;
    account_with_admin(&server, "ada@acme.test").await;
    let here = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let elsewhere = tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let change = |current: &str, new: &str| {
        with_token(
            &here.access_token,
            proto::ChangePasswordRequest {
                current_password: current.into(),
                new_password: new.into(),
            },
        )
    };
    let status = assert_error(
        server
            .auth()
            .change_password(change("not it at all", NEW_PASSWORD))
            .await,
        Code::InvalidArgument,
        "CURRENT_PASSWORD_INCORRECT",
    );
    assert_eq!(violated_fields(&status), ["current_password"]);
    let changed = server
        .auth()
        .change_password(change(PASSWORD, NEW_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        changed.revoked_session_count, 2,
        "the other login and the acceptance's session"
    );
    assert!(profile(&server, &here.access_token).await.is_ok());
    assert_error(
        profile(&server, &elsewhere.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    tokens_of(&server, login("ada@acme.test", NEW_PASSWORD)).await;
}

#[tokio::test]
async fn old_password_hashes_are_upgraded_at_login() {
    use argon2::PasswordHasher as _;
    let server = server().await;
    let (_, admin) = account_with_admin(&server, "ada@acme.test").await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes())
    .unwrap()
    .to_string();
    server
        .app
        .store
        .set_password_hash(admin.id.parse().unwrap(), &weak, server.clock.now_utc())
        .await
        .unwrap();
    tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    let stored = server
        .app
        .store
        .person(admin.id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored
            .password_hash
            .unwrap()
            .as_str()
            .contains("m=19456,t=2,p=1")
    );
}

#[tokio::test]
async fn disabling_or_removing_a_member_ends_their_sessions_at_once() {
    let server = server().await;
    let (account, _) = account_with_admin(&server, "ada@acme.test").await;
    let admin = tokens_of(&server, login("ada@acme.test", PASSWORD))
        .await
        .access_token;
    let mut members = Vec::new();
    for email in ["bob@acme.test", "cy@acme.test"] {
        let user = invite_developer(&server, &admin, &account.id, email).await;
        let link = secret_in_email(&server, email, "invitation").await;
        server
            .auth()
            .accept_invitation(proto::AcceptInvitationRequest {
                invitation_token: link,
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .unwrap();
        let tokens = tokens_of(&server, login(email, PASSWORD)).await;
        assert!(profile(&server, &tokens.access_token).await.is_ok());
        members.push((user, tokens));
    }
    let (bob, bob_tokens) = &members[0];
    let (cy, cy_tokens) = &members[1];
    server
        .users()
        .disable_user(with_token(
            &admin,
            proto::DisableUserRequest {
                account_id: account.id.clone(),
                user_id: bob.id.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    server
        .users()
        .delete_user(with_token(
            &admin,
            proto::DeleteUserRequest {
                account_id: account.id.clone(),
                user_id: cy.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for tokens in [bob_tokens, cy_tokens] {
        assert_error(
            profile(&server, &tokens.access_token).await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
        assert_error(
            server
                .auth()
                .validate_token(with_token(
                    DAM,
                    proto::ValidateTokenRequest {
                        access_token: tokens.access_token.clone(),
                    },
                ))
                .await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
        assert_error(
            server
                .auth()
                .refresh_session(proto::RefreshSessionRequest {
                    refresh_token: tokens.refresh_token.clone(),
                })
                .await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
    }
}

#[tokio::test]
async fn a_nul_byte_in_an_email_is_an_unknown_email_not_an_error() {
    let server = server().await;
    let (account, _) = account_with_admin(&server, "ada@acme.test").await;
    // A NUL byte no stored address can hold: Login answers as for any unknown email.
    for email in ["a\u{0}b@example.com", "ada@acme.test\u{0}"] {
        assert_error(
            server.auth().login(login(email, PASSWORD)).await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
        // A reset for it answers as for any other address, and sends nothing.
        server
            .auth()
            .request_password_reset(proto::RequestPasswordResetRequest {
                email: email.into(),
            })
            .await
            .unwrap();
    }
    // The person's own login still works, and nobody was throttled by the attempts above.
    tokens_of(&server, login("ada@acme.test", PASSWORD)).await;
    // A list filter with one is the caller's mistake, named.
    let admin = tokens_of(&server, login("ada@acme.test", PASSWORD))
        .await
        .access_token;
    let status = assert_error(
        server
            .users()
            .list_users(with_token(
                &admin,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    email_prefix: "\u{0}".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["email_prefix"],
        "the bad field is named"
    );
}
