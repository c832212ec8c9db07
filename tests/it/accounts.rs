//! AccountService: who may create, read and change accounts; input rules; idempotency; etags.

use identity::domain::roles::Role;
use identity::proto::{self, AccountLimits, AccountSettings, CreateAccountRequest};
use prost_types::FieldMask;
use tonic::Code;
use uuid::Uuid;

use crate::harness::*;

#[tokio::test]
async fn operator_creates_an_account_with_an_invited_administrator_and_default_caps() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme Media", "Owner@Acme.test").await;
    assert_eq!(account.name, "Acme Media");
    assert_eq!(
        account.limits,
        Some(AccountLimits {
            max_users: 100,
            max_groups: 5
        })
    );
    assert_eq!(account.user_count, 1);
    assert_eq!(account.group_count, 0);
    assert!(!account.settings.unwrap().enforce_mfa);
    assert_eq!(admin.account_id, account.id);
    assert_eq!(admin.email, "Owner@Acme.test");
    assert_eq!(admin.role, proto::Role::AccountAdministrator as i32);
    assert_eq!(admin.status, proto::MembershipStatus::Invited as i32);
    assert!(!admin.has_password);

    // The administrator's token reads the account.
    let token = server.token_for(&admin).await;
    let read = server
        .accounts()
        .get_account(with_token(
            &token,
            proto::GetAccountRequest {
                account_id: account.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(read, account);
}

#[tokio::test]
async fn a_new_person_without_a_name_is_called_by_the_local_part_of_the_address() {
    let server = TestServer::start().await;
    let created = server
        .accounts()
        .create_account(with_token(
            OPERATOR,
            CreateAccountRequest {
                name: "Acme".into(),
                administrator_email: "Owner.One@Acme.test".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.administrator.unwrap().display_name, "Owner.One");
    let user = server
        .users()
        .create_user(with_token(
            OPERATOR,
            proto::CreateUserRequest {
                account_id: created.account.unwrap().id,
                email: "ada@acme.test".into(),
                role: proto::Role::Developer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.display_name, "ada");
}

#[tokio::test]
async fn the_same_person_administers_two_accounts_under_one_id() {
    let server = TestServer::start().await;
    let (_, first) = server.create_account("One", "same@example.com").await;
    let (_, second) = server.create_account("Two", "SAME@example.com").await;
    assert_eq!(first.id, second.id);
    assert_ne!(first.account_id, second.account_id);
}

#[tokio::test]
async fn explicit_caps_are_kept() {
    let server = TestServer::start().await;
    let account = server
        .accounts()
        .create_account(with_token(
            OPERATOR,
            CreateAccountRequest {
                name: "Big".into(),
                administrator_email: "big@example.com".into(),
                limits: Some(AccountLimits {
                    max_users: 500,
                    max_groups: 20,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        account.limits,
        Some(AccountLimits {
            max_users: 500,
            max_groups: 20
        })
    );
}

#[tokio::test]
async fn only_operators_create_accounts() {
    let server = TestServer::start().await;
    let (_, admin) = server.create_account("Acme", "admin@acme.test").await;
    let request = || CreateAccountRequest {
        name: "Other".into(),
        administrator_email: "x@example.com".into(),
        ..Default::default()
    };
    let accounts = server.accounts();
    assert_error(
        accounts
            .clone()
            .create_account(with_token(&server.token_for(&admin).await, request()))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    assert_error(
        accounts
            .clone()
            .create_account(with_token(DAM, request()))
            .await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );
    assert_error(
        accounts
            .clone()
            .create_account(tonic::Request::new(request()))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    assert_error(
        accounts
            .clone()
            .create_account(with_token("idt_not_a_token", request()))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
}

#[tokio::test]
async fn bad_input_lists_every_bad_field_and_writes_nothing() {
    let server = TestServer::start().await;
    let status = assert_error(
        server
            .accounts()
            .create_account(with_token(
                OPERATOR,
                CreateAccountRequest {
                    name: "x".repeat(129),
                    administrator_email: "not-an-email".into(),
                    administrator_display_name: "ok".into(),
                    limits: Some(AccountLimits {
                        max_users: -3,
                        max_groups: 100_001,
                    }),
                    request_id: "has spaces".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        [
            "name",
            "administrator_email",
            "limits.max_users",
            "limits.max_groups",
            "request_id"
        ]
    );
    use sea_orm::{EntityTrait, PaginatorTrait};
    let accounts = identity::store::entities::account::Entity::find()
        .count(server.app.store.connection())
        .await
        .unwrap();
    assert_eq!(accounts, 0);
}

#[tokio::test]
async fn a_retried_create_returns_the_first_result() {
    let server = TestServer::start().await;
    let request = || CreateAccountRequest {
        name: "Retry".into(),
        administrator_email: "retry@example.com".into(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let first_request = request();
    let again = first_request.clone();
    let first = server
        .accounts()
        .create_account(with_token(OPERATOR, first_request))
        .await
        .unwrap()
        .into_inner();
    let second = server
        .accounts()
        .create_account(with_token(OPERATOR, again.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.account, second.account);
    assert_eq!(first.administrator, second.administrator);

    // The same key with another request is refused.
    let mut other = again;
    other.name = "Something else".into();
    assert_error(
        server
            .accounts()
            .create_account(with_token(OPERATOR, other))
            .await,
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
    );
    use sea_orm::{EntityTrait, PaginatorTrait};
    let accounts = identity::store::entities::account::Entity::find()
        .count(server.app.store.connection())
        .await
        .unwrap();
    assert_eq!(accounts, 1);
}

#[tokio::test]
async fn people_of_another_account_learn_nothing_about_it() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Mine", "me@mine.test").await;
    let (_, stranger) = server.create_account("Theirs", "them@theirs.test").await;
    let token = server.token_for(&stranger).await;
    let existing = server
        .accounts()
        .get_account(with_token(
            &token,
            proto::GetAccountRequest {
                account_id: account.id.clone(),
            },
        ))
        .await;
    let missing = server
        .accounts()
        .get_account(with_token(
            &token,
            proto::GetAccountRequest {
                account_id: Uuid::now_v7().to_string(),
            },
        ))
        .await;
    let existing = assert_error(existing, Code::PermissionDenied, "ACCOUNT_MISMATCH");
    let missing = assert_error(missing, Code::PermissionDenied, "ACCOUNT_MISMATCH");
    assert_eq!(existing.message(), missing.message());

    // Operators and readers see it; an unknown id is NOT_FOUND for them.
    for token in [OPERATOR, READER] {
        let read = server
            .accounts()
            .get_account(with_token(
                token,
                proto::GetAccountRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await
            .unwrap();
        assert_eq!(read.into_inner().account.unwrap().id, account.id);
    }
    assert_error(
        server
            .accounts()
            .get_account(with_token(
                OPERATOR,
                proto::GetAccountRequest {
                    account_id: Uuid::now_v7().to_string(),
                },
            ))
            .await,
        Code::NotFound,
        "ACCOUNT_NOT_FOUND",
    );
    let malformed = assert_error(
        server
            .accounts()
            .get_account(with_token(
                OPERATOR,
                proto::GetAccountRequest {
                    account_id: "42".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&malformed), ["account_id"]);
}

fn settings_request(
    account_id: &str,
    enforce: bool,
    etag: &str,
    paths: &[&str],
) -> proto::UpdateAccountSettingsRequest {
    proto::UpdateAccountSettingsRequest {
        account_id: account_id.to_owned(),
        settings: Some(AccountSettings {
            enforce_mfa: enforce,
        }),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        etag: etag.to_owned(),
    }
}

#[tokio::test]
async fn administrators_enforce_mfa_with_etags() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let token = server.token_for(&admin).await;
    let updated = server
        .accounts()
        .update_account_settings(with_token(
            &token,
            settings_request(&account.id, true, &account.etag, &["enforce_mfa"]),
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(updated.settings.unwrap().enforce_mfa);
    assert_ne!(updated.etag, account.etag);

    // The old etag is stale now.
    assert_error(
        server
            .accounts()
            .update_account_settings(with_token(
                &token,
                settings_request(&account.id, false, &account.etag, &["enforce_mfa"]),
            ))
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let still = server
        .accounts()
        .get_account(with_token(
            &token,
            proto::GetAccountRequest {
                account_id: account.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(still.settings.unwrap().enforce_mfa);

    // No etag: unconditional.
    let off = server
        .accounts()
        .update_account_settings(with_token(
            &token,
            settings_request(&account.id, false, "", &["*"]),
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(!off.settings.unwrap().enforce_mfa);
}

#[tokio::test]
async fn settings_need_users_manage_and_a_valid_mask() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;

    let developer = server
        .add_member(&account.id, "dev@acme.test", Role::Developer)
        .await;
    let developer = server.token_for(&developer).await;
    assert_error(
        server
            .accounts()
            .update_account_settings(with_token(
                &developer,
                settings_request(&account.id, true, "", &["enforce_mfa"]),
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    let token = server.token_for(&admin).await;
    for paths in [&[][..], &["name"][..], &["enforce_mfa", "limits"][..]] {
        let status = assert_error(
            server
                .accounts()
                .update_account_settings(with_token(
                    &token,
                    settings_request(&account.id, true, "", paths),
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["update_mask"], "{paths:?}");
    }
    assert_error(
        server
            .accounts()
            .update_account_settings(with_token(
                &token,
                settings_request(&account.id, true, "garbage", &["enforce_mfa"]),
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn only_operators_set_limits() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let request =
        |max_users: Option<i32>, max_groups: Option<i32>| proto::SetAccountLimitsRequest {
            account_id: account.id.clone(),
            max_users,
            max_groups,
            etag: String::new(),
        };
    assert_error(
        server
            .accounts()
            .set_account_limits(with_token(
                &server.token_for(&admin).await,
                request(None, Some(10)),
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    let raised = server
        .accounts()
        .set_account_limits(with_token(OPERATOR, request(None, Some(10))))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        raised.limits,
        Some(AccountLimits {
            max_users: 100,
            max_groups: 10
        })
    );
    let status = assert_error(
        server
            .accounts()
            .set_account_limits(with_token(OPERATOR, request(Some(0), Some(-1))))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["max_users", "max_groups"]);
    assert_error(
        server
            .accounts()
            .set_account_limits(with_token(OPERATOR, request(None, None)))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}
