//! AuditService and the audit log: each family of events with its actor, target and changes, no
//! secret in any event, who sees which categories, the DAM's batches (validation, idempotency),
//! the hash chain (verification finds edits and deletions, concurrent writers on two replicas
//! make one chain) and retention that keeps the chain verifiable.

use std::sync::Arc;
use std::time::Duration;

use identity::app::audit::{chain_pending, purge_expired, verify};
use identity::domain::roles::Role;
use identity::proto::{self, AuditCategory, login_response::Outcome};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;
use uuid::Uuid;

use crate::auth::{PASSWORD, account_with_admin, login, secret_in_email};
use crate::harness::*;

const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// A server whose outbox keeps its emails (their links and codes are read by the tests).
async fn server() -> TestServer {
    TestServer::start_on(Arc::new(TestDb::new().await), |config| {
        config.outbox_interval = Duration::from_secs(3600);
    })
    .await
}

fn audit(
    server: &TestServer,
) -> proto::audit_service_client::AuditServiceClient<tonic::transport::Channel> {
    proto::audit_service_client::AuditServiceClient::new(server.channel())
}

/// Every event of the account visible to `token`, newest first, following every page.
async fn events(
    server: &TestServer,
    token: &str,
    request: proto::ListAuditEventsRequest,
) -> Result<Vec<proto::AuditEvent>, tonic::Status> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = audit(server)
            .list_audit_events(with_token(token, request.clone()))
            .await?
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

async fn all_events(server: &TestServer, account_id: &str) -> Vec<proto::AuditEvent> {
    events(
        server,
        OPERATOR,
        proto::ListAuditEventsRequest {
            account_id: account_id.to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The newest event with `action`.
fn newest<'a>(events: &'a [proto::AuditEvent], action: &str) -> &'a proto::AuditEvent {
    events
        .iter()
        .find(|e| e.action == action)
        .unwrap_or_else(|| {
            let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
            panic!("no {action} event among {actions:?}")
        })
}

fn change<'a>(event: &'a proto::AuditEvent, field: &str) -> (Option<&'a str>, Option<&'a str>) {
    let change = event
        .changes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| {
            panic!(
                "{} has no change of {field}: {:?}",
                event.action, event.changes
            )
        });
    (change.before.as_deref(), change.after.as_deref())
}

fn actor(event: &proto::AuditEvent) -> (proto::ActorType, String) {
    let actor = event.actor.clone().unwrap();
    (actor.r#type(), actor.id)
}

fn target(event: &proto::AuditEvent) -> (String, String) {
    let target = event.target.clone().unwrap();
    (target.r#type, target.id)
}

/// A call with a request id and a user agent of its own, as a browser behind the web app sends.
fn traced<T>(token: Option<&str>, request_id: &str, message: T) -> tonic::Request<T> {
    let mut request = match token {
        Some(token) => with_token(token, message),
        None => tonic::Request::new(message),
    };
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    request
        .metadata_mut()
        .insert("user-agent", "AuditTest/1.0".parse().unwrap());
    request
}

#[tokio::test]
async fn account_and_user_management_events_name_actor_target_and_changes() {
    let server = server().await;
    let (account, admin) = server.create_account("Acme", "ada@acme.test").await;
    let admin_token = server.token_for(&admin).await;
    let id = account.id.clone();

    let mut users = server.users();
    let created = users.create_user(traced(
        Some(&admin_token),
        "req-create-user",
        proto::CreateUserRequest {
            account_id: id.clone(),
            email: "dev@acme.test".into(),
            role: proto::Role::Developer as i32,
            ..Default::default()
        },
    ));
    let dev = created.await.unwrap().into_inner().user.unwrap();
    server
        .users()
        .update_user(with_token(
            &admin_token,
            proto::UpdateUserRequest {
                user: Some(proto::User {
                    id: dev.id.clone(),
                    account_id: id.clone(),
                    role: proto::Role::MediaLibraryViewOnly as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
                account_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let (disable, enable) = (
        proto::DisableUserRequest {
            account_id: id.clone(),
            user_id: dev.id.clone(),
            ..Default::default()
        },
        proto::EnableUserRequest {
            account_id: id.clone(),
            user_id: dev.id.clone(),
            ..Default::default()
        },
    );
    server
        .users()
        .disable_user(with_token(&admin_token, disable))
        .await
        .unwrap();
    server
        .users()
        .enable_user(with_token(&admin_token, enable))
        .await
        .unwrap();
    server
        .accounts()
        .update_account_settings(with_token(
            &admin_token,
            proto::UpdateAccountSettingsRequest {
                account_id: id.clone(),
                settings: Some(proto::AccountSettings { enforce_mfa: true }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enforce_mfa".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: id.clone(),
                max_users: Some(250),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let group = server
        .groups()
        .create_group(with_token(
            &admin_token,
            proto::CreateGroupRequest {
                account_id: id.clone(),
                name: "Editors".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    server
        .groups()
        .add_group_members(with_token(
            &admin_token,
            proto::AddGroupMembersRequest {
                account_id: id.clone(),
                group_id: group.id.clone(),
                user_ids: vec![dev.id.clone()],
            },
        ))
        .await
        .unwrap();
    server
        .users()
        .delete_user(with_token(
            &admin_token,
            proto::DeleteUserRequest {
                account_id: id.clone(),
                user_id: dev.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    let events = all_events(&server, &id).await;
    let admin_actor = (proto::ActorType::User, admin.id.clone());
    let operator = (proto::ActorType::Service, "ops".to_owned());

    let account_created = newest(&events, "account.created");
    assert_eq!(actor(account_created), operator);
    assert_eq!(target(account_created), ("account".into(), id.clone()));
    assert_eq!(change(account_created, "name"), (None, Some("Acme")));
    assert_eq!(account_created.category(), AuditCategory::Account);
    assert_eq!(account_created.source, "identity");

    let invited = newest(&events, "user.invited");
    assert_eq!(actor(invited), admin_actor);
    assert_eq!(invited.actor.as_ref().unwrap().display, "ada@acme.test");
    assert_eq!(target(invited), ("user".into(), dev.id.clone()));
    assert_eq!(invited.target.as_ref().unwrap().display, "dev@acme.test");
    assert_eq!(change(invited, "role"), (None, Some("developer")));
    assert_eq!(invited.category(), AuditCategory::UserManagement);
    assert_eq!(invited.request_id, "req-create-user");
    assert!(
        invited.user_agent.starts_with("AuditTest/1.0"),
        "{}",
        invited.user_agent
    );
    assert_eq!(invited.ip_address, "127.0.0.1");

    let role = newest(&events, "user.role_changed");
    assert_eq!(actor(role), admin_actor);
    assert_eq!(
        change(role, "role"),
        (Some("developer"), Some("media_library_view_only"))
    );
    assert_eq!(
        change(newest(&events, "user.disabled"), "status"),
        (Some("invited"), Some("disabled"))
    );
    assert!(newest(&events, "user.enabled").changes[0].after.is_some());
    assert_eq!(
        change(
            newest(&events, "account.settings_changed"),
            "settings.enforce_mfa"
        ),
        (Some("false"), Some("true"))
    );
    let limits = newest(&events, "account.limits_changed");
    assert_eq!(actor(limits), operator);
    assert_eq!(
        change(limits, "limits.max_users"),
        (Some("100"), Some("250"))
    );
    let group_created = newest(&events, "group.created");
    assert_eq!(target(group_created), ("group".into(), group.id.clone()));
    assert_eq!(change(group_created, "name"), (None, Some("Editors")));
    let added = newest(&events, "group.members_added");
    assert_eq!(added.metadata["user_ids"], dev.id);
    assert_eq!(added.metadata["changed"], "1");
    let removed = newest(&events, "user.removed");
    assert_eq!(target(removed), ("user".into(), dev.id.clone()));
    assert_eq!(
        change(removed, "role"),
        (Some("media_library_view_only"), None)
    );

    // Newest first, every event of this account, ids unique.
    let times: Vec<_> = events.iter().map(|e| e.time.unwrap()).collect();
    assert!(
        times
            .windows(2)
            .all(|w| (w[0].seconds, w[0].nanos) >= (w[1].seconds, w[1].nanos))
    );
    assert!(events.iter().all(|e| e.account_id == id));
}

#[tokio::test]
async fn sign_ins_passwords_mfa_and_sessions_are_recorded_without_secrets() {
    let server = server().await;
    let (account, admin) = account_with_admin(&server, "ada@acme.test").await;
    let id = account.id.clone();

    // A wrong password, then the right one with a request id of the caller's.
    let wrong = server
        .auth()
        .login(login("ada@acme.test", "not the password 1"))
        .await;
    assert_error(wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let tokens = match server
        .auth()
        .login(traced(None, "req-login", login("ada@acme.test", PASSWORD)))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        Outcome::Tokens(tokens) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    };
    // An address no person has: the same answer, recorded in no account.
    let unknown = server
        .auth()
        .login(login("nobody@acme.test", "whatever pass 9"))
        .await;
    assert_error(unknown, Code::Unauthenticated, "INVALID_CREDENTIALS");

    // Personal MFA on, then a login with a wrong and a right code.
    server
        .auth()
        .enable_mfa(with_token(&tokens.access_token, proto::EnableMfaRequest {}))
        .await
        .unwrap();
    let challenge = match server
        .auth()
        .login(login("ada@acme.test", PASSWORD))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        Outcome::MfaChallenge(challenge) => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let code = secret_in_email(&server, "ada@acme.test", "mfa_code").await;
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let refused = server
        .auth()
        .verify_mfa_challenge(proto::VerifyMfaChallengeRequest {
            challenge_id: challenge.challenge_id.clone(),
            code: wrong_code.into(),
        })
        .await;
    assert_error(refused, Code::Unauthenticated, "MFA_CODE_INVALID");
    let second = server
        .auth()
        .verify_mfa_challenge(proto::VerifyMfaChallengeRequest {
            challenge_id: challenge.challenge_id.clone(),
            code: code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(proto::verify_mfa_challenge_response::Outcome::Tokens(second)) = second.outcome else {
        panic!("expected tokens after the code");
    };

    // A password change, a reset, and a logout.
    const CHANGED: &str = "violet harbor quiet 77";
    server
        .auth()
        .change_password(with_token(
            &second.access_token,
            proto::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: CHANGED.into(),
            },
        ))
        .await
        .unwrap();
    server
        .auth()
        .request_password_reset(proto::RequestPasswordResetRequest {
            email: "ada@acme.test".into(),
        })
        .await
        .unwrap();
    let mut reset_token = String::new();
    for _ in 0..100 {
        if server
            .emails_to("ada@acme.test")
            .await
            .iter()
            .any(|e| e.kind == "password_reset")
        {
            reset_token = secret_in_email(&server, "ada@acme.test", "password_reset").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    const RESET: &str = "canyon lantern orbit 55";
    server
        .auth()
        .reset_password(proto::ResetPasswordRequest {
            reset_token: reset_token.clone(),
            new_password: RESET.into(),
        })
        .await
        .unwrap();
    let third = match server
        .auth()
        .login(login("ada@acme.test", RESET))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    {
        Outcome::MfaChallenge(_) => None,
        Outcome::Tokens(tokens) => Some(tokens),
        other => panic!("unexpected {other:?}"),
    };
    assert!(third.is_none(), "MFA is on: a code is asked for");
    let admin_token = server.token_for(&admin).await;
    server
        .auth()
        .logout(with_token(&admin_token, proto::LogoutRequest {}))
        .await
        .unwrap();

    let events = all_events(&server, &id).await;
    let ada = (proto::ActorType::User, admin.id.clone());
    let anonymous = (proto::ActorType::Anonymous, String::new());

    let failed = newest(&events, "auth.login_failed");
    assert_eq!(actor(failed), anonymous);
    assert_eq!(target(failed), ("user".into(), admin.id.clone()));
    assert_eq!(failed.metadata["method"], "password");
    assert_eq!(failed.category(), AuditCategory::Authentication);

    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.action == "auth.login_succeeded")
        .collect();
    let first = succeeded
        .iter()
        .find(|e| e.request_id == "req-login")
        .expect("the login with the caller's request id");
    assert_eq!(actor(first), ada);
    assert_eq!(first.metadata["method"], "password");
    assert_eq!(first.metadata["session_id"], tokens.session_id);
    assert!(first.user_agent.starts_with("AuditTest/1.0"));
    assert!(
        succeeded
            .iter()
            .any(|e| e.metadata["method"] == "password+email_code"),
        "the login after the code"
    );
    assert!(
        succeeded
            .iter()
            .any(|e| e.metadata["method"] == "invitation_link"),
        "the login of the accepted invitation"
    );
    assert_eq!(
        change(newest(&events, "user.invitation_accepted"), "status"),
        (Some("invited"), Some("active"))
    );
    assert_eq!(
        change(newest(&events, "auth.mfa_enabled"), "mfa_enabled"),
        (Some("false"), Some("true"))
    );
    assert_eq!(
        newest(&events, "auth.mfa_code_failed").metadata["attempts_left"],
        "4"
    );
    assert_eq!(target(newest(&events, "auth.mfa_code_passed")).1, admin.id);
    let changed = newest(&events, "auth.password_changed");
    assert_eq!(actor(changed), ada);
    assert_eq!(change(changed, "password"), (None, None), "no value, ever");
    let reset = newest(&events, "auth.password_reset");
    assert_eq!(actor(reset), anonymous);
    let logout = newest(&events, "auth.session_revoked");
    assert_eq!(logout.metadata["reason"], "logout");
    assert_eq!(target(logout).0, "session");

    // The unknown address is in the service's own log, seen by services only.
    assert!(!events.iter().any(|e| {
        e.target
            .as_ref()
            .is_some_and(|t| t.display == "nobody@acme.test")
    }));
    let own = all_events(&server, NIL).await;
    let unknown = newest(&own, "auth.login_failed");
    assert_eq!(unknown.metadata["reason"], "unknown_email");
    assert_eq!(unknown.target.as_ref().unwrap().display, "nobody@acme.test");
    let person = server.token_for(&admin).await;
    let refused = events_for(&server, &person, NIL).await;
    assert_error(refused, Code::PermissionDenied, "ACCOUNT_MISMATCH");

    // No secret in any field of any event.
    let everything = format!("{events:?}{own:?}");
    for secret in [
        PASSWORD,
        CHANGED,
        RESET,
        "not the password 1",
        "whatever pass 9",
        &code,
        &challenge.challenge_id,
        &reset_token,
        &tokens.access_token,
        &tokens.refresh_token,
        &second.refresh_token,
        "$argon2id",
    ] {
        assert!(!everything.contains(secret), "a secret is in the audit log");
    }
    // The search can find things: the person's id is there.
    assert!(everything.contains(&admin.id));
}

async fn events_for(
    server: &TestServer,
    token: &str,
    account_id: &str,
) -> Result<Vec<proto::AuditEvent>, tonic::Status> {
    events(
        server,
        token,
        proto::ListAuditEventsRequest {
            account_id: account_id.to_owned(),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn throttled_logins_and_shares_are_recorded() {
    let server = server().await;
    let (account, admin) = account_with_admin(&server, "ada@acme.test").await;
    for n in 0..6 {
        let _ = server
            .auth()
            .login(login("ada@acme.test", &format!("wrong password {n}x")))
            .await;
    }
    let admin_token = server.token_for(&admin).await;
    let share = |level: proto::AccessLevel| proto::ShareResourceRequest {
        account_id: account.id.clone(),
        resource: Some(proto::ResourceRef {
            r#type: proto::ResourceType::Folder as i32,
            id: "fld_1".into(),
        }),
        subject: Some(proto::Subject {
            kind: Some(proto::subject::Kind::UserId(admin.id.clone())),
        }),
        level: level as i32,
        ..Default::default()
    };
    let access = || proto::access_service_client::AccessServiceClient::new(server.channel());
    access()
        .share_resource(with_token(&admin_token, share(proto::AccessLevel::View)))
        .await
        .unwrap();
    let shared = access()
        .share_resource(with_token(&admin_token, share(proto::AccessLevel::Manage)))
        .await
        .unwrap()
        .into_inner()
        .share
        .unwrap();
    access()
        .revoke_share(with_token(
            &admin_token,
            proto::RevokeShareRequest {
                account_id: account.id.clone(),
                share_id: shared.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    let events = all_events(&server, &account.id).await;
    let throttled = newest(&events, "auth.login_throttled");
    assert_eq!(target(throttled).1, admin.id);
    assert!(
        throttled.metadata["retry_after_seconds"]
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "auth.login_failed")
            .count(),
        5,
        "five wrong passwords evaluated, the sixth throttled"
    );
    let created = newest(&events, "share.created");
    assert_eq!(target(created), ("folder".into(), "fld_1".into()));
    assert_eq!(change(created, "level"), (None, Some("view")));
    assert_eq!(created.metadata["subject_id"], admin.id);
    assert_eq!(created.category(), AuditCategory::Access);
    assert_eq!(
        change(newest(&events, "share.changed"), "level"),
        (Some("view"), Some("manage"))
    );
    let revoked = newest(&events, "share.revoked");
    assert_eq!(change(revoked, "level"), (Some("manage"), None));
    assert_eq!(revoked.metadata["share_id"], shared.id);
}

fn dam_event(action: &str, file: &str) -> proto::AuditEvent {
    proto::AuditEvent {
        category: AuditCategory::MediaLibrary as i32,
        action: action.into(),
        actor: Some(proto::AuditActor {
            r#type: proto::ActorType::User as i32,
            id: Uuid::now_v7().to_string(),
            display: "editor@acme.test".into(),
        }),
        target: Some(proto::AuditTarget {
            r#type: "file".into(),
            id: file.into(),
            display: format!("{file}.jpg"),
        }),
        ip_address: "2001:db8::7".into(),
        metadata: [("folder".to_owned(), "/campaigns".to_owned())].into(),
        changes: vec![proto::AuditChange {
            field: "name".into(),
            before: Some("old.jpg".into()),
            after: Some(format!("{file}.jpg")),
        }],
        ..Default::default()
    }
}

async fn record(
    server: &TestServer,
    token: &str,
    account_id: &str,
    events: Vec<proto::AuditEvent>,
    request_id: &str,
) -> Result<Vec<String>, tonic::Status> {
    audit(server)
        .record_audit_events(with_token(
            token,
            proto::RecordAuditEventsRequest {
                account_id: account_id.to_owned(),
                events,
                request_id: request_id.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().event_ids)
}

#[tokio::test]
async fn the_dam_records_batches_once_and_bad_events_are_refused_whole() {
    let server = server().await;
    let (account, admin) = server.create_account("Acme", "ada@acme.test").await;
    let id = account.id.clone();
    let batch: Vec<_> = (0..500)
        .map(|n| dam_event("file.renamed", &format!("f{n}")))
        .collect();
    let ids = record(&server, DAM, &id, batch.clone(), "batch-1")
        .await
        .unwrap();
    assert_eq!(ids.len(), 500);
    // A retry answers the same ids and appends nothing; other content under the id is refused.
    let again = record(&server, DAM, &id, batch.clone(), "batch-1")
        .await
        .unwrap();
    assert_eq!(again, ids);
    let other = record(&server, DAM, &id, batch[..2].to_vec(), "batch-1").await;
    assert_error(other, Code::FailedPrecondition, "REQUEST_ID_REUSED");

    let media = events(
        &server,
        OPERATOR,
        proto::ListAuditEventsRequest {
            account_id: id.clone(),
            category: AuditCategory::MediaLibrary as i32,
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(media.len(), 500, "recorded once");
    let first = media.iter().find(|e| e.id == ids[0]).unwrap();
    assert_eq!(first.source, "dam");
    assert_eq!(first.request_id, "batch-1");
    assert_eq!(first.ip_address, "2001:db8::7");
    assert_eq!(first.metadata["folder"], "/campaigns");
    assert_eq!(change(first, "name"), (Some("old.jpg"), Some("f0.jpg")));
    assert_eq!(target(first), ("file".into(), "f0".into()));

    // One bad field anywhere refuses the whole batch, naming each field.
    let mut bad = batch[..4].to_vec();
    bad[0].category = AuditCategory::Account as i32;
    bad[1].action = "File Deleted".into();
    bad[2].ip_address = "300.1.1.1".into();
    bad[3].actor = None;
    let mut late = dam_event("file.deleted", "x");
    late.time = Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 8 * 24 * 3600,
        nanos: 0,
    });
    bad.push(late);
    let mut tagged = dam_event("file.tagged", "y");
    tagged.metadata.insert("Bad Key".into(), "v".into());
    bad.push(tagged);
    let refused = record(&server, DAM, &id, bad, "").await;
    let status = assert_error(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "events[0].category",
            "events[1].action",
            "events[2].ip_address",
            "events[3].actor",
            "events[4].time",
            "events[5].metadata[Bad Key]",
        ]
    );
    let empty = record(&server, DAM, &id, Vec::new(), "").await;
    assert_eq!(violated_fields(&empty.unwrap_err()), ["events"]);
    let too_many: Vec<_> = (0..501)
        .map(|n| dam_event("file.renamed", &n.to_string()))
        .collect();
    assert_eq!(
        violated_fields(&record(&server, DAM, &id, too_many, "").await.unwrap_err()),
        ["events"]
    );
    let missing = record(
        &server,
        DAM,
        &Uuid::now_v7().to_string(),
        batch[..1].to_vec(),
        "",
    )
    .await;
    assert_error(missing, Code::NotFound, "ACCOUNT_NOT_FOUND");
    let admin_token = server.token_for(&admin).await;
    let person = record(&server, &admin_token, &id, batch[..1].to_vec(), "").await;
    assert_error(person, Code::PermissionDenied, "PERMISSION_MISSING");
    let reader = record(&server, READER, &id, batch[..1].to_vec(), "").await;
    assert_error(reader, Code::PermissionDenied, "SCOPE_MISSING");
    assert_eq!(
        all_events(&server, &id)
            .await
            .iter()
            .filter(|e| e.category() == AuditCategory::MediaLibrary)
            .count(),
        500,
        "nothing of the refused batches was appended"
    );
}

#[tokio::test]
async fn each_role_sees_the_categories_the_contract_gives_it() {
    let server = server().await;
    let (account, admin) = server.create_account("Acme", "ada@acme.test").await;
    let id = account.id.clone();
    record(&server, DAM, &id, vec![dam_event("file.deleted", "f1")], "")
        .await
        .unwrap();
    let admin_token = server.token_for(&admin).await;
    let all = events_for(&server, &admin_token, &id).await.unwrap();
    assert!(
        all.iter()
            .any(|e| e.category() == AuditCategory::MediaLibrary)
    );
    assert!(all.iter().any(|e| e.category() == AuditCategory::Account));

    for role in [
        Role::Developer,
        Role::MediaLibraryFullAccess,
        Role::MediaLibraryViewOnly,
    ] {
        let email = format!("{}@acme.test", role.as_str());
        let member = server.add_member(&id, &email, role).await;
        let token = server.token_for(&member).await;
        let seen = events_for(&server, &token, &id).await.unwrap();
        assert_eq!(seen.len(), 1, "{role:?} sees the Media Library only");
        assert_eq!(seen[0].action, "file.deleted");
        let asked = events(
            &server,
            &token,
            proto::ListAuditEventsRequest {
                account_id: id.clone(),
                category: AuditCategory::UserManagement as i32,
                ..Default::default()
            },
        )
        .await;
        assert_error(asked, Code::PermissionDenied, "PERMISSION_MISSING");
    }
    for role in [Role::Finance, Role::MediaLibraryRestricted] {
        let email = format!("{}@acme.test", role.as_str());
        let member = server.add_member(&id, &email, role).await;
        let token = server.token_for(&member).await;
        let refused = events_for(&server, &token, &id).await;
        assert_error(refused, Code::PermissionDenied, "PERMISSION_MISSING");
    }
    let (other, other_admin) = server.create_account("Other", "o@other.test").await;
    let other_token = server.token_for(&other_admin).await;
    assert_error(
        events_for(&server, &other_token, &id).await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
    assert!(
        events_for(&server, &other_token, &other.id)
            .await
            .unwrap()
            .iter()
            .all(|e| e.account_id == other.id)
    );
    let reader = events_for(&server, &scope_token("audit.read"), &id)
        .await
        .unwrap();
    assert_eq!(
        reader.len(),
        all.len() + 5,
        "audit.read sees every category"
    );
    assert_error(
        events_for(&server, READER, &id).await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );
}

#[tokio::test]
async fn filters_and_pages_follow_the_contract() {
    let server = server().await;
    let (account, _) = server.create_account("Acme", "ada@acme.test").await;
    let id = account.id.clone();
    let first_time = chrono::Utc::now().timestamp() - 3600;
    let batch: Vec<_> = (0..120)
        .map(|n| {
            let mut e = dam_event(
                if n % 2 == 0 {
                    "file.renamed"
                } else {
                    "file.deleted"
                },
                &format!("f{}", n % 3),
            );
            e.time = Some(prost_types::Timestamp {
                seconds: first_time + n,
                nanos: 0,
            });
            e
        })
        .collect();
    record(&server, DAM, &id, batch, "").await.unwrap();
    let list = |request: proto::ListAuditEventsRequest| events(&server, OPERATOR, request);
    let base = proto::ListAuditEventsRequest {
        account_id: id.clone(),
        page_size: 7,
        ..Default::default()
    };
    let paged = list(base.clone()).await.unwrap();
    let whole = list(proto::ListAuditEventsRequest {
        page_size: 1000,
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(paged, whole, "pages of 7 give the same list as one page");
    let renamed = list(proto::ListAuditEventsRequest {
        action: "file.renamed".into(),
        target_id: "f0".into(),
        target_type: "file".into(),
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(renamed.len(), 20, "n even and n % 3 == 0: 20 of 120");
    let start = first_time + 100;
    let recent = list(proto::ListAuditEventsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: start,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: start + 10,
            nanos: 0,
        }),
        category: AuditCategory::MediaLibrary as i32,
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(recent.len(), 10, "from the 100th to before the 110th");
    let editor = whole
        .iter()
        .find(|e| e.category() == AuditCategory::MediaLibrary)
        .unwrap();
    let by_actor = list(proto::ListAuditEventsRequest {
        actor_id: editor.actor.as_ref().unwrap().id.clone(),
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(by_actor.len(), 1);
    let backwards = list(proto::ListAuditEventsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: start + 10,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: start,
            nanos: 0,
        }),
        ..base.clone()
    })
    .await;
    assert_eq!(violated_fields(&backwards.unwrap_err()), ["start_time"]);
    // A page token is bound to its filters.
    let first = audit(&server)
        .list_audit_events(with_token(OPERATOR, base.clone()))
        .await
        .unwrap()
        .into_inner();
    let moved = audit(&server)
        .list_audit_events(with_token(
            OPERATOR,
            proto::ListAuditEventsRequest {
                page_token: first.next_page_token,
                action: "file.renamed".into(),
                ..base.clone()
            },
        ))
        .await;
    assert_error(moved, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

/// Runs `sql` on the test database (an operator tampering with the log).
async fn tamper(server: &TestServer, sql: &str) {
    let store = &server.app.store;
    store
        .connection()
        .execute_raw(Statement::from_string(store.backend(), sql.to_owned()))
        .await
        .unwrap();
}

#[tokio::test]
async fn verification_finds_an_edited_and_a_deleted_event() {
    let server = server().await;
    let (account, _) = server.create_account("Acme", "ada@acme.test").await;
    let id: Uuid = account.id.parse().unwrap();
    let batch: Vec<_> = (0..20)
        .map(|n| dam_event("file.renamed", &format!("f{n}")))
        .collect();
    let ids = record(&server, DAM, &account.id, batch, "").await.unwrap();
    chain_pending(&server.app.store).await.unwrap();
    let store = &server.app.store;
    let whole = verify(store, Some(id)).await.unwrap();
    assert_eq!(whole[0].result, Ok(()));
    assert_eq!(
        whole[0].checked, 22,
        "account.created, user.invited and 20 recorded"
    );
    assert_eq!(whole[0].unchained, 0);

    tamper(
        &server,
        "UPDATE audit_events SET target_display = 'innocent.jpg' WHERE target_id = 'f5'",
    )
    .await;
    let broken = verify(store, Some(id))
        .await
        .unwrap()
        .remove(0)
        .result
        .unwrap_err();
    assert_eq!(broken.event_id, Some(ids[5].parse().unwrap()));
    assert!(broken.problem.contains("edited"), "{broken}");

    // Put it back, then delete another.
    tamper(
        &server,
        "UPDATE audit_events SET target_display = 'f5.jpg' WHERE target_id = 'f5'",
    )
    .await;
    assert_eq!(verify(store, Some(id)).await.unwrap()[0].result, Ok(()));
    // An event deleted: its link names an event that is gone.
    let seq = broken.seq + 4;
    tamper(&server, "DELETE FROM audit_events WHERE target_id = 'f9'").await;
    let gone = verify(store, None).await.unwrap();
    let gone = gone.iter().find(|r| r.account_id == id).unwrap();
    let broken = gone.result.clone().unwrap_err();
    assert_eq!(
        (broken.seq, broken.event_id),
        (seq, Some(ids[9].parse().unwrap()))
    );
    assert!(broken.problem.contains("deleted"), "{broken}");
    // An event deleted with its link: the position is missing.
    tamper(
        &server,
        &format!("DELETE FROM audit_links WHERE seq = {seq}"),
    )
    .await;
    let gap = verify(store, Some(id)).await.unwrap().remove(0);
    let broken = gap.result.unwrap_err();
    assert_eq!(broken.seq, seq);
    assert!(broken.problem.contains("missing"), "{broken}");
}

#[tokio::test]
async fn retention_deletes_old_events_and_the_chain_still_verifies() {
    let server = server().await;
    let (account, _) = server.create_account("Acme", "ada@acme.test").await;
    let id: Uuid = account.id.parse().unwrap();
    let store = &server.app.store;
    let clock: identity::clock::SharedClock = server.clock.clone();
    record(
        &server,
        DAM,
        &account.id,
        vec![dam_event("file.renamed", "a"); 30],
        "",
    )
    .await
    .unwrap();
    chain_pending(store).await.unwrap();
    server.clock.advance(chrono::Duration::days(400));
    let kept = record(
        &server,
        DAM,
        &account.id,
        vec![dam_event("file.renamed", "b"); 10],
        "",
    )
    .await
    .unwrap();
    chain_pending(store).await.unwrap();

    let year = Duration::from_secs(365 * 24 * 3600);
    let holder = Uuid::now_v7();
    // Another replica holding the lease makes this pass do nothing.
    let rival = Uuid::now_v7();
    assert_eq!(purge_expired(store, &clock, year, rival).await.unwrap(), 32);
    assert_eq!(purge_expired(store, &clock, year, holder).await.unwrap(), 0);

    let left = all_events(&server, &account.id).await;
    assert_eq!(left.len(), 10);
    assert!(left.iter().all(|e| kept.contains(&e.id)));
    let report = verify(store, Some(id)).await.unwrap().remove(0);
    assert_eq!(report.result, Ok(()));
    assert_eq!(report.purged_through, 32);
    assert_eq!(report.checked, 10);
    // Nothing more to delete; the chain grows on from where it was.
    assert_eq!(purge_expired(store, &clock, year, rival).await.unwrap(), 0);
    record(
        &server,
        DAM,
        &account.id,
        vec![dam_event("file.renamed", "c")],
        "",
    )
    .await
    .unwrap();
    chain_pending(store).await.unwrap();
    let report = verify(store, Some(id)).await.unwrap().remove(0);
    assert_eq!((report.result, report.checked), (Ok(()), 11));
}

#[tokio::test]
async fn the_chainer_links_a_replicas_events_soon_after_they_commit() {
    let server = server().await;
    let (account, _) = server.create_account("Acme", "ada@acme.test").await;
    let id: Uuid = account.id.parse().unwrap();
    let mut report = None;
    for _ in 0..100 {
        let now = verify(&server.app.store, Some(id)).await.unwrap().remove(0);
        if now.unchained == 0 && now.checked == 2 {
            report = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = report.expect("the server's own chainer links the events within 2 s");
    assert_eq!(report.result, Ok(()));
}

/// PostgreSQL only: two replicas on one database.
mod pg_only {
    use super::*;

    #[tokio::test]
    async fn a_hundred_writers_on_two_replicas_make_one_valid_chain() {
        let db = Arc::new(TestDb::postgres().await);
        let one = TestServer::start_on(db.clone(), |_| {}).await;
        let two = TestServer::start_on(db.clone(), |_| {}).await;
        let (account, admin) = one.create_account("Acme", "ada@acme.test").await;
        let admin_token = one.token_for(&admin).await;
        let id: Uuid = account.id.parse().unwrap();
        let mut writers = Vec::new();
        for n in 0..100 {
            let server = if n % 2 == 0 { &one } else { &two };
            let channel = server.channel();
            let account_id = account.id.clone();
            let token = admin_token.clone();
            writers.push(tokio::spawn(async move {
                if n % 4 < 2 {
                    proto::audit_service_client::AuditServiceClient::new(channel)
                        .record_audit_events(with_token(
                            DAM,
                            proto::RecordAuditEventsRequest {
                                account_id,
                                events: vec![dam_event("file.renamed", &n.to_string()); 3],
                                request_id: String::new(),
                            },
                        ))
                        .await
                        .map(|_| 3)
                } else {
                    proto::user_service_client::UserServiceClient::new(channel)
                        .create_user(with_token(
                            &token,
                            proto::CreateUserRequest {
                                account_id,
                                email: format!("u{n}@acme.test"),
                                role: proto::Role::Developer as i32,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| 1)
                }
            }));
        }
        let mut written = 2; // account.created and user.invited
        for writer in writers {
            written += writer.await.unwrap().expect("every write succeeds");
        }
        assert_eq!(written, 2 + 50 * 3 + 50);
        // Both replicas' chainers run at once on the one chain.
        let (a, b) = tokio::join!(chain_pending(&one.app.store), chain_pending(&two.app.store));
        a.unwrap();
        b.unwrap();
        let report = verify(&one.app.store, Some(id)).await.unwrap().remove(0);
        assert_eq!(report.result, Ok(()));
        assert_eq!((report.checked, report.unchained), (written, 0));
    }

    /// `identity audit verify` on the database: its exit status and what it printed.
    async fn verify_command(db: &TestDb, account: Option<&str>) -> (Option<i32>, String) {
        let identity::config::Database::Postgres { url } = &db.database else {
            panic!("a PostgreSQL database");
        };
        let mut command = tokio::process::Command::new(crate::cli::binary());
        command
            .args(["audit", "verify"])
            .env("IDENTITY_DATABASE_URL", url.expose())
            .env("NO_COLOR", "1");
        if let Some(account) = account {
            command.args(["--account", account]);
        }
        let output = command.output().await.unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_verify_command_says_whole_or_names_the_broken_link_and_fails() {
        let db = Arc::new(TestDb::postgres().await);
        let server = TestServer::start_on(db.clone(), |_| {}).await;
        let (account, _) = server.create_account("Acme", "ada@acme.test").await;
        record(
            &server,
            DAM,
            &account.id,
            vec![dam_event("file.renamed", "f1"); 3],
            "",
        )
        .await
        .unwrap();
        chain_pending(&server.app.store).await.unwrap();
        let (status, out) = verify_command(&db, None).await;
        assert_eq!(status, Some(0), "{out}");
        assert!(
            out.contains(&format!("account {}: whole, 5 events checked", account.id)),
            "{out}"
        );
        assert!(out.contains("all whole"), "{out}");

        tamper(
            &server,
            "UPDATE audit_events SET action = 'file.restored' \
             WHERE id = (SELECT event_id FROM audit_links WHERE seq = 4)",
        )
        .await;
        let (status, out) = verify_command(&db, Some(&account.id)).await;
        assert_eq!(status, Some(1), "{out}");
        assert!(
            out.contains(&format!(
                "BROKEN: account {} breaks at position 4",
                account.id
            )),
            "{out}"
        );
        assert!(out.contains("edited"), "{out}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_request_id_and_a_trusted_proxy_gives_the_address() {
    let server = TestServer::start_on(Arc::new(TestDb::new().await), |config| {
        config.client_ip_header = Some("x-forwarded-for".to_owned());
    })
    .await;
    let get = |request_id: Option<&str>, forwarded: Option<&str>| {
        let mut request = with_token(
            OPERATOR,
            proto::CreateAccountRequest {
                name: "Acme".into(),
                administrator_email: format!("{}@acme.test", Uuid::now_v7().simple()),
                ..Default::default()
            },
        );
        if let Some(id) = request_id {
            request
                .metadata_mut()
                .insert("x-request-id", id.parse().unwrap());
        }
        if let Some(forwarded) = forwarded {
            request
                .metadata_mut()
                .insert("x-forwarded-for", forwarded.parse().unwrap());
        }
        let mut accounts = server.accounts();
        async move {
            let response = accounts.create_account(request).await.unwrap();
            let echoed = response
                .metadata()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (response.into_inner().account.unwrap().id, echoed)
        }
    };
    let (first, echoed) = get(
        Some("support-ticket-4711"),
        Some("198.51.100.7, 203.0.113.9"),
    )
    .await;
    assert_eq!(echoed, "support-ticket-4711");
    let (second, made) = get(None, Some("not an address")).await;
    assert!(Uuid::parse_str(&made).is_ok(), "{made}");
    let (_, replaced) = get(Some(&"x".repeat(200)), None).await;
    assert!(
        Uuid::parse_str(&replaced).is_ok(),
        "a 200-character id is replaced: {replaced}"
    );

    let created = newest(&all_events(&server, &first).await, "account.created").clone();
    assert_eq!(created.request_id, "support-ticket-4711");
    assert_eq!(
        created.ip_address, "203.0.113.9",
        "the address the proxy appended"
    );
    let created = newest(&all_events(&server, &second).await, "account.created").clone();
    assert_eq!(created.request_id, made);
    assert_eq!(
        created.ip_address, "127.0.0.1",
        "no usable header: the peer"
    );
}

#[tokio::test]
async fn an_event_committed_late_with_an_earlier_id_is_still_linked() {
    use identity::app::audit::{Watermarks, chain_pending_from};
    use identity::domain::audit::{Draft, EventActor};
    let server = server().await;
    let (account, _) = server.create_account("Acme", "ada@acme.test").await;
    let id: Uuid = account.id.parse().unwrap();
    let store = &server.app.store;
    let mut marks = Watermarks::default();
    record(
        &server,
        DAM,
        &account.id,
        vec![dam_event("file.renamed", "a"); 3],
        "",
    )
    .await
    .unwrap();
    chain_pending_from(store, &mut marks).await.unwrap();
    // An event whose id sorts before everything linked so far, as one generated early and
    // committed late would.
    let mut late = Draft::new("group.created", EventActor::system()).into_event(
        id,
        &Default::default(),
        chrono::Utc::now(),
    );
    late.id = Uuid::from_u128(1);
    let tx = store.begin().await.unwrap();
    tx.append_audit(&[late]).await.unwrap();
    tx.commit().await.unwrap();
    // Linked by this chainer (or by the server's own, whose watermark is past it too).
    chain_pending_from(store, &mut marks).await.unwrap();
    let report = verify(store, Some(id)).await.unwrap().remove(0);
    assert_eq!(
        (report.result, report.checked, report.unchained),
        (Ok(()), 6, 0)
    );
}
