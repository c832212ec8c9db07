//! AccessService sharing and checks: the rules of SPEC section 4 as the DAM sees them through
//! the API, the callers and errors of the contract, and the cascades of user and group changes.

use identity::domain::roles::Role;
use identity::proto::{
    self, AccessLevel, BatchCheckAccessRequest, CheckAccessItem, CheckAccessRequest,
    ExplainAccessRequest, GrantReason, ListResourceSharesRequest, ListSharedWithUserRequest,
    ResourceCheck, ResourcePlacement, ResourceRef, ResourceType, RevokeShareRequest,
    ShareResourceRequest, Subject, access_service_client::AccessServiceClient,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

pub fn access(server: &TestServer) -> AccessServiceClient<Channel> {
    AccessServiceClient::new(server.channel())
}

pub fn file(id: &str) -> ResourceRef {
    ResourceRef {
        r#type: ResourceType::File as i32,
        id: id.to_owned(),
    }
}

pub fn folder(id: &str) -> ResourceRef {
    ResourceRef {
        r#type: ResourceType::Folder as i32,
        id: id.to_owned(),
    }
}

pub fn to_user(id: &str) -> Option<Subject> {
    Some(Subject {
        kind: Some(proto::subject::Kind::UserId(id.to_owned())),
    })
}

pub fn to_group(id: &str) -> Option<Subject> {
    Some(Subject {
        kind: Some(proto::subject::Kind::GroupId(id.to_owned())),
    })
}

/// A check of `resource` under `ancestors` (nearest first).
pub fn placed(resource: ResourceRef, ancestors: &[&str]) -> ResourceCheck {
    ResourceCheck {
        resource: Some(resource),
        ancestor_folder_ids: ancestors.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    }
}

/// An account with an administrator, a Restricted member in one group, and that group.
pub struct Acme {
    pub server: TestServer,
    pub account: String,
    pub admin: String,
    pub rita: proto::User,
    pub group: String,
}

impl Acme {
    pub async fn start() -> Self {
        Self::on(TestServer::start().await).await
    }

    pub async fn on(server: TestServer) -> Self {
        let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
        server.activate(&admin).await;
        let admin = server.token_for(&admin).await;
        let rita = server
            .add_member(&account.id, "rita@acme.test", Role::MediaLibraryRestricted)
            .await;
        let group = server
            .groups()
            .create_group(with_token(
                &admin,
                proto::CreateGroupRequest {
                    account_id: account.id.clone(),
                    name: "Editors".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap()
            .id;
        server
            .groups()
            .add_group_members(with_token(
                &admin,
                proto::AddGroupMembersRequest {
                    account_id: account.id.clone(),
                    group_id: group.clone(),
                    user_ids: vec![rita.id.clone()],
                },
            ))
            .await
            .unwrap();
        Self {
            server,
            account: account.id,
            admin,
            rita,
            group,
        }
    }

    /// Shares as the DAM; returns the share id and the consistency token.
    pub async fn share(
        &self,
        resource: ResourceRef,
        subject: Option<Subject>,
        level: AccessLevel,
    ) -> (String, String) {
        let response = access(&self.server)
            .share_resource(with_token(
                DAM,
                ShareResourceRequest {
                    account_id: self.account.clone(),
                    resource: Some(resource),
                    subject,
                    level: level as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        (response.share.unwrap().id, response.consistency_token)
    }

    /// The level of `user_id` on `check`, asked by the DAM with `token`.
    pub async fn level(&self, user_id: &str, check: ResourceCheck, token: &str) -> AccessLevel {
        let response = access(&self.server)
            .check_access(with_token(
                DAM,
                CheckAccessRequest {
                    account_id: self.account.clone(),
                    user_id: user_id.to_owned(),
                    target: Some(proto::check_access_request::Target::Resource(check)),
                    consistency_token: token.to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.allowed,
            response.level >= AccessLevel::View as i32,
            "allowed follows the level at the default required VIEW"
        );
        AccessLevel::try_from(response.level).unwrap()
    }
}

#[tokio::test]
async fn a_folder_share_to_a_group_reaches_its_members_below_it_until_revoked() {
    let acme = Acme::start().await;
    let below = placed(file("photo-1"), &["summer", "campaigns"]);
    assert_eq!(
        acme.level(&acme.rita.id, below.clone(), "").await,
        AccessLevel::None
    );

    let (share, token) = acme
        .share(
            folder("campaigns"),
            to_group(&acme.group),
            AccessLevel::Contribute,
        )
        .await;
    assert_eq!(
        acme.level(&acme.rita.id, below.clone(), &token).await,
        AccessLevel::Contribute
    );
    // Elsewhere in the tree: nothing.
    let elsewhere = placed(file("photo-2"), &["archive"]);
    assert_eq!(
        acme.level(&acme.rita.id, elsewhere, &token).await,
        AccessLevel::None
    );

    let revoked = access(&acme.server)
        .revoke_share(with_token(
            DAM,
            RevokeShareRequest {
                account_id: acme.account.clone(),
                share_id: share.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme.level(&acme.rita.id, below, &revoked.consistency_token)
            .await,
        AccessLevel::None
    );
    // Revoking again: not found, unless allowed to be missing.
    let again = access(&acme.server)
        .revoke_share(with_token(
            DAM,
            RevokeShareRequest {
                account_id: acme.account.clone(),
                share_id: share.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(again, Code::NotFound, "SHARE_NOT_FOUND");
    access(&acme.server)
        .revoke_share(with_token(
            DAM,
            RevokeShareRequest {
                account_id: acme.account.clone(),
                share_id: share,
                allow_missing: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn sharing_again_replaces_the_level_and_a_lower_share_never_lowers() {
    let acme = Acme::start().await;
    let (first, _) = acme
        .share(folder("a"), to_user(&acme.rita.id), AccessLevel::Manage)
        .await;
    let response = access(&acme.server)
        .share_resource(with_token(
            DAM,
            ShareResourceRequest {
                account_id: acme.account.clone(),
                resource: Some(folder("a")),
                subject: to_user(&acme.rita.id),
                level: AccessLevel::View as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!response.created);
    let share = response.share.unwrap();
    assert_eq!(share.id, first);
    assert_eq!(share.level, AccessLevel::View as i32);
    assert_eq!(share.created_by, "service:dam");

    // VIEW on the folder, MANAGE through the group on a file below: MANAGE; and a VIEW share on
    // the file under a MANAGE folder does not lower it.
    let (_, token) = acme
        .share(file("f"), to_group(&acme.group), AccessLevel::Manage)
        .await;
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("f"), &["a"]), &token)
            .await,
        AccessLevel::Manage
    );
    acme.share(folder("b"), to_user(&acme.rita.id), AccessLevel::Manage)
        .await;
    let (_, token) = acme
        .share(file("g"), to_user(&acme.rita.id), AccessLevel::View)
        .await;
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("g"), &["b"]), &token)
            .await,
        AccessLevel::Manage
    );
}

#[tokio::test]
async fn collections_owners_roles_and_inactive_members() {
    let acme = Acme::start().await;
    let collection = ResourceRef {
        r#type: ResourceType::Collection as i32,
        id: "best-of".into(),
    };
    let (_, token) = acme
        .share(
            collection.clone(),
            to_user(&acme.rita.id),
            AccessLevel::Contribute,
        )
        .await;
    let in_collection = ResourceCheck {
        resource: Some(file("f")),
        collection_ids: vec!["best-of".into()],
        ..Default::default()
    };
    assert_eq!(
        acme.level(&acme.rita.id, in_collection, &token).await,
        AccessLevel::View
    );
    assert_eq!(
        acme.level(&acme.rita.id, placed(collection, &[]), &token)
            .await,
        AccessLevel::Contribute
    );
    let owned = ResourceCheck {
        resource: Some(file("mine")),
        owner_user_id: acme.rita.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        acme.level(&acme.rita.id, owned, &token).await,
        AccessLevel::Manage
    );

    // Roles give their level everywhere; Finance none.
    for (role, level) in [
        (Role::AccountAdministrator, AccessLevel::Manage),
        (Role::Developer, AccessLevel::Manage),
        (Role::MediaLibraryFullAccess, AccessLevel::Manage),
        (Role::MediaLibraryViewOnly, AccessLevel::View),
        (Role::Finance, AccessLevel::None),
    ] {
        let user = acme
            .server
            .add_member(&acme.account, &format!("{}@acme.test", role.as_str()), role)
            .await;
        assert_eq!(
            acme.level(&user.id, placed(file("any"), &[]), "").await,
            level,
            "{role}"
        );
    }

    // Invited (never activated), unknown users: NONE, as an answer.
    let invited = acme
        .server
        .users()
        .create_user(with_token(
            OPERATOR,
            proto::CreateUserRequest {
                account_id: acme.account.clone(),
                email: "new@acme.test".into(),
                role: proto::Role::AccountAdministrator as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        acme.level(&invited.id, placed(file("any"), &[]), "").await,
        AccessLevel::None
    );
    let stranger = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        acme.level(&stranger, placed(file("any"), &[]), "").await,
        AccessLevel::None
    );
}

#[tokio::test]
async fn permission_checks_follow_the_stored_role() {
    let acme = Acme::start().await;
    let ask = |user: String, permission: &str| CheckAccessRequest {
        account_id: acme.account.clone(),
        user_id: user,
        target: Some(proto::check_access_request::Target::Permission(
            permission.to_owned(),
        )),
        ..Default::default()
    };
    let finance = acme
        .server
        .add_member(&acme.account, "fin@acme.test", Role::Finance)
        .await;
    for (permission, allowed) in [("billing.view", true), ("users.manage", false)] {
        let response = access(&acme.server)
            .check_access(with_token(DAM, ask(finance.id.clone(), permission)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.allowed, allowed, "{permission}");
        assert_eq!(response.level, AccessLevel::Unspecified as i32);
    }
    let unknown = access(&acme.server)
        .check_access(with_token(DAM, ask(finance.id.clone(), "billing.steal")))
        .await;
    let status = assert_error(unknown, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["permission"]);
    let mut with_level = ask(finance.id, "billing.view");
    with_level.required_level = AccessLevel::View as i32;
    let status = assert_error(
        access(&acme.server)
            .check_access(with_token(DAM, with_level))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["required_level"]);
}

#[tokio::test]
async fn bad_shares_are_refused_with_their_fields() {
    let acme = Acme::start().await;
    let share = |resource: Option<ResourceRef>, subject: Option<Subject>, level: AccessLevel| {
        with_token(
            DAM,
            ShareResourceRequest {
                account_id: acme.account.clone(),
                resource,
                subject,
                level: level as i32,
                ..Default::default()
            },
        )
    };
    let root = access(&acme.server)
        .share_resource(share(
            Some(folder("root")),
            to_user(&acme.rita.id),
            AccessLevel::View,
        ))
        .await;
    let status = assert_error(root, Code::InvalidArgument, "ROOT_NOT_SHAREABLE");
    assert_eq!(violated_fields(&status), ["resource.id"]);

    let bad = access(&acme.server)
        .share_resource(share(
            Some(ResourceRef {
                r#type: 0,
                id: "x\u{7}".into(),
            }),
            None,
            AccessLevel::None,
        ))
        .await;
    let status = assert_error(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violated_fields(&status),
        ["resource.type", "resource.id", "subject", "level"]
    );

    // A user or group of another account is not a subject here.
    let (other, other_admin) = acme
        .server
        .create_account("Other", "admin@other.test")
        .await;
    for (subject, field) in [
        (to_user(&other_admin.id), "subject.user_id"),
        (
            to_group(&uuid::Uuid::new_v4().to_string()),
            "subject.group_id",
        ),
    ] {
        let status = assert_error(
            access(&acme.server)
                .share_resource(share(Some(file("f")), subject, AccessLevel::View))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), [field]);
    }
    let listed = access(&acme.server)
        .list_resource_shares(with_token(
            DAM,
            ListResourceSharesRequest {
                account_id: acme.account.clone(),
                resource: Some(file("f")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.shares.is_empty(), "nothing was shared");
    let _ = other;
}

#[tokio::test]
async fn who_may_share_check_and_explain() {
    let acme = Acme::start().await;
    let server = &acme.server;
    let rita = server.token_for(&acme.rita).await;
    let viewer = server
        .add_member(
            &acme.account,
            "viewer@acme.test",
            Role::MediaLibraryViewOnly,
        )
        .await;
    let viewer_token = server.token_for(&viewer).await;
    let request = |placement: Option<ResourcePlacement>| ShareResourceRequest {
        account_id: acme.account.clone(),
        resource: Some(file("f")),
        subject: to_user(&viewer.id),
        level: AccessLevel::View as i32,
        placement,
        ..Default::default()
    };
    // A Restricted user needs MANAGE on the resource, from the placement.
    let denied = access(server)
        .share_resource(with_token(&rita, request(None)))
        .await;
    assert_error(denied, Code::PermissionDenied, "PERMISSION_MISSING");
    acme.share(folder("team"), to_user(&acme.rita.id), AccessLevel::Manage)
        .await;
    let placement = Some(ResourcePlacement {
        ancestor_folder_ids: vec!["team".into()],
        ..Default::default()
    });
    let made = access(server)
        .share_resource(with_token(&rita, request(placement)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.share.unwrap().created_by, acme.rita.id);
    // View-only may not share; the administrator may.
    assert_error(
        access(server)
            .share_resource(with_token(&viewer_token, request(None)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    access(server)
        .share_resource(with_token(&acme.admin, request(None)))
        .await
        .unwrap();
    // A service needs access.share; READER has only users.read.
    assert_error(
        access(server)
            .share_resource(with_token(READER, request(None)))
            .await,
        Code::PermissionDenied,
        "SCOPE_MISSING",
    );

    // Checks: a person about themself, or with users.manage about anyone.
    let check_of = |user: &str| CheckAccessRequest {
        account_id: acme.account.clone(),
        user_id: user.to_owned(),
        target: Some(proto::check_access_request::Target::Resource(placed(
            file("f"),
            &[],
        ))),
        ..Default::default()
    };
    access(server)
        .check_access(with_token(&rita, check_of(&acme.rita.id)))
        .await
        .unwrap();
    assert_error(
        access(server)
            .check_access(with_token(&rita, check_of(&viewer.id)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    let seen = access(server)
        .check_access(with_token(&acme.admin, check_of(&viewer.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.level, AccessLevel::View as i32);
    // Another account's person: ACCOUNT_MISMATCH.
    let (other, other_admin) = server.create_account("Other", "admin@other.test").await;
    server.activate(&other_admin).await;
    let outsider = server.token_for(&other_admin).await;
    assert_error(
        access(server)
            .check_access(with_token(&outsider, check_of(&acme.rita.id)))
            .await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
    let _ = other;

    // Explain: every contributing grant, highest first.
    acme.share(file("f"), to_group(&acme.group), AccessLevel::Contribute)
        .await;
    let explained = access(server)
        .explain_access(with_token(
            &rita,
            ExplainAccessRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                resource: Some(ResourceCheck {
                    resource: Some(file("f")),
                    ancestor_folder_ids: vec!["team".into(), "root".into()],
                    owner_user_id: acme.rita.id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.level, AccessLevel::Manage as i32);
    assert_eq!(explained.role, proto::Role::MediaLibraryRestricted as i32);
    assert_eq!(explained.status, proto::MembershipStatus::Active as i32);
    let reasons: Vec<_> = explained
        .grants
        .iter()
        .map(|g| (GrantReason::try_from(g.reason).unwrap(), g.level))
        .collect();
    assert_eq!(
        reasons,
        [
            (GrantReason::Owner, AccessLevel::Manage as i32),
            (GrantReason::InheritedFromFolder, AccessLevel::Manage as i32),
            (GrantReason::GroupShare, AccessLevel::Contribute as i32),
        ]
    );
    let group_grant = &explained.grants[2];
    assert_eq!(group_grant.subject, to_group(&acme.group));
    assert_eq!(group_grant.granted_on, Some(file("f")));
    assert!(!group_grant.share_id.is_empty());
    assert!(!explained.consistency_token.is_empty());
}

#[tokio::test]
async fn consistency_tokens_are_bound_to_their_account_and_unforgeable() {
    let acme = Acme::start().await;
    let (_, token) = acme
        .share(file("f"), to_user(&acme.rita.id), AccessLevel::View)
        .await;
    let (other, _) = acme
        .server
        .create_account("Other", "admin@other.test")
        .await;
    let ask = |account: &str, token: &str| CheckAccessRequest {
        account_id: account.to_owned(),
        user_id: acme.rita.id.clone(),
        target: Some(proto::check_access_request::Target::Resource(placed(
            file("f"),
            &[],
        ))),
        consistency_token: token.to_owned(),
        ..Default::default()
    };
    for (account, bad) in [
        (other.id.as_str(), token.as_str()),
        (acme.account.as_str(), "1"),
        (acme.account.as_str(), "not a token"),
    ] {
        let status = assert_error(
            access(&acme.server)
                .check_access(with_token(DAM, ask(account, bad)))
                .await,
            Code::InvalidArgument,
            "CONSISTENCY_TOKEN_INVALID",
        );
        assert_eq!(violated_fields(&status), ["consistency_token"]);
    }
    // The response carries a token at least as new as the one sent.
    let answered = access(&acme.server)
        .check_access(with_token(DAM, ask(&acme.account, &token)))
        .await
        .unwrap()
        .into_inner();
    assert!(answered.allowed);
    assert!(!answered.consistency_token.is_empty());
    access(&acme.server)
        .check_access(with_token(
            DAM,
            ask(&acme.account, &answered.consistency_token),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_answers_in_order_and_fails_whole_on_a_bad_item() {
    let acme = Acme::start().await;
    let (_, token) = acme
        .share(folder("a"), to_group(&acme.group), AccessLevel::Contribute)
        .await;
    let admin_user = acme
        .server
        .add_member(&acme.account, "dev@acme.test", Role::Developer)
        .await;
    let item = |user: &str, ancestors: &[&str], required: AccessLevel| CheckAccessItem {
        user_id: user.to_owned(),
        target: Some(proto::check_access_item::Target::Resource(placed(
            file("x"),
            ancestors,
        ))),
        required_level: required as i32,
    };
    let items = vec![
        item(&acme.rita.id, &["a"], AccessLevel::Contribute),
        item(&acme.rita.id, &["a"], AccessLevel::Manage),
        item(&acme.rita.id, &["b"], AccessLevel::Unspecified),
        item(&admin_user.id, &["b"], AccessLevel::Manage),
        CheckAccessItem {
            user_id: admin_user.id.clone(),
            target: Some(proto::check_access_item::Target::Permission(
                "settings.manage".into(),
            )),
            required_level: 0,
        },
    ];
    let results = access(&acme.server)
        .batch_check_access(with_token(
            DAM,
            BatchCheckAccessRequest {
                account_id: acme.account.clone(),
                consistency_token: token.clone(),
                items: items.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    let got: Vec<_> = results.iter().map(|r| (r.allowed, r.level)).collect();
    assert_eq!(
        got,
        [
            (true, AccessLevel::Contribute as i32),
            (false, AccessLevel::Contribute as i32),
            (false, AccessLevel::None as i32),
            (true, AccessLevel::Manage as i32),
            (true, AccessLevel::Unspecified as i32),
        ]
    );

    let mut bad = items.clone();
    bad[3].target = Some(proto::check_access_item::Target::Resource(placed(
        file(""),
        &[],
    )));
    bad[1].user_id = "nope".into();
    let status = assert_error(
        access(&acme.server)
            .batch_check_access(with_token(
                DAM,
                BatchCheckAccessRequest {
                    account_id: acme.account.clone(),
                    items: bad,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["items[1].user_id", "items[3].resource.resource.id"]
    );
    for count in [0, 1001] {
        let status = assert_error(
            access(&acme.server)
                .batch_check_access(with_token(
                    DAM,
                    BatchCheckAccessRequest {
                        account_id: acme.account.clone(),
                        items: vec![items[0].clone(); count],
                        ..Default::default()
                    },
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["items"]);
    }
    let too_deep = ResourceCheck {
        resource: Some(file("x")),
        ancestor_folder_ids: (0..257).map(|i| format!("f{i}")).collect(),
        ..Default::default()
    };
    let status = assert_error(
        access(&acme.server)
            .check_access(with_token(
                DAM,
                CheckAccessRequest {
                    account_id: acme.account.clone(),
                    user_id: acme.rita.id.clone(),
                    target: Some(proto::check_access_request::Target::Resource(too_deep)),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["resource.ancestor_folder_ids"]);
}

#[tokio::test]
async fn removing_a_user_deletes_their_shares_and_a_role_change_keeps_them() {
    let acme = Acme::start().await;
    let server = &acme.server;
    let (_, _) = acme
        .share(file("direct"), to_user(&acme.rita.id), AccessLevel::View)
        .await;
    let (_, _) = acme
        .share(folder("g"), to_group(&acme.group), AccessLevel::Manage)
        .await;

    // A role change takes Rita out of her group and keeps her direct share (View-only and
    // back, to stay Restricted).
    for role in [
        proto::Role::MediaLibraryViewOnly,
        proto::Role::MediaLibraryRestricted,
    ] {
        server
            .users()
            .update_user(with_token(
                &acme.admin,
                proto::UpdateUserRequest {
                    account_id: acme.account.clone(),
                    user: Some(proto::User {
                        id: acme.rita.id.clone(),
                        role: role as i32,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["role".into()],
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let token = access(server)
        .list_shared_with_user(with_token(
            DAM,
            ListSharedWithUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let shared: Vec<_> = token
        .resources
        .iter()
        .map(|r| r.resource.clone().unwrap().id)
        .collect();
    assert_eq!(
        shared,
        ["direct"],
        "the group's folder is gone, the direct share stays"
    );
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("x"), &["g"]), "")
            .await,
        AccessLevel::None
    );
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("direct"), &[]), "")
            .await,
        AccessLevel::View
    );

    // Removing her deletes her shares.
    let removed = server
        .users()
        .delete_user(with_token(
            &acme.admin,
            proto::DeleteUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = access(server)
        .list_resource_shares(with_token(
            DAM,
            ListResourceSharesRequest {
                account_id: acme.account.clone(),
                resource: Some(file("direct")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.shares.is_empty());
    assert_eq!(
        acme.level(
            &acme.rita.id,
            placed(file("direct"), &[]),
            &removed.consistency_token
        )
        .await,
        AccessLevel::None
    );
    let gone = access(server)
        .list_shared_with_user(with_token(
            DAM,
            ListSharedWithUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(gone, Code::NotFound, "USER_NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_group_deletes_its_shares_and_disabling_answers_none() {
    let acme = Acme::start().await;
    let server = &acme.server;
    acme.share(folder("g"), to_group(&acme.group), AccessLevel::Manage)
        .await;
    let (_, token) = acme
        .share(file("d"), to_user(&acme.rita.id), AccessLevel::Manage)
        .await;
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("x"), &["g"]), &token)
            .await,
        AccessLevel::Manage
    );
    let deleted = server
        .groups()
        .delete_group(with_token(
            &acme.admin,
            proto::DeleteGroupRequest {
                account_id: acme.account.clone(),
                group_id: acme.group.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme.level(
            &acme.rita.id,
            placed(file("x"), &["g"]),
            &deleted.consistency_token
        )
        .await,
        AccessLevel::None
    );
    let listed = access(server)
        .list_resource_shares(with_token(
            DAM,
            ListResourceSharesRequest {
                account_id: acme.account.clone(),
                resource: Some(folder("g")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.shares.is_empty());

    let disabled = server
        .users()
        .disable_user(with_token(
            &acme.admin,
            proto::DisableUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme.level(
            &acme.rita.id,
            placed(file("d"), &[]),
            &disabled.consistency_token
        )
        .await,
        AccessLevel::None
    );
    let enabled = server
        .users()
        .enable_user(with_token(
            &acme.admin,
            proto::EnableUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme.level(
            &acme.rita.id,
            placed(file("d"), &[]),
            &enabled.consistency_token
        )
        .await,
        AccessLevel::Manage
    );
}

#[tokio::test]
async fn lists_page_by_keyset_and_filter_by_type() {
    let acme = Acme::start().await;
    let server = &acme.server;
    // 5 files and 3 folders reach Rita, directly or through her group; one file both ways.
    for i in 0..5 {
        acme.share(
            file(&format!("file-{i}")),
            to_user(&acme.rita.id),
            AccessLevel::View,
        )
        .await;
    }
    for i in 0..3 {
        acme.share(
            folder(&format!("folder-{i}")),
            to_group(&acme.group),
            AccessLevel::Manage,
        )
        .await;
    }
    acme.share(
        file("file-2"),
        to_group(&acme.group),
        AccessLevel::Contribute,
    )
    .await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = access(server)
            .list_shared_with_user(with_token(
                DAM,
                ListSharedWithUserRequest {
                    account_id: acme.account.clone(),
                    user_id: acme.rita.id.clone(),
                    page_size: 3,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.resources.len() <= 3);
        for resource in &page.resources {
            let r = resource.resource.clone().unwrap();
            seen.push((r.r#type, r.id, resource.level, resource.shares.len()));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    let file2 = seen.iter().find(|s| s.1 == "file-2").unwrap();
    assert_eq!((file2.2, file2.3), (AccessLevel::Contribute as i32, 2));
    // Files, then folders (the API's type order), each by id.
    let order: Vec<_> = seen.iter().map(|s| (s.0, s.1.clone())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(seen[0].0, ResourceType::File as i32);
    let folders = access(server)
        .list_shared_with_user(with_token(
            DAM,
            ListSharedWithUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                resource_type: ResourceType::Folder as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = folders
        .resources
        .iter()
        .map(|r| r.resource.clone().unwrap().id)
        .collect();
    assert_eq!(ids, ["folder-0", "folder-1", "folder-2"]);
    // A page token of one filter does not continue another.
    let first = access(server)
        .list_shared_with_user(with_token(
            DAM,
            ListSharedWithUserRequest {
                account_id: acme.account.clone(),
                user_id: acme.rita.id.clone(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_error(
        access(server)
            .list_shared_with_user(with_token(
                DAM,
                ListSharedWithUserRequest {
                    account_id: acme.account.clone(),
                    user_id: acme.rita.id.clone(),
                    resource_type: ResourceType::Folder as i32,
                    page_token: first.next_page_token,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );

    // The shares on one resource, oldest first, by pages.
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = access(server)
            .list_resource_shares(with_token(
                DAM,
                ListResourceSharesRequest {
                    account_id: acme.account.clone(),
                    resource: Some(file("file-2")),
                    page_size: 1,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.shares.iter().map(|s| s.subject.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(ids, [to_user(&acme.rita.id), to_group(&acme.group)]);
}

#[tokio::test]
async fn a_retried_share_with_its_request_id_is_made_once() {
    let acme = Acme::start().await;
    let request = || {
        with_token(
            DAM,
            ShareResourceRequest {
                account_id: acme.account.clone(),
                resource: Some(file("f")),
                subject: to_user(&acme.rita.id),
                level: AccessLevel::View as i32,
                request_id: "0b9c7c2e-6f5a-4d1e-9a43-2f8f5a1c0d11".into(),
                ..Default::default()
            },
        )
    };
    let first = access(&acme.server)
        .share_resource(request())
        .await
        .unwrap()
        .into_inner();
    let again = access(&acme.server)
        .share_resource(request())
        .await
        .unwrap()
        .into_inner();
    assert!(first.created && again.created);
    assert_eq!(first.share, again.share);
    let mut other = request();
    other.get_mut().level = AccessLevel::Manage as i32;
    assert_error(
        access(&acme.server).share_resource(other).await,
        Code::FailedPrecondition,
        "REQUEST_ID_REUSED",
    );
}

#[tokio::test]
async fn one_accounts_shares_never_reach_another() {
    let acme = Acme::start().await;
    let (other, other_admin) = acme
        .server
        .create_account("Other", "admin@other.test")
        .await;
    acme.share(
        folder("shared"),
        to_user(&acme.rita.id),
        AccessLevel::Manage,
    )
    .await;
    // The same DAM ids in the other account: nothing.
    let response = access(&acme.server)
        .check_access(with_token(
            DAM,
            CheckAccessRequest {
                account_id: other.id.clone(),
                user_id: acme.rita.id.clone(),
                target: Some(proto::check_access_request::Target::Resource(placed(
                    file("x"),
                    &["shared"],
                ))),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.level, AccessLevel::None as i32);
    let listed = access(&acme.server)
        .list_resource_shares(with_token(
            DAM,
            ListResourceSharesRequest {
                account_id: other.id.clone(),
                resource: Some(folder("shared")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.shares.is_empty());
    let revoke_elsewhere = access(&acme.server)
        .list_resource_shares(with_token(
            DAM,
            ListResourceSharesRequest {
                account_id: acme.account.clone(),
                resource: Some(folder("shared")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .shares[0]
        .id
        .clone();
    assert_error(
        access(&acme.server)
            .revoke_share(with_token(
                DAM,
                RevokeShareRequest {
                    account_id: other.id.clone(),
                    share_id: revoke_elsewhere,
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "SHARE_NOT_FOUND",
    );
    let _ = other_admin;
}

/// A reference evaluation of SPEC section 4 straight from the database's rows, written apart
/// from the service's arithmetic.
async fn reference_level(
    server: &TestServer,
    account: &str,
    user: &str,
    check: &ResourceCheck,
) -> AccessLevel {
    use identity::store::entities::{group_member, membership, share};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = server.app.store.connection();
    let account: uuid::Uuid = account.parse().unwrap();
    let user: uuid::Uuid = user.parse().unwrap();
    let Some(member) = membership::Entity::find_by_id((account, user))
        .one(db)
        .await
        .unwrap()
    else {
        return AccessLevel::None;
    };
    if member.status != membership::StoredStatus::Active {
        return AccessLevel::None;
    }
    use membership::StoredRole::*;
    match member.role {
        AccountAdministrator | Developer | MediaLibraryFullAccess => return AccessLevel::Manage,
        MediaLibraryViewOnly => return AccessLevel::View,
        Finance => return AccessLevel::None,
        MediaLibraryRestricted => {}
    }
    let groups: Vec<uuid::Uuid> = group_member::Entity::find()
        .filter(group_member::Column::AccountId.eq(account))
        .filter(group_member::Column::UserId.eq(user))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.group_id)
        .collect();
    let shares = share::Entity::find()
        .filter(share::Column::AccountId.eq(account))
        .all(db)
        .await
        .unwrap();
    let reaches = |s: &share::Model| {
        (s.subject_type == "user" && s.subject_id == user)
            || (s.subject_type == "group" && groups.contains(&s.subject_id))
    };
    let level_of = |s: &share::Model| match s.level.as_str() {
        "view" => AccessLevel::View,
        "contribute" => AccessLevel::Contribute,
        "manage" => AccessLevel::Manage,
        other => panic!("level {other}"),
    };
    let resource = check.resource.clone().unwrap();
    let mut best = AccessLevel::None;
    if check.owner_user_id == user.to_string() {
        best = AccessLevel::Manage;
    }
    for s in shares.iter().filter(|s| reaches(s)) {
        let on_itself =
            i32::from(s.resource_type) == resource.r#type && s.resource_id == resource.id;
        let on_ancestor = s.resource_type == 2
            && s.resource_id != "root"
            && check.ancestor_folder_ids.contains(&s.resource_id);
        let on_collection = s.resource_type == 3 && check.collection_ids.contains(&s.resource_id);
        let level = if on_itself || on_ancestor {
            level_of(s)
        } else if on_collection {
            AccessLevel::View
        } else {
            AccessLevel::None
        };
        best = best.max(level);
    }
    best
}

#[tokio::test]
async fn a_batch_equals_single_checks_equals_a_reference_from_the_database() {
    use rand::{Rng, SeedableRng, seq::SliceRandom};
    let seed = std::env::var("IDENTITY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("IDENTITY_TEST_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let acme = Acme::start().await;
    let server = &acme.server;

    // Members of every kind, a disabled one, and groups with random members.
    let mut users = vec![acme.rita.id.clone()];
    for (i, role) in [
        Role::MediaLibraryRestricted,
        Role::MediaLibraryRestricted,
        Role::MediaLibraryRestricted,
        Role::MediaLibraryViewOnly,
        Role::Finance,
    ]
    .into_iter()
    .enumerate()
    {
        users.push(
            server
                .add_member(&acme.account, &format!("u{i}@acme.test"), role)
                .await
                .id,
        );
    }
    server
        .users()
        .disable_user(with_token(
            &acme.admin,
            proto::DisableUserRequest {
                account_id: acme.account.clone(),
                user_id: users[3].clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut groups = vec![acme.group.clone()];
    for name in ["Design", "Sales", "Legal"] {
        let group = server
            .groups()
            .create_group(with_token(
                &acme.admin,
                proto::CreateGroupRequest {
                    account_id: acme.account.clone(),
                    name: name.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap()
            .id;
        let members: Vec<String> = users
            .iter()
            .filter(|_| rng.gen_bool(0.5))
            .cloned()
            .collect();
        if !members.is_empty() {
            server
                .groups()
                .add_group_members(with_token(
                    &acme.admin,
                    proto::AddGroupMembersRequest {
                        account_id: acme.account.clone(),
                        group_id: group.clone(),
                        user_ids: members,
                    },
                ))
                .await
                .unwrap();
        }
        groups.push(group);
    }

    // Random shares over a small tree, some replaced, some revoked.
    let folders: Vec<String> = (0..8).map(|i| format!("folder{i}")).collect();
    let files: Vec<String> = (0..12).map(|i| format!("file{i}")).collect();
    let collections: Vec<String> = (0..4).map(|i| format!("coll{i}")).collect();
    let levels = [
        AccessLevel::View,
        AccessLevel::Contribute,
        AccessLevel::Manage,
    ];
    let mut made = Vec::new();
    let mut token = String::new();
    for _ in 0..60 {
        let resource = match rng.gen_range(0..3) {
            0 => folder(folders.choose(&mut rng).unwrap()),
            1 => file(files.choose(&mut rng).unwrap()),
            _ => ResourceRef {
                r#type: ResourceType::Collection as i32,
                id: collections.choose(&mut rng).unwrap().clone(),
            },
        };
        let subject = if rng.gen_bool(0.5) {
            to_user(users.choose(&mut rng).unwrap())
        } else {
            to_group(groups.choose(&mut rng).unwrap())
        };
        let (id, t) = acme
            .share(resource, subject, *levels.choose(&mut rng).unwrap())
            .await;
        made.push(id);
        token = t;
    }
    for share in made.choose_multiple(&mut rng, 10) {
        token = access(server)
            .revoke_share(with_token(
                DAM,
                RevokeShareRequest {
                    account_id: acme.account.clone(),
                    share_id: share.clone(),
                    allow_missing: true,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .consistency_token;
    }

    // 1,000 random checks.
    let mut items = Vec::new();
    for _ in 0..1000 {
        let user = users.choose(&mut rng).unwrap().clone();
        let in_collections = rng.gen_range(0..3);
        let depth = rng.gen_range(0..4);
        let (resource, collection_ids) = match rng.gen_range(0..3) {
            0 => (
                file(files.choose(&mut rng).unwrap()),
                collections
                    .choose_multiple(&mut rng, in_collections)
                    .cloned()
                    .collect(),
            ),
            1 => (folder(folders.choose(&mut rng).unwrap()), Vec::new()),
            _ => (
                ResourceRef {
                    r#type: ResourceType::Collection as i32,
                    id: collections.choose(&mut rng).unwrap().clone(),
                },
                Vec::new(),
            ),
        };
        let mut ancestors: Vec<String> =
            folders.choose_multiple(&mut rng, depth).cloned().collect();
        if rng.gen_bool(0.2) {
            ancestors.push("root".into());
        }
        let owner_user_id = if rng.gen_bool(0.1) {
            users.choose(&mut rng).unwrap().clone()
        } else {
            String::new()
        };
        items.push(CheckAccessItem {
            user_id: user,
            target: Some(proto::check_access_item::Target::Resource(ResourceCheck {
                resource: Some(resource),
                ancestor_folder_ids: ancestors,
                collection_ids,
                owner_user_id,
            })),
            required_level: *[0, 2, 3, 4].choose(&mut rng).unwrap(),
        });
    }
    let batch = access(server)
        .batch_check_access(with_token(
            DAM,
            BatchCheckAccessRequest {
                account_id: acme.account.clone(),
                consistency_token: token.clone(),
                items: items.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(batch.len(), 1000);
    let mut disagreements = Vec::new();
    for (i, (item, batched)) in items.iter().zip(&batch).enumerate() {
        let Some(proto::check_access_item::Target::Resource(check)) = &item.target else {
            unreachable!()
        };
        let single = access(server)
            .check_access(with_token(
                DAM,
                CheckAccessRequest {
                    account_id: acme.account.clone(),
                    user_id: item.user_id.clone(),
                    target: Some(proto::check_access_request::Target::Resource(check.clone())),
                    required_level: item.required_level,
                    consistency_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let reference = reference_level(server, &acme.account, &item.user_id, check).await;
        let required = if item.required_level == 0 {
            AccessLevel::View
        } else {
            AccessLevel::try_from(item.required_level).unwrap()
        };
        let expected = (
            reference >= required && reference > AccessLevel::None,
            reference as i32,
        );
        if (batched.allowed, batched.level) != expected
            || (single.allowed, single.level) != expected
        {
            disagreements.push((i, item.clone(), *batched, single, reference));
        }
    }
    assert!(
        disagreements.is_empty(),
        "seed {seed}: {} disagreements, first: {:?}",
        disagreements.len(),
        disagreements.first()
    );
}

#[tokio::test]
async fn the_memory_budget_evicts_accounts_and_reloads_them_correctly() {
    // A budget smaller than any account: each load evicts every other account.
    let server = TestServer::start_on(std::sync::Arc::new(TestDb::new().await), |config| {
        config.access_cache_bytes = 1;
    })
    .await;
    let acme = Acme::on(server).await;
    let (other, other_admin) = acme
        .server
        .create_account("Other", "admin@other.test")
        .await;
    acme.server.activate(&other_admin).await;
    let (_, token) = acme
        .share(folder("a"), to_user(&acme.rita.id), AccessLevel::Contribute)
        .await;
    let cache = acme.server.app.access.cache().clone();
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("x"), &["a"]), &token)
            .await,
        AccessLevel::Contribute
    );
    assert_eq!(cache.accounts_held(), 1);
    // Another account's check evicts Acme's data...
    let response = access(&acme.server)
        .check_access(with_token(
            DAM,
            CheckAccessRequest {
                account_id: other.id.clone(),
                user_id: other_admin.id.clone(),
                target: Some(proto::check_access_request::Target::Resource(placed(
                    file("x"),
                    &[],
                ))),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.level, AccessLevel::Manage as i32);
    assert_eq!(cache.accounts_held(), 1);
    // ...which is reloaded, right, at its next check (a change made meanwhile included).
    let (_, token) = acme
        .share(folder("a"), to_group(&acme.group), AccessLevel::Manage)
        .await;
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("x"), &["a"]), &token)
            .await,
        AccessLevel::Manage
    );
    assert_eq!(
        acme.level(&acme.rita.id, placed(file("x"), &["a"]), "")
            .await,
        AccessLevel::Manage
    );
    assert_eq!(cache.accounts_held(), 1);
}
