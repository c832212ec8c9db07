//! No secret reaches the log: the production binary at TRACE with JSON logs, every flow that
//! handles a secret driven through it (invitation, login, email code, refresh, token
//! validation, password change and reset, logout), then everything it printed searched for every
//! secret those flows used or made, and for the keys and database password it was given.

use std::time::Duration;

use identity::auth::secret_token;
use identity::proto::{self, login_response::Outcome};

use crate::cli::{Running, binary};
use crate::email::{Moto, first_link};
use crate::harness::*;

const PASSWORD: &str = "lantern orbit canyon 42";
const NEW_PASSWORD: &str = "quiet harbor violet 77";
const RESET_PASSWORD: &str = "amber meadow falcon 19";
const OPERATOR_TOKEN: &str = "idt_trace_operator_8f3c2a91d7e64b05";
const DAM_TOKEN: &str = "idt_trace_dam_51be09c4aa7d3f62e8";
const DB_PASSWORD: &str = "Db-Pw-7c1e94b2";

/// The newest email to `to` whose subject contains `subject`, waiting for it to arrive.
pub async fn email(moto: &Moto, to: &str, subject: &str) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(message) = moto
            .messages_to(to)
            .await
            .into_iter()
            .rev()
            .find(|m| m["subject"].as_str().unwrap_or_default().contains(subject))
        {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email to {to} about {subject:?}");
}

pub fn link_token(message: &serde_json::Value) -> String {
    let link = first_link(message["body"].as_str().unwrap());
    link.split("token=").nth(1).unwrap().to_owned()
}

pub fn code(message: &serde_json::Value) -> String {
    let body = message["body"].as_str().unwrap();
    let digits: Vec<char> = body.chars().collect();
    digits
        .windows(6)
        .enumerate()
        .find(|(i, w)| {
            w.iter().all(char::is_ascii_digit)
                && !digits.get(i + 6).is_some_and(char::is_ascii_digit)
                && (*i == 0 || !digits[i - 1].is_ascii_digit())
        })
        .map(|(_, w)| w.iter().collect())
        .expect("a six-digit code in the email")
}

fn tokens(outcome: Option<Outcome>) -> proto::SessionTokens {
    match outcome {
        Some(Outcome::Tokens(tokens)) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_trace() {
    let moto = Moto::start().await;
    let db = TestDb::postgres().await;
    let identity::config::Database::Postgres { url } = &db.database else {
        unreachable!()
    };
    // The test server trusts every local connection, so a password in the URL is accepted and
    // ignored: enough to see whether it is ever printed.
    let mut url = url::Url::parse(url.expose()).unwrap();
    url.set_password(Some(DB_PASSWORD)).unwrap();
    let signing_key = identity::auth::keys::generate_ed25519("trace-1").unwrap();
    let pem = signing_key.private_key_pem.expose().to_owned();
    let secret_key = "c2VjcmV0LWtleS1vZi10aGUtdHJhY2UtdGVzdC1ydW4tMDE=";
    let env = [
        ("IDENTITY_DATABASE_URL", url.to_string()),
        ("IDENTITY_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_SECRET_KEY", secret_key.to_owned()),
        (
            "IDENTITY_SIGNING_KEYS",
            serde_json::json!([{"kid": "trace-1", "private_key_pem": pem}]).to_string(),
        ),
        (
            "IDENTITY_SERVICE_TOKENS",
            serde_json::json!([
                {"name": "ops", "scopes": ["accounts.operate"], "sha256": secret_token::digest_hex(OPERATOR_TOKEN)},
                {"name": "dam", "scopes": ["access.check"], "sha256": secret_token::digest_hex(DAM_TOKEN)},
            ])
            .to_string(),
        ),
        ("IDENTITY_MAILER", "ses".to_owned()),
        ("IDENTITY_EMAIL_FROM", "no-reply@identity.test".to_owned()),
        ("IDENTITY_SES_REGION", "us-east-1".to_owned()),
        ("IDENTITY_SES_ENDPOINT_URL", moto.endpoint()),
        ("IDENTITY_OUTBOX_INTERVAL_MS", "50".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let migrated = tokio::process::Command::new(binary())
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let running = Running::start(&env).await;
    let channel = running.channel().await;
    let mut auth = proto::auth_service_client::AuthServiceClient::new(channel.clone());
    let mut accounts = proto::account_service_client::AccountServiceClient::new(channel.clone());
    let mut users = proto::user_service_client::UserServiceClient::new(channel);
    let mut secrets: Vec<(&str, String)> = vec![
        ("password", PASSWORD.to_owned()),
        ("new password", NEW_PASSWORD.to_owned()),
        ("reset password", RESET_PASSWORD.to_owned()),
        ("operator token", OPERATOR_TOKEN.to_owned()),
        ("service token", DAM_TOKEN.to_owned()),
        ("database password", DB_PASSWORD.to_owned()),
        ("secret key", secret_key.to_owned()),
    ];
    // The key's base64 body, line by line (a PEM may be printed re-wrapped).
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        secrets.push(("signing key", line.to_owned()));
    }

    // Invitation, accepted with a password.
    let email_address = "ada@acme.test";
    let created = accounts
        .create_account(with_token(
            OPERATOR_TOKEN,
            proto::CreateAccountRequest {
                name: "Acme".into(),
                administrator_email: email_address.into(),
                administrator_display_name: "Ada".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.account.is_some());
    let invitation = link_token(&email(&moto, email_address, "").await);
    secrets.push(("invitation token", invitation.clone()));
    let accepted = auth
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_token: invitation,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let person_id = accepted.user.unwrap().id;
    let accepted = accepted.tokens.unwrap();
    secrets.push(("access token", accepted.access_token.clone()));
    secrets.push(("refresh token", accepted.refresh_token.clone()));

    // A wrong password, then the right one; personal MFA on, and a login with its code.
    let login = |password: &str| proto::LoginRequest {
        email: email_address.into(),
        password: password.into(),
        account_id: String::new(),
    };
    auth.login(login("not the password at all"))
        .await
        .unwrap_err();
    let session = tokens(
        auth.login(login(PASSWORD))
            .await
            .unwrap()
            .into_inner()
            .outcome,
    );
    secrets.push(("access token", session.access_token.clone()));
    auth.enable_mfa(with_token(
        &session.access_token,
        proto::EnableMfaRequest {},
    ))
    .await
    .unwrap();
    let challenge = match auth
        .login(login(PASSWORD))
        .await
        .unwrap()
        .into_inner()
        .outcome
    {
        Some(Outcome::MfaChallenge(challenge)) => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    };
    secrets.push(("challenge id", challenge.challenge_id.clone()));
    let code = code(&email(&moto, email_address, "code").await);
    secrets.push(("email code", code.clone()));
    let verify = |code: String| proto::VerifyMfaChallengeRequest {
        challenge_id: challenge.challenge_id.clone(),
        code,
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    auth.verify_mfa_challenge(verify(wrong.to_owned()))
        .await
        .unwrap_err();
    let verified = auth
        .verify_mfa_challenge(verify(code))
        .await
        .unwrap()
        .into_inner();
    let verified = match verified.outcome {
        Some(proto::verify_mfa_challenge_response::Outcome::Tokens(tokens)) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    };
    secrets.push(("access token", verified.access_token.clone()));
    secrets.push(("refresh token", verified.refresh_token.clone()));

    // Refresh (and the spent token replayed), validation by a service, profile reads.
    let refreshed = auth
        .refresh_session(proto::RefreshSessionRequest {
            refresh_token: verified.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    secrets.push(("access token", refreshed.access_token.clone()));
    secrets.push(("refresh token", refreshed.refresh_token.clone()));
    auth.validate_token(with_token(
        DAM_TOKEN,
        proto::ValidateTokenRequest {
            access_token: refreshed.access_token.clone(),
        },
    ))
    .await
    .unwrap();
    users
        .get_my_profile(with_token(
            &refreshed.access_token,
            proto::GetMyProfileRequest {},
        ))
        .await
        .unwrap();

    // Password change, then a reset by email, then logout.
    auth.change_password(with_token(
        &refreshed.access_token,
        proto::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: NEW_PASSWORD.into(),
        },
    ))
    .await
    .unwrap();
    auth.request_password_reset(proto::RequestPasswordResetRequest {
        email: email_address.into(),
    })
    .await
    .unwrap();
    let reset = link_token(&email(&moto, email_address, "eset").await);
    secrets.push(("reset token", reset.clone()));
    auth.reset_password(proto::ResetPasswordRequest {
        reset_token: reset,
        new_password: RESET_PASSWORD.into(),
    })
    .await
    .unwrap();
    let last = auth
        .login(login(RESET_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    let last = match last.outcome {
        Some(Outcome::MfaChallenge(challenge)) => challenge.challenge_id,
        Some(Outcome::Tokens(tokens)) => tokens.access_token,
        other => panic!("{other:?}"),
    };
    secrets.push(("last login", last));

    // What the database keeps for them: the password hash and the tokens' digests.
    let store = db.store().await;
    let person = store
        .person_by_email("ada@acme.test")
        .await
        .unwrap()
        .unwrap();
    let hash = person.password_hash.unwrap();
    secrets.push(("password hash", hash.as_str().to_owned()));
    let digests: Vec<(&str, String)> = secrets
        .iter()
        .filter(|(what, _)| what.ends_with("token"))
        .map(|(_, token)| ("token digest", secret_token::digest_hex(token)))
        .collect();
    secrets.extend(digests);

    let output = running.stop().await;
    assert!(
        output.lines().count() > 200,
        "TRACE logging was not on: {} lines",
        output.lines().count()
    );
    let found: Vec<String> = secrets
        .iter()
        .filter(|(_, secret)| output.contains(secret.as_str()))
        .map(|(what, secret)| {
            let at = output.find(secret.as_str()).unwrap_or_default();
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = at + output[at..].find('\n').unwrap_or(output.len() - at);
            format!(
                "{what}: {}",
                &output[line_start..line_end.min(line_start + 400)]
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "secrets in the log:\n{}",
        found.join("\n")
    );
    // What is no secret is there to be found: the search reads the whole log.
    assert!(
        output.contains(&person_id),
        "the caller's id is not in the log"
    );
    eprintln!(
        "{} secrets searched in {} lines ({} bytes) of TRACE output: none found",
        secrets.len(),
        output.lines().count(),
        output.len()
    );
}
