//! Three replicas of the service on one PostgreSQL database, called at once: every cap, name,
//! rule and single-use token holds exactly, whichever replica each call reaches. Each race is run
//! several times on fresh accounts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use identity::proto::{self, login_response::Outcome};

use crate::auth::{PASSWORD, account_with_admin, login, secret_in_email};
use crate::harness::*;

/// How many times each race is run.
const RUNS: usize = 3;

/// Three replicas on one fresh database; emails stay in the outbox, so tests read their secrets.
async fn three_replicas() -> Vec<TestServer> {
    let db = Arc::new(TestDb::postgres().await);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            TestServer::start_on(db.clone(), |config| {
                config.outbox_interval = Duration::from_secs(3600);
            })
            .await,
        );
    }
    replicas
}

/// Outcomes by name: "OK" or the error's reason.
fn tally<T>(results: Vec<Result<T, tonic::Status>>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for result in results {
        let name = match result {
            Ok(_) => "OK".to_owned(),
            Err(status) => reason(&status),
        };
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

async fn set_limits(
    server: &TestServer,
    account_id: &str,
    users: Option<i32>,
    groups: Option<i32>,
) {
    server
        .accounts()
        .set_account_limits(with_token(
            OPERATOR,
            proto::SetAccountLimitsRequest {
                account_id: account_id.to_owned(),
                max_users: users,
                max_groups: groups,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
}

async fn create_group(
    server: &TestServer,
    account_id: &str,
    name: String,
) -> Result<tonic::Response<proto::CreateGroupResponse>, tonic::Status> {
    server
        .groups()
        .create_group(with_token(
            OPERATOR,
            proto::CreateGroupRequest {
                account_id: account_id.to_owned(),
                name,
                ..Default::default()
            },
        ))
        .await
}

#[tokio::test]
async fn the_user_cap_holds() {
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let (account, _) = replicas[0]
            .create_account(&format!("Acme {run}"), &format!("admin{run}@acme.test"))
            .await;
        // The administrator and 3 more: one seat left.
        for n in 0..3 {
            replicas[0]
                .add_member(
                    &account.id,
                    &format!("m{n}.{run}@acme.test"),
                    identity::domain::roles::Role::Developer,
                )
                .await;
        }
        set_limits(&replicas[1], &account.id, Some(5), None).await;
        let calls = (0..30).map(|n| {
            let mut users = replicas[n % 3].users();
            let request = proto::CreateUserRequest {
                account_id: account.id.clone(),
                email: format!("new{n}.{run}@acme.test"),
                role: proto::Role::Developer as i32,
                ..Default::default()
            };
            async move { users.create_user(with_token(OPERATOR, request)).await }
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(outcomes, counts(&[("OK", 1), ("USER_LIMIT_REACHED", 29)]));
    }
}

#[tokio::test]
async fn the_group_cap_and_names_hold() {
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let (account, _) = replicas[0]
            .create_account(&format!("Acme {run}"), &format!("admin{run}@acme.test"))
            .await;
        // 4 of 5 groups: 60 different names at once, one seat.
        for n in 0..4 {
            create_group(&replicas[0], &account.id, format!("Existing {n}"))
                .await
                .unwrap();
        }
        let calls =
            (0..60).map(|n| create_group(&replicas[n % 3], &account.id, format!("Team {n}")));
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(outcomes, counts(&[("GROUP_LIMIT_REACHED", 59), ("OK", 1)]));

        // Room for many, one name in 30 spellings: one group.
        let (other, _) = replicas[0]
            .create_account(&format!("Other {run}"), &format!("boss{run}@other.test"))
            .await;
        set_limits(&replicas[0], &other.id, None, Some(100)).await;
        let spellings = ["Editors", "EDITORS", "editors", "eDiToRs", "Editors"];
        let calls = (0..30).map(|n| {
            create_group(
                &replicas[n % 3],
                &other.id,
                spellings[n % spellings.len()].to_owned(),
            )
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(outcomes, counts(&[("GROUP_NAME_TAKEN", 29), ("OK", 1)]));
    }
}

#[tokio::test]
async fn the_last_administrator_stays() {
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let (account, first) = replicas[0]
            .create_account(&format!("Acme {run}"), &format!("admin{run}@acme.test"))
            .await;
        replicas[0].activate(&first).await;
        let second = replicas[0]
            .add_member(
                &account.id,
                &format!("second{run}@acme.test"),
                identity::domain::roles::Role::AccountAdministrator,
            )
            .await;
        // Each administrator removed and disabled from different replicas at once: one stays.
        let mut calls = Vec::new();
        for (n, user) in [&first, &second, &first, &second, &first, &second]
            .into_iter()
            .enumerate()
        {
            let server = &replicas[n % 3];
            let (account_id, user_id) = (account.id.clone(), user.id.clone());
            calls.push(async move {
                if n % 2 == 0 {
                    server
                        .users()
                        .delete_user(with_token(
                            OPERATOR,
                            proto::DeleteUserRequest {
                                account_id,
                                user_id,
                                allow_missing: true,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                } else {
                    server
                        .users()
                        .disable_user(with_token(
                            OPERATOR,
                            proto::DisableUserRequest {
                                account_id,
                                user_id,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                }
            });
        }
        futures::future::join_all(calls).await;
        let active_admins = replicas[2]
            .users()
            .list_users(with_token(
                READER,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    role: proto::Role::AccountAdministrator as i32,
                    status: proto::MembershipStatus::Active as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .users;
        assert_eq!(active_admins.len(), 1, "run {run}: {active_admins:?}");
    }
}

#[tokio::test]
async fn the_login_throttle_holds_and_right_passwords_pass() {
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let email = format!("ada{run}@acme.test");
        account_with_admin(&replicas[0], &email).await;
        // 20 right passwords at once over three replicas: 20 sessions.
        let calls = (0..20).map(|n| {
            let mut auth = replicas[n % 3].auth();
            let request = login(&email, PASSWORD);
            async move { auth.login(request).await }
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(outcomes, counts(&[("OK", 20)]));
        // 20 wrong ones: 5 evaluated, 15 throttled.
        let calls = (0..20).map(|n| {
            let mut auth = replicas[n % 3].auth();
            let request = login(&email, "wrong password here");
            async move { auth.login(request).await }
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(
            outcomes,
            counts(&[("INVALID_CREDENTIALS", 5), ("LOGIN_THROTTLED", 15)])
        );
    }
}

#[tokio::test]
async fn a_refresh_token_rotates_once_and_an_invitation_is_accepted_once() {
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let email = format!("ada{run}@acme.test");
        let (account, _) = account_with_admin(&replicas[0], &email).await;
        let tokens = match replicas[1]
            .auth()
            .login(login(&email, PASSWORD))
            .await
            .unwrap()
            .into_inner()
            .outcome
            .unwrap()
        {
            Outcome::Tokens(tokens) => tokens,
            other => panic!("{other:?}"),
        };
        let calls = (0..10).map(|n| {
            let mut auth = replicas[n % 3].auth();
            let request = proto::RefreshSessionRequest {
                refresh_token: tokens.refresh_token.clone(),
            };
            async move { auth.refresh_session(request).await }
        });
        let results = futures::future::join_all(calls).await;
        let outcomes = tally(
            results
                .iter()
                .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
                .collect(),
        );
        assert_eq!(outcomes.get("OK"), Some(&1), "run {run}: {outcomes:?}");
        assert!(
            outcomes
                .keys()
                .all(|k| ["OK", "REFRESH_TOKEN_REUSED", "SESSION_REVOKED"].contains(&k.as_str())),
            "{outcomes:?}"
        );
        // The reuse ended the session: the winner's new refresh token is refused too.
        let winner = results
            .into_iter()
            .find_map(Result::ok)
            .unwrap()
            .into_inner()
            .tokens
            .unwrap();
        let status = replicas[2]
            .auth()
            .refresh_session(proto::RefreshSessionRequest {
                refresh_token: winner.refresh_token,
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "SESSION_REVOKED", "{status:?}");

        // One invitation, accepted ten times at once over three replicas.
        let invited = format!("new{run}@acme.test");
        replicas[0]
            .users()
            .create_user(with_token(
                OPERATOR,
                proto::CreateUserRequest {
                    account_id: account.id.clone(),
                    email: invited.clone(),
                    role: proto::Role::Developer as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        let token = secret_in_email(&replicas[0], &invited, "invitation").await;
        let calls = (0..10).map(|n| {
            let mut auth = replicas[n % 3].auth();
            let request = proto::AcceptInvitationRequest {
                invitation_token: token.clone(),
                password: PASSWORD.into(),
                display_name: String::new(),
            };
            async move { auth.accept_invitation(request).await }
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(outcomes, counts(&[("INVITATION_INVALID", 9), ("OK", 1)]));
    }
}

#[tokio::test]
async fn an_sso_response_logs_in_once_whichever_replicas_it_is_posted_to() {
    use crate::sso::{Answer, Idp, Options, configure, get_settings, idp_response, sessions_of};
    let idp = Idp::start().await;
    let replicas = three_replicas().await;
    for run in 0..RUNS {
        let (account, _) = replicas[0]
            .create_account(&format!("Acme {run}"), &format!("admin{run}@acme.test"))
            .await;
        let options = Options {
            allow_idp_initiated: true,
            ..Options::default()
        };
        configure(&replicas[0], &idp, &account.id, OPERATOR, options).await;
        let settings = get_settings(&replicas[0], OPERATOR, &account.id)
            .await
            .unwrap();
        // One SP-initiated and one IdP-initiated response, each posted six times at once: the
        // request is taken once, the assertion id is accepted once, the user is created once.
        let email = format!("sso{run}@acme.test");
        let answered = idp_response(&replicas[1], &account.id, &Answer::user(&email)).await;
        let unsolicited = idp.initiate(&settings, &Answer::user(&email)).await;
        let calls = (0..12).map(|n| {
            let mut auth = replicas[n % 3].auth();
            let posted = if n % 2 == 0 { &answered } else { &unsolicited };
            let request = proto::LoginWithSsoRequest {
                account_id: account.id.clone(),
                saml_response: posted.saml_response.clone(),
                relay_state: posted.relay_state.clone(),
            };
            async move { auth.login_with_sso(request).await }
        });
        let outcomes = tally(futures::future::join_all(calls).await);
        assert_eq!(
            outcomes,
            counts(&[("OK", 2), ("SAML_RESPONSE_INVALID", 10)]),
            "run {run}"
        );
        assert_eq!(sessions_of(&replicas[2], &email).await, 2);
        let users = replicas[2]
            .users()
            .list_users(with_token(
                READER,
                proto::ListUsersRequest {
                    account_id: account.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .users;
        assert_eq!(
            users.iter().filter(|u| u.email == email).count(),
            1,
            "one membership"
        );
    }
}
