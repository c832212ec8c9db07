//! UserService: every rule of the product page about users, roles and invitations.

use identity::domain::roles::Role;
use identity::proto::{self, CreateUserRequest, User};
use prost_types::FieldMask;
use tonic::Code;
use uuid::Uuid;

use crate::harness::*;

fn create(account_id: &str, email: &str, role: proto::Role) -> CreateUserRequest {
    CreateUserRequest {
        account_id: account_id.to_owned(),
        email: email.to_owned(),
        display_name: String::new(),
        role: role as i32,
        request_id: String::new(),
    }
}

/// An account, its administrator's token, and the administrator.
async fn setup(server: &TestServer) -> (proto::Account, String, User) {
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    (account, server.token_for(&admin).await, admin)
}

async fn add(
    server: &TestServer,
    token: &str,
    account_id: &str,
    email: &str,
    role: proto::Role,
) -> User {
    server
        .users()
        .create_user(with_token(token, create(account_id, email, role)))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

/// Support sets the account's user cap.
async fn set_max_users(server: &TestServer, account_id: &str, max_users: i32) {
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: account_id.to_owned(),
                max_users: Some(max_users),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

async fn account_of(server: &TestServer, account_id: &str) -> proto::Account {
    server
        .accounts()
        .get_account(with_token(
            OPERATOR,
            proto::GetAccountRequest {
                account_id: account_id.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
}

async fn wait_until_sent(
    server: &TestServer,
    to: &str,
    count: usize,
) -> Vec<identity::store::entities::outbox_email::Model> {
    for _ in 0..100 {
        let emails = server.emails_to(to).await;
        if emails.len() == count && emails.iter().all(|e| e.status == "sent") {
            return emails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{count} email(s) to {to} were not delivered: {:?}",
        server.emails_to(to).await
    );
}

#[tokio::test]
async fn an_invited_user_gets_a_set_password_email_with_a_single_link() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let mut request = create(&account.id, "New.Person@Acme.test", proto::Role::Developer);
    request.display_name = "  New Person ".into();
    let user = server
        .users()
        .create_user(with_token(&token, request))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "New.Person@Acme.test");
    assert_eq!(user.display_name, "New Person");
    assert_eq!(user.role, proto::Role::Developer as i32);
    assert_eq!(user.status, proto::MembershipStatus::Invited as i32);
    let expires = user.invitation_expire_time.unwrap();
    let created = user.create_time.unwrap();
    assert_eq!(expires.seconds - created.seconds, 7 * 24 * 3600);
    assert_eq!(account_of(&server, &account.id).await.user_count, 2);

    let emails = wait_until_sent(&server, "New.Person@Acme.test", 1).await;
    assert_eq!(emails[0].kind, "invitation");
    assert!(emails[0].provider_message_id.is_some());
    // The link's token is stored only as a hash, and the delivered email keeps no copy of it.
    use sea_orm::EntityTrait;
    let invitation = identity::store::entities::invitation::Entity::find_by_id((
        account.id.parse::<Uuid>().unwrap(),
        user.id.parse::<Uuid>().unwrap(),
    ))
    .one(server.app.store.connection())
    .await
    .unwrap()
    .unwrap();
    assert_eq!(invitation.token_hash.len(), 64);
    assert!(
        !emails[0].payload.contains("token="),
        "{}",
        emails[0].payload
    );
}

#[tokio::test]
async fn a_person_with_a_password_gets_an_added_to_account_email() {
    let server = TestServer::start().await;
    let (_, existing) = server.create_account("Other", "shared@example.com").await;
    server.give_password(&existing.id).await;
    let (account, token, _) = setup(&server).await;
    let mut request = create(&account.id, "SHARED@example.com", proto::Role::Finance);
    request.display_name = "Ignored Name".into();
    let user = server
        .users()
        .create_user(with_token(&token, request))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.id, existing.id, "one person across accounts");
    assert_eq!(
        user.display_name, existing.display_name,
        "an existing person keeps their name"
    );
    assert!(user.has_password);
    let emails = wait_until_sent(&server, "shared@example.com", 2).await;
    assert_eq!(emails[0].kind, "invitation");
    assert_eq!(emails[1].kind, "added_to_account");
}

#[tokio::test]
async fn only_administrators_manage_users() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    for role in [
        Role::Developer,
        Role::MediaLibraryFullAccess,
        Role::MediaLibraryViewOnly,
        Role::MediaLibraryRestricted,
        Role::Finance,
    ] {
        let member = server
            .add_member(&account.id, &format!("{}@acme.test", role.as_str()), role)
            .await;
        let other = server.token_for(&member).await;
        assert_error(
            server
                .users()
                .create_user(with_token(
                    &other,
                    create(&account.id, "n@acme.test", proto::Role::Finance),
                ))
                .await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
    }
    assert_error(
        server
            .users()
            .create_user(with_token(
                READER,
                create(&account.id, "n@acme.test", proto::Role::Finance),
            ))
            .await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );
    // Operators may, as support.
    add(
        &server,
        OPERATOR,
        &account.id,
        "support-added@acme.test",
        proto::Role::Finance,
    )
    .await;
    // Any member (and users.read services) may read the account's users, to pick share subjects.
    let restricted = server
        .add_member(&account.id, "r@acme.test", Role::MediaLibraryRestricted)
        .await;
    let member = server.token_for(&restricted).await;
    for t in [member.as_str(), READER, token.as_str()] {
        let list = server
            .users()
            .list_users(with_token(
                t,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        // The administrator, a member of each of the five other roles, the operator's and r@.
        assert_eq!(list.users.len(), 8);
    }
}

#[tokio::test]
async fn another_accounts_users_are_not_found_like_missing_ones() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let (_, stranger) = server.create_account("Theirs", "them@theirs.test").await;
    let get = |user_id: String| proto::GetUserRequest {
        account_id: account.id.clone(),
        user_id,
    };
    let theirs = assert_error(
        server
            .users()
            .get_user(with_token(&token, get(stranger.id.clone())))
            .await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    let missing = assert_error(
        server
            .users()
            .get_user(with_token(&token, get(Uuid::now_v7().to_string())))
            .await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_eq!(theirs.message(), missing.message());
    // And a person of the other account cannot look into this one.
    assert_error(
        server
            .users()
            .get_user(with_token(
                &server.token_for(&stranger).await,
                get(stranger.id.clone()),
            ))
            .await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
}

#[tokio::test]
async fn the_user_cap_counts_invited_users_and_support_can_raise_it() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    set_max_users(&server, &account.id, 3).await;
    add(
        &server,
        &token,
        &account.id,
        "two@acme.test",
        proto::Role::Developer,
    )
    .await;
    add(
        &server,
        &token,
        &account.id,
        "three@acme.test",
        proto::Role::Developer,
    )
    .await;
    let status = assert_error(
        server
            .users()
            .create_user(with_token(
                &token,
                create(&account.id, "four@acme.test", proto::Role::Developer),
            ))
            .await,
        Code::ResourceExhausted,
        "USER_LIMIT_REACHED",
    );
    assert!(status.message().contains("support"), "{}", status.message());
    assert!(
        server.emails_to("four@acme.test").await.is_empty(),
        "nothing is half-written"
    );
    assert_eq!(account_of(&server, &account.id).await.user_count, 3);

    set_max_users(&server, &account.id, 4).await;
    add(
        &server,
        &token,
        &account.id,
        "four@acme.test",
        proto::Role::Developer,
    )
    .await;
}

#[tokio::test]
async fn emails_are_validated_and_unique_ignoring_case() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    add(
        &server,
        &token,
        &account.id,
        "Ada@Example.com",
        proto::Role::Developer,
    )
    .await;
    assert_error(
        server
            .users()
            .create_user(with_token(
                &token,
                create(&account.id, " ada@example.COM ", proto::Role::Finance),
            ))
            .await,
        Code::AlreadyExists,
        "USER_ALREADY_MEMBER",
    );
    let mut bad = create(&account.id, "not an email", proto::Role::Unspecified);
    bad.display_name = "x".repeat(129);
    let status = assert_error(
        server.users().create_user(with_token(&token, bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["email", "display_name", "role"]);
    let status = assert_error(
        server
            .users()
            .create_user(with_token(
                &token,
                create(&account.id, "a@b.co", proto::Role::Developer).tap(|r| r.role = 42),
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["role"]);
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl<T> Tap for T {}

#[tokio::test]
async fn a_retried_create_returns_the_same_user_and_sends_one_email() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let mut request = create(&account.id, "once@acme.test", proto::Role::Developer);
    request.request_id = Uuid::new_v4().to_string();
    let first = server
        .users()
        .create_user(with_token(&token, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let second = server
        .users()
        .create_user(with_token(&token, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.user.as_ref().unwrap().id,
        second.user.as_ref().unwrap().id
    );
    assert_eq!(account_of(&server, &account.id).await.user_count, 2);
    assert_eq!(server.emails_to("once@acme.test").await.len(), 1);
    request.role = proto::Role::Finance as i32;
    assert_error(
        server
            .users()
            .create_user(with_token(&token, request))
            .await,
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
    );
}

fn update(account_id: &str, user: &User, paths: &[&str], etag: &str) -> proto::UpdateUserRequest {
    proto::UpdateUserRequest {
        account_id: account_id.to_owned(),
        user: Some(user.clone()),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        etag: etag.to_owned(),
    }
}

#[tokio::test]
async fn updates_check_etags_and_masks() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let user = add(
        &server,
        &token,
        &account.id,
        "dev@acme.test",
        proto::Role::Developer,
    )
    .await;
    let mut change = user.clone();
    change.display_name = "Dev One".into();
    change.role = proto::Role::Finance as i32;
    let updated = server
        .users()
        .update_user(with_token(
            &token,
            update(&account.id, &change, &["display_name", "role"], &user.etag),
        ))
        .await
        .unwrap()
        .into_inner();
    let after = updated.user.unwrap();
    assert_eq!(after.display_name, "Dev One");
    assert_eq!(after.role, proto::Role::Finance as i32);
    assert!(
        !updated.consistency_token.is_empty(),
        "a role change returns a consistency token"
    );
    assert_ne!(after.etag, user.etag);

    // The old etag is stale.
    assert_error(
        server
            .users()
            .update_user(with_token(
                &token,
                update(&account.id, &change, &["display_name"], &user.etag),
            ))
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    // A name-only change returns no consistency token.
    change.display_name = "Dev Two".into();
    let renamed = server
        .users()
        .update_user(with_token(
            &token,
            update(&account.id, &change, &["display_name"], &after.etag),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(renamed.consistency_token.is_empty());
    // Unknown and immutable paths are refused.
    for paths in [&["email"][..], &["status"][..], &["nickname"][..], &[][..]] {
        let status = assert_error(
            server
                .users()
                .update_user(with_token(&token, update(&account.id, &change, paths, "")))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["update_mask"], "{paths:?}");
    }
}

#[tokio::test]
async fn the_last_administrator_can_be_neither_deleted_nor_demoted() {
    let server = TestServer::start().await;
    let (account, token, admin) = setup(&server).await;
    server.activate(&admin).await;
    let mut demoted = admin.clone();
    demoted.role = proto::Role::Developer as i32;
    assert_error(
        server
            .users()
            .update_user(with_token(
                &token,
                update(&account.id, &demoted, &["role"], ""),
            ))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMINISTRATOR",
    );
    let delete = |user_id: &str| proto::DeleteUserRequest {
        account_id: account.id.clone(),
        user_id: user_id.to_owned(),
        ..Default::default()
    };
    assert_error(
        server
            .users()
            .delete_user(with_token(&token, delete(&admin.id)))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMINISTRATOR",
    );
    assert_error(
        server
            .users()
            .disable_user(with_token(
                &token,
                proto::DisableUserRequest {
                    account_id: account.id.clone(),
                    user_id: admin.id.clone(),
                    etag: String::new(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMINISTRATOR",
    );
    // An invited second administrator does not count as the active one.
    let second = add(
        &server,
        &token,
        &account.id,
        "second@acme.test",
        proto::Role::AccountAdministrator,
    )
    .await;
    assert_error(
        server
            .users()
            .delete_user(with_token(&token, delete(&admin.id)))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMINISTRATOR",
    );
    // Once the second is active, the first may go.
    server.activate(&second).await;
    server
        .users()
        .delete_user(with_token(&token, delete(&admin.id)))
        .await
        .unwrap();
    assert_eq!(account_of(&server, &account.id).await.user_count, 1);
}

#[tokio::test]
async fn a_new_accounts_invited_administrator_stays_until_replaced() {
    let server = TestServer::start().await;
    let (account, token, admin) = setup(&server).await;
    assert_error(
        server
            .users()
            .delete_user(with_token(
                &token,
                proto::DeleteUserRequest {
                    account_id: account.id.clone(),
                    user_id: admin.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMINISTRATOR",
    );
}

#[tokio::test]
async fn deleting_a_user_removes_the_membership_but_not_the_person() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let (_, other_admin) = server.create_account("Other", "both@example.com").await;
    let user = add(
        &server,
        &token,
        &account.id,
        "both@example.com",
        proto::Role::Developer,
    )
    .await;
    assert_eq!(user.id, other_admin.id);
    let delete = proto::DeleteUserRequest {
        account_id: account.id.clone(),
        user_id: user.id.clone(),
        ..Default::default()
    };
    let first = server
        .users()
        .delete_user(with_token(&token, delete.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.consistency_token.is_empty());
    assert_eq!(account_of(&server, &account.id).await.user_count, 1);
    assert_error(
        server
            .users()
            .get_user(with_token(
                &token,
                proto::GetUserRequest {
                    account_id: account.id.clone(),
                    user_id: user.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    // Still the administrator of the other account.
    let still = server
        .users()
        .get_user(with_token(
            OPERATOR,
            proto::GetUserRequest {
                account_id: other_admin.account_id.clone(),
                user_id: user.id.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(still.into_inner().user.unwrap().email, "both@example.com");
    // Deleting again: NOT_FOUND, or success with allow_missing.
    assert_error(
        server
            .users()
            .delete_user(with_token(&token, delete.clone()))
            .await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    let again = server
        .users()
        .delete_user(with_token(
            &token,
            proto::DeleteUserRequest {
                allow_missing: true,
                ..delete
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.consistency_token.is_empty());
}

#[tokio::test]
async fn resending_an_invitation_replaces_the_link_at_most_once_a_minute() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let user = add(
        &server,
        &token,
        &account.id,
        "late@acme.test",
        proto::Role::Developer,
    )
    .await;
    let resend = proto::ResendInvitationRequest {
        account_id: account.id.clone(),
        user_id: user.id.clone(),
    };
    let status = assert_error(
        server
            .users()
            .resend_invitation(with_token(&token, resend.clone()))
            .await,
        Code::ResourceExhausted,
        "INVITATION_RESEND_TOO_SOON",
    );
    // The creation's email counts: the comment promises a minute, and RetryInfo says when.
    use tonic_types::StatusExt;
    let wait = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap();
    assert!(
        wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(60),
        "{wait:?}"
    );

    use sea_orm::EntityTrait;
    let key = (
        account.id.parse::<Uuid>().unwrap(),
        user.id.parse::<Uuid>().unwrap(),
    );
    let hash = |s: &TestServer| {
        let conn = s.app.store.connection().clone();
        async move {
            identity::store::entities::invitation::Entity::find_by_id(key)
                .one(&conn)
                .await
                .unwrap()
                .unwrap()
                .token_hash
        }
    };
    let old = hash(&server).await;
    server.clock.advance(chrono::Duration::seconds(61));
    let resent = server
        .users()
        .resend_invitation(with_token(&token, resend.clone()))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_ne!(hash(&server).await, old, "the old link is dead");
    assert!(
        resent.invitation_expire_time.unwrap().seconds
            > user.invitation_expire_time.unwrap().seconds
    );
    wait_until_sent(&server, "late@acme.test", 2).await;

    // Accepted users have nothing to resend.
    server.activate(&user).await;
    server.clock.advance(chrono::Duration::seconds(61));
    assert_error(
        server
            .users()
            .resend_invitation(with_token(&token, resend))
            .await,
        Code::FailedPrecondition,
        "USER_NOT_INVITED",
    );
}

#[tokio::test]
async fn disabling_and_enabling_restores_the_earlier_status() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let invited = add(
        &server,
        &token,
        &account.id,
        "inv@acme.test",
        proto::Role::Developer,
    )
    .await;
    let active = add(
        &server,
        &token,
        &account.id,
        "act@acme.test",
        proto::Role::Developer,
    )
    .await;
    server.activate(&active).await;
    for (user, back) in [
        (&invited, proto::MembershipStatus::Invited),
        (&active, proto::MembershipStatus::Active),
    ] {
        let disabled = server
            .users()
            .disable_user(with_token(
                &token,
                proto::DisableUserRequest {
                    account_id: account.id.clone(),
                    user_id: user.id.clone(),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            disabled.user.unwrap().status,
            proto::MembershipStatus::Disabled as i32
        );
        assert!(!disabled.consistency_token.is_empty());
        let enabled = server
            .users()
            .enable_user(with_token(
                &token,
                proto::EnableUserRequest {
                    account_id: account.id.clone(),
                    user_id: user.id.clone(),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(enabled.user.unwrap().status, back as i32);
    }
}

#[tokio::test]
async fn lists_page_in_email_order_with_filters_and_tokens_tied_to_them() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    for i in 0..7 {
        let role = if i % 2 == 0 {
            proto::Role::Developer
        } else {
            proto::Role::Finance
        };
        add(
            &server,
            &token,
            &account.id,
            &format!("user{i}@acme.test"),
            role,
        )
        .await;
    }
    let list = |page_size: i32, page_token: String, role: proto::Role| proto::ListUsersRequest {
        account_id: account.id.clone(),
        page_size,
        page_token,
        role: role as i32,
        ..Default::default()
    };
    // Walk all 8 users 3 at a time.
    let mut emails = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = server
            .users()
            .list_users(with_token(
                &token,
                list(3, page_token, proto::Role::Unspecified),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= 3);
        emails.extend(page.users.into_iter().map(|u| u.email));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
    assert_eq!(emails.len(), 8);
    assert_eq!(emails[0], "admin@acme.test");

    let developers = server
        .users()
        .list_users(with_token(
            &token,
            list(2, String::new(), proto::Role::Developer),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        developers
            .users
            .iter()
            .all(|u| u.role == proto::Role::Developer as i32)
    );
    // The token of the developer list does not continue the finance list.
    assert_error(
        server
            .users()
            .list_users(with_token(
                &token,
                list(2, developers.next_page_token, proto::Role::Finance),
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    // Default 50, capped at 1000, negative refused.
    let all = server
        .users()
        .list_users(with_token(
            &token,
            list(0, String::new(), proto::Role::Unspecified),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.users.len(), 8);
    assert!(all.next_page_token.is_empty());
    let capped = server
        .users()
        .list_users(with_token(
            &token,
            list(5000, String::new(), proto::Role::Unspecified),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.users.len(), 8);
    assert_error(
        server
            .users()
            .list_users(with_token(
                &token,
                list(-1, String::new(), proto::Role::Unspecified),
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // Prefix (case-insensitive) and status filters.
    let prefixed = server
        .users()
        .list_users(with_token(
            &token,
            proto::ListUsersRequest {
                account_id: account.id.clone(),
                email_prefix: "USER1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        prefixed
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        ["user1@acme.test"]
    );
    // Only the administrator has accepted (to log in); the users added are invited.
    let active = server
        .users()
        .list_users(with_token(
            &token,
            proto::ListUsersRequest {
                account_id: account.id.clone(),
                status: proto::MembershipStatus::Active as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        active
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        ["admin@acme.test"]
    );
    assert_error(
        server
            .users()
            .list_users(with_token(
                &token,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    group_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
}

#[tokio::test]
async fn my_profile_shows_mfa_enforcement_and_renames_me() {
    let server = TestServer::start().await;
    let (account, token, admin) = setup(&server).await;
    server
        .accounts()
        .update_account_settings(with_token(
            &token,
            proto::UpdateAccountSettingsRequest {
                account_id: account.id.clone(),
                settings: Some(proto::AccountSettings { enforce_mfa: true }),
                update_mask: Some(FieldMask {
                    paths: vec!["enforce_mfa".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let me = server
        .users()
        .get_my_profile(with_token(&token, proto::GetMyProfileRequest {}))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.id, admin.id);
    assert!(me.mfa_enforced);
    let mut change = me.clone();
    change.display_name = "Renamed Me".into();
    let renamed = server
        .users()
        .update_my_profile(with_token(
            &token,
            proto::UpdateMyProfileRequest {
                user: Some(change.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
                etag: me.etag.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(renamed.display_name, "Renamed Me");
    assert_error(
        server
            .users()
            .update_my_profile(with_token(
                &token,
                proto::UpdateMyProfileRequest {
                    user: Some(change),
                    update_mask: Some(FieldMask {
                        paths: vec!["role".into()],
                    }),
                    etag: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_error(
        server
            .users()
            .get_my_profile(with_token(DAM, proto::GetMyProfileRequest {}))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
}

mod pg_only {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_user_cap_holds_under_concurrent_adds_on_two_replicas() {
        let db = Arc::new(TestDb::postgres().await);
        let one = TestServer::start_on(db.clone(), |_| {}).await;
        let two = TestServer::start_on(db.clone(), |_| {}).await;
        let (account, token, _) = setup(&one).await;
        set_max_users(&one, &account.id, 5).await;
        let calls = (0..50).map(|i| {
            let mut client = if i % 2 == 0 { one.users() } else { two.users() };
            let request = create(
                &account.id,
                &format!("racer{i}@acme.test"),
                proto::Role::Developer,
            );
            let token = token.clone();
            async move { client.create_user(with_token(&token, request)).await }
        });
        let results = futures::future::join_all(calls).await;
        let created = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(created, 4, "admin + 4 = the cap of 5");
        for result in results.into_iter().filter_map(|r| r.err()) {
            assert_eq!(result.code(), Code::ResourceExhausted);
            assert_eq!(reason(&result), "USER_LIMIT_REACHED");
        }
        assert_eq!(account_of(&one, &account.id).await.user_count, 5);
    }

    #[tokio::test]
    async fn concurrent_retries_at_the_cap_all_get_the_one_user() {
        let db = Arc::new(TestDb::postgres().await);
        let one = TestServer::start_on(db.clone(), |_| {}).await;
        let two = TestServer::start_on(db.clone(), |_| {}).await;
        let (account, token, _) = setup(&one).await;
        set_max_users(&one, &account.id, 2).await;
        let mut request = create(&account.id, "last-slot@acme.test", proto::Role::Developer);
        request.request_id = Uuid::new_v4().to_string();
        let calls = (0..10).map(|i| {
            let mut client = if i % 2 == 0 { one.users() } else { two.users() };
            let (request, token) = (request.clone(), token.clone());
            async move { client.create_user(with_token(&token, request)).await }
        });
        let ids: std::collections::BTreeSet<String> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| {
                r.expect("every retry gets the first result")
                    .into_inner()
                    .user
                    .unwrap()
                    .id
            })
            .collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(one.emails_to("last-slot@acme.test").await.len(), 1);
    }

    #[tokio::test]
    async fn two_administrators_demoting_each_other_at_once_leave_one() {
        let db = Arc::new(TestDb::postgres().await);
        let one = TestServer::start_on(db.clone(), |_| {}).await;
        let two = TestServer::start_on(db.clone(), |_| {}).await;
        let (account, token, first) = setup(&one).await;
        one.activate(&first).await;
        let second = add(
            &one,
            &token,
            &account.id,
            "second@acme.test",
            proto::Role::AccountAdministrator,
        )
        .await;
        one.activate(&second).await;
        let demote = |user: &User| {
            let mut user = user.clone();
            user.role = proto::Role::Developer as i32;
            update(&account.id, &user, &["role"], "")
        };
        // Each administrator demotes the other, through different replicas.
        let (mut via_one, mut via_two) = (one.users(), two.users());
        let (a, b) = tokio::join!(
            // Service tokens: a person's own session would end with the other's demotion.
            via_one.update_user(with_token(OPERATOR, demote(&first))),
            via_two.update_user(with_token(OPERATOR, demote(&second))),
        );
        let outcomes = [a.is_ok(), b.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{a:?} {b:?}");
        let failure = a.err().or(b.err()).unwrap();
        assert_eq!(reason(&failure), "LAST_ADMINISTRATOR");
        let admins = one
            .users()
            .list_users(with_token(
                OPERATOR,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    role: proto::Role::AccountAdministrator as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .users;
        assert_eq!(admins.len(), 1);
    }
}

async fn group_with(
    server: &TestServer,
    token: &str,
    account_id: &str,
    name: &str,
    members: &[&User],
) -> proto::Group {
    let group = server
        .groups()
        .create_group(with_token(
            token,
            proto::CreateGroupRequest {
                account_id: account_id.to_owned(),
                name: name.to_owned(),
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
            token,
            proto::AddGroupMembersRequest {
                account_id: account_id.to_owned(),
                group_id: group.id.clone(),
                user_ids: members.iter().map(|u| u.id.clone()).collect(),
            },
        ))
        .await
        .unwrap();
    group
}

async fn groups_of(server: &TestServer, token: &str, user: &User) -> Vec<String> {
    server
        .groups()
        .list_user_groups(with_token(
            token,
            proto::ListUserGroupsRequest {
                account_id: user.account_id.clone(),
                user_id: user.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .groups
        .into_iter()
        .map(|g| g.name)
        .collect()
}

#[tokio::test]
async fn a_role_change_takes_the_user_out_of_every_group() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let user = add(
        &server,
        &token,
        &account.id,
        "mover@acme.test",
        proto::Role::MediaLibraryRestricted,
    )
    .await;
    let stays = add(
        &server,
        &token,
        &account.id,
        "stays@acme.test",
        proto::Role::MediaLibraryRestricted,
    )
    .await;
    group_with(
        &server,
        &token,
        &account.id,
        "Marketing Team",
        &[&user, &stays],
    )
    .await;
    group_with(&server, &token, &account.id, "Sales Team", &[&user]).await;
    assert_eq!(
        groups_of(&server, &token, &user).await,
        ["Marketing Team", "Sales Team"]
    );

    // A name change keeps the groups.
    let mut renamed = user.clone();
    renamed.display_name = "Mover".into();
    server
        .users()
        .update_user(with_token(
            &token,
            update(&account.id, &renamed, &["display_name"], ""),
        ))
        .await
        .unwrap();
    assert_eq!(groups_of(&server, &token, &user).await.len(), 2);

    // A role change empties them, and says so with a newer consistency token.
    let mut promoted = user.clone();
    promoted.role = proto::Role::MediaLibraryFullAccess as i32;
    let changed = server
        .users()
        .update_user(with_token(
            &token,
            update(&account.id, &promoted, &["role"], ""),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!changed.consistency_token.is_empty());
    assert!(groups_of(&server, &token, &user).await.is_empty());
    assert_eq!(groups_of(&server, &token, &stays).await, ["Marketing Team"]);
}

#[tokio::test]
async fn users_list_by_group_and_leave_their_groups_when_removed() {
    let server = TestServer::start().await;
    let (account, token, _) = setup(&server).await;
    let a = add(
        &server,
        &token,
        &account.id,
        "a@acme.test",
        proto::Role::Developer,
    )
    .await;
    let b = add(
        &server,
        &token,
        &account.id,
        "b@acme.test",
        proto::Role::Developer,
    )
    .await;
    add(
        &server,
        &token,
        &account.id,
        "c@acme.test",
        proto::Role::Developer,
    )
    .await;
    let group = group_with(&server, &token, &account.id, "Design", &[&a, &b]).await;
    let in_group = |group_id: &str| proto::ListUsersRequest {
        account_id: account.id.clone(),
        group_id: group_id.to_owned(),
        ..Default::default()
    };
    let listed = server
        .users()
        .list_users(with_token(&token, in_group(&group.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        ["a@acme.test", "b@acme.test"]
    );

    server
        .users()
        .delete_user(with_token(
            &token,
            proto::DeleteUserRequest {
                account_id: account.id.clone(),
                user_id: a.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let listed = server
        .users()
        .list_users(with_token(&token, in_group(&group.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        ["b@acme.test"]
    );
    let members = server
        .groups()
        .get_group(with_token(
            &token,
            proto::GetGroupRequest {
                account_id: account.id.clone(),
                group_id: group.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .member_count;
    assert_eq!(members, 1);
}

#[tokio::test]
async fn bidirectional_controls_are_refused_in_names_and_emails() {
    let server = TestServer::start().await;
    let (account, _) = server.create_account("Acme", "admin@acme.test").await;
    // "Invoice\u{202E}fdp.exe" reads as "Invoiceexe.pdf".
    let refused = server
        .users()
        .create_user(with_token(
            OPERATOR,
            CreateUserRequest {
                account_id: account.id.clone(),
                email: "ann\u{2066}@acme.test".into(),
                display_name: "Invoice\u{202E}fdp.exe".into(),
                role: proto::Role::Developer as i32,
                ..Default::default()
            },
        ))
        .await;
    let status = assert_error(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["email", "display_name"]);
    let account_name = server
        .accounts()
        .create_account(with_token(
            OPERATOR,
            proto::CreateAccountRequest {
                name: "Acme\u{202E}".into(),
                administrator_email: "owner@acme.test".into(),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_error(account_name, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["name"]);
}
