//! AccessService: the caller's permissions come from the role matrix, by the role stored now.

use identity::proto::{self, AccessLevel, Role};
use tonic::Code;

use crate::harness::*;

fn client(
    server: &TestServer,
) -> proto::access_service_client::AccessServiceClient<tonic::transport::Channel> {
    proto::access_service_client::AccessServiceClient::new(server.channel())
}

#[tokio::test]
async fn every_role_gets_its_row_of_the_matrix() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let admin_token = server.token_for(&admin).await;
    let expected: [(Role, &[&str], AccessLevel, bool); 6] = [
        (
            Role::AccountAdministrator,
            &[
                "audit.manage",
                "audit.view",
                "billing.manage",
                "billing.view",
                "settings.manage",
                "settings.view",
                "usage.view",
                "users.manage",
            ],
            AccessLevel::Manage,
            false,
        ),
        (
            Role::Developer,
            &[
                "audit.manage",
                "audit.view",
                "settings.manage",
                "settings.view",
                "usage.view",
            ],
            AccessLevel::Manage,
            false,
        ),
        (
            Role::MediaLibraryFullAccess,
            &["audit.manage", "audit.view"],
            AccessLevel::Manage,
            false,
        ),
        (
            Role::MediaLibraryViewOnly,
            &["audit.view"],
            AccessLevel::View,
            false,
        ),
        (Role::MediaLibraryRestricted, &[], AccessLevel::None, true),
        (
            Role::Finance,
            &["billing.manage", "billing.view", "usage.view"],
            AccessLevel::None,
            false,
        ),
    ];
    for (i, (role, permissions, level, by_share)) in expected.into_iter().enumerate() {
        let user = server
            .users()
            .create_user(with_token(
                &admin_token,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: format!("member{i}@acme.test"),
                    role: role as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        let mine = client(&server)
            .list_my_permissions(with_token(
                &server.token_for(&user).await,
                proto::ListMyPermissionsRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.role, role as i32, "{role:?}");
        assert_eq!(mine.permissions, permissions, "{role:?}");
        assert_eq!(mine.media_level, level as i32, "{role:?}");
        assert_eq!(mine.media_access_by_share, by_share, "{role:?}");
    }
}

#[tokio::test]
async fn permissions_follow_a_role_change_and_refuse_services_and_strangers() {
    let server = TestServer::start().await;
    let (account, admin) = server.create_account("Acme", "admin@acme.test").await;
    let admin_token = server.token_for(&admin).await;
    let user = server
        .users()
        .create_user(with_token(
            &admin_token,
            proto::CreateUserRequest {
                account_id: account.id.clone(),
                email: "dev@acme.test".into(),
                role: Role::Developer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let token = server.token_for(&user).await;
    let mut demoted = user.clone();
    demoted.role = Role::Finance as i32;
    server
        .users()
        .update_user(with_token(
            &admin_token,
            proto::UpdateUserRequest {
                account_id: account.id.clone(),
                user: Some(demoted),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    // The role change ended the session of the old token; a new login sees the new role.
    assert_error(
        client(&server)
            .list_my_permissions(with_token(
                &token,
                proto::ListMyPermissionsRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    let token = server
        .token_as(
            user.id.parse().unwrap(),
            account.id.parse().unwrap(),
            identity::domain::roles::Role::Finance,
            &user.email,
        )
        .await;
    let mine = client(&server)
        .list_my_permissions(with_token(
            &token,
            proto::ListMyPermissionsRequest {
                account_id: account.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.role, Role::Finance as i32);

    assert_error(
        client(&server)
            .list_my_permissions(with_token(
                DAM,
                proto::ListMyPermissionsRequest {
                    account_id: account.id.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_MISSING",
    );
    let (other, _) = server.create_account("Other", "o@other.test").await;
    assert_error(
        client(&server)
            .list_my_permissions(with_token(
                &token,
                proto::ListMyPermissionsRequest {
                    account_id: other.id,
                },
            ))
            .await,
        Code::PermissionDenied,
        "ACCOUNT_MISMATCH",
    );
}
