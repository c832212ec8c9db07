//! GroupService: who may manage and read groups, the group cap, names, etags, idempotency,
//! batch membership changes with consistency tokens, and keyset lists.

use std::sync::Arc;

use identity::config::ServiceTokenConfig;
use identity::domain::roles::Role;
use identity::proto::{self, Group};
use identity::store::entities::account;
use prost_types::FieldMask;
use sea_orm::EntityTrait;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::harness::*;

/// A service token with `users.manage`, and one with only `access.check`.
const MANAGER: &str = "idt_test_manager";
const CHECKER: &str = "idt_test_checker";

async fn start_on(db: Arc<TestDb>) -> TestServer {
    TestServer::start_on(db, |config| {
        for (name, token, scope) in [
            ("manager", MANAGER, "users.manage"),
            ("checker", CHECKER, "access.check"),
        ] {
            config.service_tokens.push(ServiceTokenConfig {
                name: name.to_owned(),
                scopes: vec![scope.to_owned()],
                sha256: identity::auth::secret_token::digest_hex(token),
            });
        }
    })
    .await
}

/// A server, an account and its administrator's token.
async fn setup() -> (TestServer, proto::Account, String) {
    let server = start_on(Arc::new(TestDb::new().await)).await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let token = server.token_for(&admin).await;
    (server, account, token)
}

async fn create(
    server: &TestServer,
    token: &str,
    account_id: &str,
    name: &str,
) -> Result<Group, Status> {
    create_with(server, token, account_id, name, "").await
}

async fn create_with(
    server: &TestServer,
    token: &str,
    account_id: &str,
    name: &str,
    request_id: &str,
) -> Result<Group, Status> {
    server
        .groups()
        .create_group(with_token(
            token,
            proto::CreateGroupRequest {
                account_id: account_id.to_owned(),
                name: name.to_owned(),
                description: String::new(),
                request_id: request_id.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().group.unwrap())
}

async fn get(
    server: &TestServer,
    token: &str,
    account_id: &str,
    id: &str,
) -> Result<Group, Status> {
    server
        .groups()
        .get_group(with_token(
            token,
            proto::GetGroupRequest {
                account_id: account_id.to_owned(),
                group_id: id.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().group.unwrap())
}

async fn update(
    server: &TestServer,
    token: &str,
    account_id: &str,
    group: Group,
    paths: &[&str],
    etag: &str,
) -> Result<Group, Status> {
    server
        .groups()
        .update_group(with_token(
            token,
            proto::UpdateGroupRequest {
                account_id: account_id.to_owned(),
                group: Some(group),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
                etag: etag.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().group.unwrap())
}

async fn delete(
    server: &TestServer,
    token: &str,
    account_id: &str,
    id: &str,
    etag: &str,
    allow_missing: bool,
) -> Result<String, Status> {
    server
        .groups()
        .delete_group(with_token(
            token,
            proto::DeleteGroupRequest {
                account_id: account_id.to_owned(),
                group_id: id.to_owned(),
                etag: etag.to_owned(),
                allow_missing,
            },
        ))
        .await
        .map(|r| r.into_inner().consistency_token)
}

async fn add(
    server: &TestServer,
    token: &str,
    account_id: &str,
    group_id: &str,
    user_ids: &[&str],
) -> Result<proto::AddGroupMembersResponse, Status> {
    server
        .groups()
        .add_group_members(with_token(
            token,
            proto::AddGroupMembersRequest {
                account_id: account_id.to_owned(),
                group_id: group_id.to_owned(),
                user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn remove(
    server: &TestServer,
    token: &str,
    account_id: &str,
    group_id: &str,
    user_ids: &[&str],
) -> Result<proto::RemoveGroupMembersResponse, Status> {
    server
        .groups()
        .remove_group_members(with_token(
            token,
            proto::RemoveGroupMembersRequest {
                account_id: account_id.to_owned(),
                group_id: group_id.to_owned(),
                user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list(
    server: &TestServer,
    token: &str,
    account_id: &str,
    prefix: &str,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListGroupsResponse, Status> {
    server
        .groups()
        .list_groups(with_token(
            token,
            proto::ListGroupsRequest {
                account_id: account_id.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
                name_prefix: prefix.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list_members(
    server: &TestServer,
    token: &str,
    account_id: &str,
    group_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListGroupMembersResponse, Status> {
    server
        .groups()
        .list_group_members(with_token(
            token,
            proto::ListGroupMembersRequest {
                account_id: account_id.to_owned(),
                group_id: group_id.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list_user_groups(
    server: &TestServer,
    token: &str,
    account_id: &str,
    user_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListUserGroupsResponse, Status> {
    server
        .groups()
        .list_user_groups(with_token(
            token,
            proto::ListUserGroupsRequest {
                account_id: account_id.to_owned(),
                user_id: user_id.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn set_max_groups(server: &TestServer, account_id: &str, max_groups: i32) {
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: account_id.to_owned(),
                max_users: None,
                max_groups: Some(max_groups),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
}

/// The account row as stored: counters and access revision.
async fn stored_account(server: &TestServer, account_id: &str) -> account::Model {
    account::Entity::find_by_id(account_id.parse::<Uuid>().unwrap())
        .one(server.app.store.connection())
        .await
        .unwrap()
        .unwrap()
}

fn names(groups: &[Group]) -> Vec<&str> {
    groups.iter().map(|g| g.name.as_str()).collect()
}

#[tokio::test]
async fn administrators_and_user_managers_manage_groups_other_roles_are_denied() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    assert_eq!(group.account_id, account.id);
    assert_eq!(group.member_count, 0);
    create(&server, MANAGER, id, "By Service").await.unwrap();
    create(&server, OPERATOR, id, "By Support").await.unwrap();

    let member = server
        .add_member(id, "someone@acme.test", Role::MediaLibraryViewOnly)
        .await;
    for role in [
        Role::Developer,
        Role::MediaLibraryFullAccess,
        Role::MediaLibraryViewOnly,
        Role::MediaLibraryRestricted,
        Role::Finance,
    ] {
        let person = server
            .add_member(id, &format!("{}@acme.test", role.as_str()), role)
            .await;
        let token = server.token_for(&person).await;
        assert_error(
            create(&server, &token, id, "Nope").await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
        let renamed = Group {
            id: group.id.clone(),
            name: "Renamed".into(),
            ..Default::default()
        };
        assert_error(
            update(&server, &token, id, renamed, &["name"], "").await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
        assert_error(
            delete(&server, &token, id, &group.id, "", false).await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
        assert_error(
            add(&server, &token, id, &group.id, &[&member.id]).await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
        assert_error(
            remove(&server, &token, id, &group.id, &[&member.id]).await,
            Code::PermissionDenied,
            "PERMISSION_MISSING",
        );
    }
    // Services that only read users (the DAM) or check access may not change groups.
    for token in [DAM, READER, CHECKER] {
        assert_error(
            create(&server, token, id, "Nope").await,
            Code::PermissionDenied,
            "SCOPE_MISSING",
        );
        assert_error(
            add(&server, token, id, &group.id, &[&member.id]).await,
            Code::PermissionDenied,
            "SCOPE_MISSING",
        );
    }
    assert_error(
        server
            .groups()
            .create_group(proto::CreateGroupRequest {
                account_id: id.clone(),
                name: "Anonymous".into(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    // Support tooling on an account that does not exist.
    assert_error(
        create(&server, OPERATOR, &Uuid::now_v7().to_string(), "Nowhere").await,
        Code::NotFound,
        "ACCOUNT_NOT_FOUND",
    );
    // Nothing was created by the refused calls.
    assert_eq!(stored_account(&server, id).await.group_count, 3);
    let all = list(&server, &admin, id, "", 0, "").await.unwrap();
    assert_eq!(names(&all.groups), ["By Service", "By Support", "Editors"]);
}

#[tokio::test]
async fn members_of_the_account_and_user_readers_read_groups() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    let restricted = server
        .add_member(id, "restricted@acme.test", Role::MediaLibraryRestricted)
        .await;
    add(&server, &admin, id, &group.id, &[&restricted.id])
        .await
        .unwrap();
    let person = server.token_for(&restricted).await;
    for token in [person.as_str(), DAM, READER, MANAGER, OPERATOR] {
        let read = get(&server, token, id, &group.id).await.unwrap();
        assert_eq!(read.name, "Editors");
        assert_eq!(read.member_count, 1);
        let listed = list(&server, token, id, "", 0, "").await.unwrap();
        assert_eq!(names(&listed.groups), ["Editors"]);
        let members = list_members(&server, token, id, &group.id, 0, "")
            .await
            .unwrap();
        assert_eq!(members.users.len(), 1);
        assert_eq!(members.users[0].email, "restricted@acme.test");
        let of_user = list_user_groups(&server, token, id, &restricted.id, 0, "")
            .await
            .unwrap();
        assert_eq!(names(&of_user.groups), ["Editors"]);
    }
    assert_error(
        get(&server, CHECKER, id, &group.id).await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );
    assert_error(
        list(&server, CHECKER, id, "", 0, "").await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );
}

#[tokio::test]
async fn another_accounts_people_learn_nothing_about_its_groups() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Secret Project").await.unwrap();
    let (other, other_admin) = server.create_account("Other", "boss@other.test").await;
    let stranger = server.token_for(&other_admin).await;
    let missing = Uuid::now_v7().to_string();

    // Through the victim's account id: the same denial for an existing and a missing group.
    let existing = assert_error(
        get(&server, &stranger, id, &group.id).await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
    let absent = assert_error(
        get(&server, &stranger, id, &missing).await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
    assert_eq!(existing.message(), absent.message());
    for id_ in [&group.id, &missing] {
        assert_error(
            delete(&server, &stranger, id, id_, "", true).await,
            Code::PermissionDenied,
            "ACCOUNT_MISMATCH",
        );
        assert_error(
            list_members(&server, &stranger, id, id_, 0, "").await,
            Code::PermissionDenied,
            "ACCOUNT_MISMATCH",
        );
    }
    assert_error(
        list(&server, &stranger, id, "", 0, "").await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );

    // Through their own account id: the victim's group is as missing as a random id.
    let foreign = assert_error(
        get(&server, &stranger, &other.id, &group.id).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    let random = assert_error(
        get(&server, &stranger, &other.id, &missing).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    assert_eq!(foreign.message(), random.message());
    let renamed = Group {
        id: group.id.clone(),
        name: "Mine Now".into(),
        ..Default::default()
    };
    assert_error(
        update(&server, &stranger, &other.id, renamed, &["name"], "").await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    assert_error(
        delete(&server, &stranger, &other.id, &group.id, "", false).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    assert_error(
        add(&server, &stranger, &other.id, &group.id, &[&other_admin.id]).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    assert_eq!(
        get(&server, &admin, id, &group.id).await.unwrap().name,
        "Secret Project"
    );
}

#[tokio::test]
async fn the_group_cap_holds_until_support_raises_it() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    for i in 0..5 {
        create(&server, &admin, id, &format!("Group {i}"))
            .await
            .unwrap();
    }
    let request_id = Uuid::new_v4().to_string();
    let status = assert_error(
        create_with(&server, &admin, id, "Group 5", &request_id).await,
        Code::ResourceExhausted,
        "GROUP_LIMIT_REACHED",
    );
    assert!(status.message().contains("support"), "{}", status.message());
    let details = status.get_error_details();
    assert_eq!(
        details.error_info().unwrap().metadata.get("max_groups"),
        Some(&"5".to_owned())
    );
    assert_eq!(stored_account(&server, id).await.group_count, 5);
    // At the cap, a taken name still says so: it would fail whatever the cap.
    assert_error(
        create(&server, &admin, id, "group 0").await,
        Code::AlreadyExists,
        "GROUP_NAME_TAKEN",
    );

    set_max_groups(&server, id, 6).await;
    // The refused attempt left nothing behind, not even its request_id.
    let sixth = create_with(&server, &admin, id, "Group 5", &request_id)
        .await
        .unwrap();
    assert_eq!(sixth.name, "Group 5");
    assert_error(
        create(&server, &admin, id, "Group 6").await,
        Code::ResourceExhausted,
        "GROUP_LIMIT_REACHED",
    );
    let stored = stored_account(&server, id).await;
    assert_eq!((stored.group_count, stored.max_groups), (6, 6));

    // Deleting gives the place back.
    delete(&server, &admin, id, &sixth.id, "", false)
        .await
        .unwrap();
    assert_eq!(stored_account(&server, id).await.group_count, 5);
    create(&server, &admin, id, "Group 6").await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_cap() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    for i in 0..4 {
        create(&server, &admin, id, &format!("Existing {i}"))
            .await
            .unwrap();
    }
    let calls = (0..50).map(|i| {
        let (server, admin, id) = (&server, &admin, id);
        async move { create(server, admin, id, &format!("Racer {i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    let (created, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(created.len(), 1);
    for result in refused {
        assert_error(result, Code::ResourceExhausted, "GROUP_LIMIT_REACHED");
    }
    assert_eq!(stored_account(&server, id).await.group_count, 5);
    assert_eq!(
        list(&server, &admin, id, "", 0, "")
            .await
            .unwrap()
            .groups
            .len(),
        5
    );
}

#[tokio::test]
async fn names_are_unique_per_account_ignoring_case() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let marketing = create(&server, &admin, id, "Marketing Team").await.unwrap();
    assert_error(
        create(&server, &admin, id, "marketing team").await,
        Code::AlreadyExists,
        "GROUP_NAME_TAKEN",
    );
    assert_error(
        create(&server, &admin, id, "  MARKETING TEAM ").await,
        Code::AlreadyExists,
        "GROUP_NAME_TAKEN",
    );
    // Another account may use the name.
    let (other, other_admin) = server.create_account("Other", "boss@other.test").await;
    create(
        &server,
        &server.token_for(&other_admin).await,
        &other.id,
        "Marketing Team",
    )
    .await
    .unwrap();

    // Renaming onto a taken name is refused and changes nothing.
    let sales = create(&server, &admin, id, "Sales").await.unwrap();
    let onto = Group {
        id: sales.id.clone(),
        name: "MARKETING team".into(),
        ..Default::default()
    };
    assert_error(
        update(&server, &admin, id, onto, &["name"], &sales.etag).await,
        Code::AlreadyExists,
        "GROUP_NAME_TAKEN",
    );
    assert_eq!(get(&server, &admin, id, &sales.id).await.unwrap(), sales);
    // A group may change the case of its own name.
    let recased = Group {
        id: marketing.id.clone(),
        name: "MARKETING TEAM".into(),
        ..Default::default()
    };
    let recased = update(&server, &admin, id, recased, &["name"], "")
        .await
        .unwrap();
    assert_eq!(recased.name, "MARKETING TEAM");
    assert_eq!(stored_account(&server, id).await.group_count, 2);
}

#[tokio::test]
async fn bad_names_are_refused_with_a_field_violation() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    for bad in [
        "Sales-Team!".to_owned(),
        String::new(),
        "   ".to_owned(),
        "x".repeat(65),
        "Équipe".to_owned(),
    ] {
        let status = assert_error(
            create(&server, &admin, id, &bad).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["name"], "{bad:?}");
    }
    // Every bad field at once.
    let status = assert_error(
        server
            .groups()
            .create_group(with_token(
                &admin,
                proto::CreateGroupRequest {
                    account_id: "nope".into(),
                    name: "a/b".into(),
                    description: "d".repeat(1025),
                    request_id: "not allowed!".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["account_id", "name", "description", "request_id"]
    );
    assert_eq!(stored_account(&server, id).await.group_count, 0);

    // Trimmed; inner runs of spaces kept; 64 characters is the longest name.
    let trimmed = create(&server, &admin, id, "  Sales  Team ").await.unwrap();
    assert_eq!(trimmed.name, "Sales  Team");
    let longest = create(&server, &admin, id, &"x".repeat(64)).await.unwrap();
    assert_eq!(longest.name.len(), 64);

    let status = assert_error(
        update(
            &server,
            &admin,
            id,
            Group {
                id: trimmed.id.clone(),
                name: "Équipe".into(),
                ..Default::default()
            },
            &["name"],
            "",
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["group.name"]);
    let status = assert_error(
        update(
            &server,
            &admin,
            id,
            Group {
                id: "not-a-uuid".into(),
                description: "d".repeat(1025),
                ..Default::default()
            },
            &["name", "description"],
            "",
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["group.id", "group.name", "group.description"]
    );
}

#[tokio::test]
async fn updates_follow_the_mask_and_the_etag() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    let proposed = Group {
        id: group.id.clone(),
        name: "Ignored Name".into(),
        description: "People who edit".into(),
        ..Default::default()
    };

    // Only masked paths change.
    let described = update(
        &server,
        &admin,
        id,
        proposed.clone(),
        &["description"],
        &group.etag,
    )
    .await
    .unwrap();
    assert_eq!(described.name, "Editors");
    assert_eq!(described.description, "People who edit");
    assert_ne!(described.etag, group.etag);

    // The old etag is stale now; nothing changes.
    assert_error(
        update(
            &server,
            &admin,
            id,
            proposed.clone(),
            &["name"],
            &group.etag,
        )
        .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(
        get(&server, &admin, id, &group.id).await.unwrap(),
        described
    );

    // Unknown, immutable or missing paths are refused.
    for paths in [
        &[][..],
        &["member_count"][..],
        &["id"][..],
        &["account_id"][..],
        &["name", "etag"][..],
    ] {
        let status = assert_error(
            update(&server, &admin, id, proposed.clone(), paths, "").await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["update_mask"], "{paths:?}");
    }
    let status = assert_error(
        update(&server, &admin, id, proposed.clone(), &["name"], "garbage").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["etag"]);

    // `*` is every allowed path; an empty etag is unconditional.
    let both = update(&server, &admin, id, proposed.clone(), &["*"], "")
        .await
        .unwrap();
    assert_eq!(both.name, "Ignored Name");
    assert_eq!(both.description, "People who edit");

    let missing = Group {
        id: Uuid::now_v7().to_string(),
        ..proposed
    };
    assert_error(
        update(&server, &admin, id, missing, &["description"], "").await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_retried_create_returns_the_same_group() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let request_id = Uuid::new_v4().to_string();
    let first = create_with(&server, &admin, id, "Retry Me", &request_id)
        .await
        .unwrap();
    let again = create_with(&server, &admin, id, "Retry Me", &request_id)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(stored_account(&server, id).await.group_count, 1);

    // At the cap a retry still answers with its group.
    for i in 0..4 {
        create(&server, &admin, id, &format!("Filler {i}"))
            .await
            .unwrap();
    }
    let at_cap = create_with(&server, &admin, id, "Retry Me", &request_id)
        .await
        .unwrap();
    assert_eq!(at_cap.id, first.id);

    // The same key for another request is refused.
    assert_error(
        create_with(&server, &admin, id, "Something Else", &request_id).await,
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(stored_account(&server, id).await.group_count, 5);
}

#[tokio::test]
async fn a_request_id_is_remembered_for_a_day_then_forgotten() {
    let (server, account, _) = setup().await;
    let id = &account.id;
    // The operator's service token: a person's access token would expire as the clock moves.
    let admin = OPERATOR;
    let request_id = Uuid::new_v4().to_string();
    let first = create_with(&server, admin, id, "Retry Me", &request_id)
        .await
        .unwrap();
    server.clock.advance(chrono::Duration::hours(23));
    assert_error(
        create_with(&server, admin, id, "Something Else", &request_id).await,
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
    );
    // A day on, the key names a new request.
    server.clock.advance(chrono::Duration::hours(2));
    let second = create_with(&server, admin, id, "Something Else", &request_id)
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    let again = create_with(&server, admin, id, "Something Else", &request_id)
        .await
        .unwrap();
    assert_eq!(again.id, second.id);
    assert_eq!(stored_account(&server, id).await.group_count, 2);

    // Housekeeping deletes keys older than a day, and only those.
    let keys = || async {
        identity::store::entities::idempotency_key::Entity::find()
            .all(server.app.store.connection())
            .await
            .unwrap()
            .len()
    };
    assert_eq!(keys().await, 1);
    // A first pass prunes what else has aged: the change log's entry of the administrator's
    // accepted invitation, from the start of the test.
    identity::housekeeping::run_once(&server.app.store, &server.app.clock)
        .await
        .unwrap();
    let deleted = identity::housekeeping::run_once(&server.app.store, &server.app.clock)
        .await
        .unwrap();
    assert_eq!((deleted, keys().await), (0, 1));
    server.clock.advance(chrono::Duration::hours(25));
    let deleted = identity::housekeeping::run_once(&server.app.store, &server.app.clock)
        .await
        .unwrap();
    assert_eq!((deleted, keys().await), (1, 0));
}

#[tokio::test]
async fn members_are_added_and_removed_in_idempotent_batches() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    let ann = server
        .add_member(id, "ann@acme.test", Role::MediaLibraryRestricted)
        .await;
    let bob = server
        .add_member(id, "bob@acme.test", Role::Developer)
        .await;
    let revision = |token: &str| revision_of(&server, id, token);

    let added = add(&server, &admin, id, &group.id, &[&ann.id, &bob.id, &ann.id])
        .await
        .unwrap();
    let after_add = added.group.unwrap();
    assert_eq!(after_add.member_count, 2);
    assert_ne!(after_add.etag, group.etag);
    let first_token = revision(&added.consistency_token);
    assert_eq!(
        stored_account(&server, id).await.access_revision,
        first_token
    );

    // Adding members again succeeds and changes nothing but the revision.
    let again = add(&server, &admin, id, &group.id, &[&bob.id])
        .await
        .unwrap();
    let after_again = again.group.unwrap();
    assert_eq!(after_again.member_count, 2);
    assert_eq!(after_again.etag, after_add.etag);
    assert!(revision(&again.consistency_token) > first_token);

    // Removing non-members, people who are not users at all, and duplicates is fine.
    let stranger = Uuid::now_v7().to_string();
    let removed = remove(
        &server,
        &admin,
        id,
        &group.id,
        &[&bob.id, &stranger, &bob.id],
    )
    .await
    .unwrap();
    let after_remove = removed.group.unwrap();
    assert_eq!(after_remove.member_count, 1);
    assert!(revision(&removed.consistency_token) > revision(&again.consistency_token));
    assert_eq!(
        stored_account(&server, id).await.access_revision,
        revision(&removed.consistency_token)
    );
    let removed_again = remove(&server, &admin, id, &group.id, &[&bob.id])
        .await
        .unwrap();
    assert_eq!(removed_again.group.unwrap().member_count, 1);

    let members = list_members(&server, &admin, id, &group.id, 0, "")
        .await
        .unwrap();
    assert_eq!(members.users, std::slice::from_ref(&ann));

    // Any membership status may be added: an invited member too.
    let invited = server
        .invite_member(id, "invited@acme.test", Role::Developer)
        .await;
    assert_eq!(invited.status, proto::MembershipStatus::Invited as i32);
    let with_invited = add(&server, &admin, id, &group.id, &[&invited.id])
        .await
        .unwrap();
    assert_eq!(with_invited.group.unwrap().member_count, 2);
}

#[tokio::test]
async fn only_users_of_the_account_can_be_added_all_or_nothing() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    let ann = server
        .add_member(id, "ann@acme.test", Role::MediaLibraryRestricted)
        .await;
    let (other, _) = server.create_account("Other", "boss@other.test").await;
    let outsider = server
        .add_member(&other.id, "out@other.test", Role::Developer)
        .await;
    let nobody = Uuid::now_v7().to_string();
    let revision_before = stored_account(&server, id).await.access_revision;

    let status = assert_error(
        add(
            &server,
            &admin,
            id,
            &group.id,
            &[&ann.id, &outsider.id, &nobody, &outsider.id],
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["user_ids[1]", "user_ids[2]", "user_ids[3]"]
    );
    // All or nothing: Ann was not added, the revision did not move.
    assert_eq!(
        get(&server, &admin, id, &group.id)
            .await
            .unwrap()
            .member_count,
        0
    );
    assert_eq!(
        stored_account(&server, id).await.access_revision,
        revision_before
    );

    // Malformed ids, an empty batch and an oversized batch.
    let status = assert_error(
        add(&server, &admin, id, &group.id, &[&ann.id, "42"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["user_ids[1]"]);
    let status = assert_error(
        remove(&server, &admin, id, &group.id, &["x"]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["user_ids[0]"]);
    for ids in [Vec::new(), vec![ann.id.clone(); 1001]] {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let status = assert_error(
            add(&server, &admin, id, &group.id, &ids).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["user_ids"]);
        let status = assert_error(
            remove(&server, &admin, id, &group.id, &ids).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["user_ids"]);
    }
    // 1000 ids is a batch (all the same person here).
    let thousand = vec![ann.id.as_str(); 1000];
    let added = add(&server, &admin, id, &group.id, &thousand)
        .await
        .unwrap();
    assert_eq!(added.group.unwrap().member_count, 1);

    let missing = Uuid::now_v7().to_string();
    assert_error(
        add(&server, &admin, id, &missing, &[&ann.id]).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    assert_error(
        remove(&server, &admin, id, &missing, &[&ann.id]).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
}

#[tokio::test]
async fn deleting_a_group_takes_its_members_and_moves_the_revision() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let group = create(&server, &admin, id, "Editors").await.unwrap();
    let ann = server
        .add_member(id, "ann@acme.test", Role::MediaLibraryRestricted)
        .await;
    let added = add(&server, &admin, id, &group.id, &[&ann.id])
        .await
        .unwrap();
    let current = added.group.unwrap();

    // A stale etag is refused and deletes nothing.
    assert_error(
        delete(&server, &admin, id, &group.id, &group.etag, false).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(stored_account(&server, id).await.group_count, 1);

    let token = delete(&server, &admin, id, &group.id, &current.etag, false)
        .await
        .unwrap();
    let stored = stored_account(&server, id).await;
    assert!(revision_of(&server, id, &token) > revision_of(&server, id, &added.consistency_token));
    assert_eq!(stored.access_revision, revision_of(&server, id, &token));
    assert_eq!(stored.group_count, 0);
    assert_error(
        get(&server, &admin, id, &group.id).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    let of_ann = list_user_groups(&server, &admin, id, &ann.id, 0, "")
        .await
        .unwrap();
    assert!(of_ann.groups.is_empty());

    // Deleting again: NOT_FOUND, unless allow_missing.
    assert_error(
        delete(&server, &admin, id, &group.id, "", false).await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );
    let again = delete(&server, &admin, id, &group.id, "", true)
        .await
        .unwrap();
    assert_eq!(again, token);
    assert_eq!(stored_account(&server, id).await.group_count, 0);
}

#[tokio::test]
async fn groups_list_by_name_in_pages_tied_to_their_filter() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    set_max_groups(&server, id, 60).await;
    let mut expected = Vec::new();
    for i in 0..55 {
        // Mixed case: the order ignores it.
        let name = if i % 2 == 0 {
            format!("team {i:02}")
        } else {
            format!("Team {i:02}")
        };
        create(&server, &admin, id, &name).await.unwrap();
        expected.push(name);
    }
    create(&server, &admin, id, "Alpha").await.unwrap();
    create(&server, &admin, id, "zulu").await.unwrap();
    expected.insert(0, "Alpha".to_owned());
    expected.push("zulu".to_owned());

    // Default page size 50.
    let first = list(&server, &admin, id, "", 0, "").await.unwrap();
    assert_eq!(first.groups.len(), 50);
    assert!(!first.next_page_token.is_empty());
    let rest = list(&server, &admin, id, "", 0, &first.next_page_token)
        .await
        .unwrap();
    assert!(rest.next_page_token.is_empty());
    let all: Vec<String> = first
        .groups
        .iter()
        .chain(&rest.groups)
        .map(|g| g.name.clone())
        .collect();
    assert_eq!(all, expected);

    // Larger than the maximum is capped, not refused.
    let capped = list(&server, &admin, id, "", 5000, "").await.unwrap();
    assert_eq!(capped.groups.len(), 57);

    // A prefix ignores case; pages of 4 walk through it.
    let mut token = String::new();
    let mut walked = Vec::new();
    loop {
        let page = list(&server, &admin, id, "TEAM 1", 4, &token)
            .await
            .unwrap();
        assert!(page.groups.len() <= 4);
        walked.extend(page.groups.iter().map(|g| g.name.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let tens: Vec<String> = expected
        .iter()
        .filter(|n| n.to_lowercase().starts_with("team 1"))
        .cloned()
        .collect();
    assert_eq!(walked, tens);
    assert!(
        list(&server, &admin, id, "no-such!", 0, "")
            .await
            .unwrap()
            .groups
            .is_empty()
    );

    // A token belongs to its filter.
    let page = list(&server, &admin, id, "team", 2, "").await.unwrap();
    assert_error(
        list(&server, &admin, id, "alpha", 2, &page.next_page_token).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    assert_error(
        list(&server, &admin, id, "team", 2, "garbage").await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    let status = assert_error(
        list(&server, &admin, id, "", -1, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn group_members_and_user_groups_list_in_pages() {
    let (server, account, admin) = setup().await;
    let id = &account.id;
    let editors = create(&server, &admin, id, "Editors").await.unwrap();
    let viewers = create(&server, &admin, id, "viewers").await.unwrap();
    let authors = create(&server, &admin, id, "Authors").await.unwrap();
    create(&server, &admin, id, "Empty").await.unwrap();
    let mut people = Vec::new();
    for email in [
        "dora@acme.test",
        "Carl@acme.test",
        "bea@acme.test",
        "ALF@acme.test",
        "eve@acme.test",
    ] {
        people.push(
            server
                .add_member(id, email, Role::MediaLibraryRestricted)
                .await,
        );
    }
    let ids: Vec<&str> = people.iter().map(|p| p.id.as_str()).collect();
    add(&server, &admin, id, &editors.id, &ids).await.unwrap();
    add(&server, &admin, id, &viewers.id, &ids[..1])
        .await
        .unwrap();
    add(&server, &admin, id, &authors.id, &ids[..2])
        .await
        .unwrap();

    // Members by email ignoring case, in pages of 2.
    let mut token = String::new();
    let mut emails = Vec::new();
    loop {
        let page = list_members(&server, &admin, id, &editors.id, 2, &token)
            .await
            .unwrap();
        assert!(page.users.len() <= 2);
        emails.extend(page.users.iter().map(|u| u.email.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        emails,
        [
            "ALF@acme.test",
            "bea@acme.test",
            "Carl@acme.test",
            "dora@acme.test",
            "eve@acme.test"
        ]
    );
    let page = list_members(&server, &admin, id, &editors.id, 2, "")
        .await
        .unwrap();
    assert_error(
        list_members(&server, &admin, id, &authors.id, 2, &page.next_page_token).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    assert_error(
        list_members(&server, &admin, id, &Uuid::now_v7().to_string(), 0, "").await,
        Code::NotFound,
        "GROUP_NOT_FOUND",
    );

    // Dora's groups by name ignoring case, with their member counts, in pages of 2.
    let dora = &people[0];
    let first = list_user_groups(&server, &admin, id, &dora.id, 2, "")
        .await
        .unwrap();
    assert_eq!(names(&first.groups), ["Authors", "Editors"]);
    assert_eq!(
        first
            .groups
            .iter()
            .map(|g| g.member_count)
            .collect::<Vec<_>>(),
        [2, 5]
    );
    let second = list_user_groups(&server, &admin, id, &dora.id, 2, &first.next_page_token)
        .await
        .unwrap();
    assert_eq!(names(&second.groups), ["viewers"]);
    assert!(second.next_page_token.is_empty());
    // Member counts on ListGroups too.
    let all = list(&server, &admin, id, "", 0, "").await.unwrap();
    assert_eq!(
        all.groups
            .iter()
            .map(|g| (g.name.as_str(), g.member_count))
            .collect::<Vec<_>>(),
        [("Authors", 2), ("Editors", 5), ("Empty", 0), ("viewers", 1)]
    );

    // Tokens of another user or another list are refused.
    assert_error(
        list_user_groups(
            &server,
            &admin,
            id,
            &people[1].id,
            2,
            &first.next_page_token,
        )
        .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    let groups_page = list(&server, &admin, id, "", 1, "").await.unwrap();
    assert_error(
        list_user_groups(
            &server,
            &admin,
            id,
            &dora.id,
            1,
            &groups_page.next_page_token,
        )
        .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );

    // Someone who is not a user of the account.
    let (other, _) = server.create_account("Other", "boss@other.test").await;
    let outsider = server
        .add_member(&other.id, "out@other.test", Role::Developer)
        .await;
    for user_id in [outsider.id.clone(), Uuid::now_v7().to_string()] {
        assert_error(
            list_user_groups(&server, &admin, id, &user_id, 0, "").await,
            Code::NotFound,
            "USER_NOT_FOUND",
        );
    }
    let status = assert_error(
        list_user_groups(&server, &admin, id, "42", 0, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["user_id"]);
}

/// Several servers on one PostgreSQL database. Each signs access tokens with its own test key, so
/// these tests call as a service with `users.manage`, whose token both accept.
mod pg_only {
    use super::*;

    #[tokio::test]
    async fn concurrent_creates_on_two_servers_never_pass_the_cap() {
        let db = Arc::new(TestDb::postgres().await);
        let one = start_on(db.clone()).await;
        let two = start_on(db.clone()).await;
        let (account, _) = one.create_account("Acme", "admin@acme.test").await;
        let admin = MANAGER.to_owned();
        let id = &account.id;
        for i in 0..4 {
            create(&one, &admin, id, &format!("Existing {i}"))
                .await
                .unwrap();
        }
        let calls = (0..50).map(|i| {
            let server = if i % 2 == 0 { &one } else { &two };
            let (admin, id) = (&admin, id);
            async move { create(server, admin, id, &format!("Racer {i}")).await }
        });
        let results = futures::future::join_all(calls).await;
        let (created, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        assert_eq!(created.len(), 1);
        for result in refused {
            assert_error(result, Code::ResourceExhausted, "GROUP_LIMIT_REACHED");
        }
        assert_eq!(stored_account(&one, id).await.group_count, 5);
        assert_eq!(
            list(&two, &admin, id, "", 0, "")
                .await
                .unwrap()
                .groups
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn concurrent_creates_of_one_name_make_one_group() {
        let db = Arc::new(TestDb::postgres().await);
        let one = start_on(db.clone()).await;
        let two = start_on(db.clone()).await;
        let (account, _) = one.create_account("Acme", "admin@acme.test").await;
        let admin = MANAGER.to_owned();
        let id = &account.id;
        set_max_groups(&one, id, 100).await;
        let spellings = ["Marketing Team", "marketing team", "MARKETING TEAM"];
        let calls = (0..30).map(|i| {
            let server = if i % 2 == 0 { &one } else { &two };
            let (admin, id) = (&admin, id);
            async move { create(server, admin, id, spellings[i % 3]).await }
        });
        let results = futures::future::join_all(calls).await;
        let (created, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        assert_eq!(created.len(), 1);
        for result in refused {
            assert_error(result, Code::AlreadyExists, "GROUP_NAME_TAKEN");
        }
        assert_eq!(stored_account(&one, id).await.group_count, 1);
    }

    #[tokio::test]
    async fn concurrent_retries_of_one_create_make_one_group() {
        let db = Arc::new(TestDb::postgres().await);
        let one = start_on(db.clone()).await;
        let two = start_on(db.clone()).await;
        let (account, _) = one.create_account("Acme", "admin@acme.test").await;
        let admin = MANAGER.to_owned();
        let id = &account.id;
        // One place left: a retry must replay, not hit the cap its twin just reached.
        for i in 0..4 {
            create(&one, &admin, id, &format!("Existing {i}"))
                .await
                .unwrap();
        }
        let request_id = Uuid::new_v4().to_string();
        let calls = (0..10).map(|i| {
            let server = if i % 2 == 0 { &one } else { &two };
            let (admin, id, request_id) = (&admin, id, &request_id);
            async move { create_with(server, admin, id, "Once", request_id).await }
        });
        let results = futures::future::join_all(calls).await;
        let ids: std::collections::BTreeSet<String> =
            results.into_iter().map(|r| r.unwrap().id).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(stored_account(&one, id).await.group_count, 5);
    }

    #[tokio::test]
    async fn concurrent_membership_changes_on_two_servers_all_land() {
        let db = Arc::new(TestDb::postgres().await);
        let one = start_on(db.clone()).await;
        let two = start_on(db.clone()).await;
        let (account, _) = one.create_account("Acme", "admin@acme.test").await;
        let admin = MANAGER.to_owned();
        let id = &account.id;
        let group = create(&one, &admin, id, "Editors").await.unwrap();
        let mut people = Vec::new();
        for i in 0..20 {
            people.push(
                one.add_member(id, &format!("p{i}@acme.test"), Role::MediaLibraryRestricted)
                    .await,
            );
        }
        let calls = people.iter().enumerate().map(|(i, person)| {
            let server = if i % 2 == 0 { &one } else { &two };
            let (admin, id, group_id) = (&admin, id, &group.id);
            async move { add(server, admin, id, group_id, &[&person.id]).await }
        });
        let tokens: std::collections::BTreeSet<i64> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| revision_of(&one, id, &r.unwrap().consistency_token))
            .collect();
        // Every write got a revision of its own.
        assert_eq!(tokens.len(), 20);
        assert_eq!(
            get(&two, &admin, id, &group.id).await.unwrap().member_count,
            20
        );
        assert_eq!(
            stored_account(&one, id).await.access_revision,
            *tokens.last().unwrap()
        );
    }
}
