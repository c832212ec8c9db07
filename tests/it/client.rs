//! The client crate against the real server, as a calling team uses it: a bearer interceptor, the
//! offline verifier, and access checks that carry consistency tokens.

use identity_client::{AccessChecker, Bearer, Verifier, proto};

use crate::harness::*;
use crate::sharing::{Acme, folder, to_user};

#[tokio::test]
async fn a_calling_team_verifies_tokens_offline_and_checks_access_with_consistency() {
    let acme = Acme::start().await;
    let channel = acme.server.channel();

    // The verifier reads the key set once and then needs the server no more.
    let verifier = Verifier::fetch(channel.clone(), "identity", "identity")
        .await
        .unwrap();
    let claims = verifier.verify(&acme.admin).unwrap();
    assert_eq!(claims.acc, acme.account);
    assert_eq!(claims.role, "account_administrator");
    let mut tampered = acme.admin.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert!(verifier.verify(&tampered).is_err());
    assert!(
        Verifier::fetch(channel.clone(), "another-issuer", "identity")
            .await
            .unwrap()
            .verify(&acme.admin)
            .is_err()
    );

    // The bearer interceptor, on a generated client.
    let mut users = proto::user_service_client::UserServiceClient::with_interceptor(
        channel.clone(),
        Bearer::new(&acme.admin).unwrap(),
    );
    let listed = users
        .list_users(proto::ListUsersRequest {
            account_id: acme.account.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.users.iter().any(|u| u.id == acme.rita.id));

    // A share, then a check through the checker: the share's consistency token is carried, so
    // the check sees it at once whatever the replica's staleness.
    let access = AccessChecker::new(channel, Bearer::new(DAM).unwrap());
    let (_, token) = acme
        .share(
            folder("shared"),
            to_user(&acme.rita.id),
            identity::proto::AccessLevel::View,
        )
        .await;
    access.observe(&acme.account, &token);
    let answer = access
        .check(proto::CheckAccessRequest {
            account_id: acme.account.clone(),
            user_id: acme.rita.id.clone(),
            target: Some(proto::check_access_request::Target::Resource(
                proto::ResourceCheck {
                    resource: Some(proto::ResourceRef {
                        r#type: proto::ResourceType::File as i32,
                        id: "f".into(),
                    }),
                    ancestor_folder_ids: vec!["shared".into()],
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(answer.allowed);
    assert_eq!(answer.level, proto::AccessLevel::View as i32);
    assert_eq!(
        access.token(&acme.account).as_deref(),
        Some(answer.consistency_token.as_str())
    );
}
