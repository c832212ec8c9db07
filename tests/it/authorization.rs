//! Who may call what, compared with the proto comments: every RPC of the contract, read from the
//! `.proto` files with its `Caller:` paragraph, is called with an empty body by no one, by a person
//! and by a service holding each scope alone. Authorization comes before the body: a caller the
//! comment does not admit is refused whatever the body holds.

use tonic::Code;

use crate::harness::*;

/// One RPC as its comment describes its callers.
#[derive(Debug)]
struct Rpc {
    path: String,
    caller: String,
    /// The comment says "Not served yet".
    not_served: bool,
}

impl Rpc {
    fn public(&self) -> bool {
        self.caller.contains("no credentials")
    }

    /// The paragraph without its backticked names (`users.manage` is a scope, not a person).
    fn words(&self) -> String {
        self.caller
            .split('`')
            .step_by(2)
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    fn admits_persons(&self) -> bool {
        let words = self.words();
        !self.public()
            && !words.contains("persons are refused")
            && ["person", "member", "user"]
                .iter()
                .any(|who| words.contains(who))
    }

    /// The scopes the comment names for service tokens (`None`: any service token).
    fn service_scopes(&self) -> Option<Vec<String>> {
        if self.caller.contains("any service token") {
            return None;
        }
        let mut scopes = Vec::new();
        for part in self.caller.split("service token with scope").skip(1) {
            let clause = part.split(';').next().unwrap_or_default();
            let clause = clause.split(". ").next().unwrap_or_default();
            scopes.extend(clause.split('`').skip(1).step_by(2).map(str::to_owned));
        }
        Some(scopes)
    }

    /// Whether a service holding only `scope` is admitted, by the comment and the conventions of
    /// `resources.proto` (`users.manage` includes `users.read`; `accounts.operate` opens every
    /// RPC a scope opens, except recording audit events).
    fn admits_scope(&self, scope: &str) -> bool {
        let Some(scopes) = self.service_scopes() else {
            return true;
        };
        let named = |s: &str| scopes.iter().any(|named| named == s);
        named(scope)
            || (scope == "users.manage" && named("users.read"))
            || (scope == "accounts.operate" && !scopes.is_empty() && !named("audit.write"))
    }
}

/// Every RPC of the `.proto` files with its `Caller:` paragraph.
fn contract() -> Vec<Rpc> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/identity/v1");
    let mut rpcs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut service = None;
        let mut comment: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("service ") {
                service = name.split_whitespace().next().map(str::to_owned);
                comment.clear();
            } else if let Some(text) = line.strip_prefix("//") {
                comment.push(text.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap().trim();
                // From `Caller:` to the next labelled line (`Errors:`...) or a blank one.
                let labelled = |text: &str| {
                    text.split_once(':')
                        .is_some_and(|(head, _)| head.chars().all(char::is_alphabetic))
                };
                let mut caller = String::new();
                let from_caller = comment.iter().skip_while(|t| !t.starts_with("Caller:"));
                for (n, text) in from_caller.enumerate() {
                    if n > 0 && (text.is_empty() || labelled(text)) {
                        break;
                    }
                    caller.push_str(text);
                    caller.push(' ');
                }
                assert!(!caller.is_empty(), "rpc {name} has no Caller: line");
                rpcs.push(Rpc {
                    path: format!("/identity.v1.{}/{name}", service.clone().unwrap()),
                    caller,
                    not_served: comment.iter().any(|t| t.starts_with("Not served yet")),
                });
                comment.clear();
            } else {
                comment.clear();
            }
        }
    }
    // `Caller: as CheckAccess (...)` names the callers of another RPC.
    let named: Vec<(String, String)> = rpcs
        .iter()
        .map(|rpc| (rpc.path.clone(), rpc.caller.clone()))
        .collect();
    for rpc in &mut rpcs {
        let Some(rest) = rpc.caller.strip_prefix("Caller: as ") else {
            continue;
        };
        let other = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap();
        let (_, caller) = named
            .iter()
            .find(|(path, _)| path.ends_with(&format!("/{other}")))
            .unwrap_or_else(|| panic!("{} refers to an unknown {other}", rpc.path));
        if !rpc.caller.contains("service token with scope") {
            rpc.caller = format!("{} {caller}", rpc.caller);
        }
    }
    rpcs.sort_by(|a, b| a.path.cmp(&b.path));
    rpcs
}

/// Calls `path` with an empty body (every request type decodes it, all fields default) and
/// `token`, if any; an answer that is not an error is `Status::ok`.
async fn call(server: &TestServer, path: &str, token: Option<&str>) -> tonic::Status {
    crate::hostile::send(server.channel(), path, token, Vec::new())
        .await
        .err()
        .unwrap_or_else(|| tonic::Status::ok(""))
}

#[test]
fn the_contract_reader_finds_every_rpc_and_its_callers() {
    let rpcs = contract();
    assert_eq!(rpcs.len(), identity::grpc::callers::RPCS.len());
    let find = |path: &str| rpcs.iter().find(|rpc| rpc.path.ends_with(path)).unwrap();
    assert!(find("/Login").public());
    assert!(!find("/CreateAccount").admits_persons());
    assert!(find("/GetAccount").admits_persons());
    assert!(!find("/GetMyProfile").admits_scope("accounts.operate"));
    assert!(find("/ListUsers").admits_scope("users.manage"));
    assert!(!find("/ListUsers").admits_scope("access.check"));
    assert!(find("/ListResourceShares").admits_scope("access.share"));
    assert!(!find("/RecordAuditEvents").admits_scope("accounts.operate"));
    assert!(find("/ValidateToken").admits_scope("audit.write"));
    assert!(find("/BatchCheckAccess").admits_scope("access.check"));
    assert!(!find("/BatchCheckAccess").admits_scope("users.read"));
    assert!(!find("/ValidateToken").admits_persons());
    assert!(!find("/SetAccountLimits").admits_persons());
    let not_served: Vec<&str> = rpcs
        .iter()
        .filter(|rpc| rpc.not_served)
        .map(|rpc| rpc.path.rsplit('/').next().unwrap())
        .collect();
    assert!(not_served.is_empty(), "not served: {not_served:?}");
}

#[tokio::test]
async fn callers_the_contract_refuses_are_refused_before_the_body_is_read() {
    let server = TestServer::start().await;
    let (_, admin) = server.create_account("Acme", "admin@acme.test").await;
    server.activate(&admin).await;
    let mut wrong = Vec::new();
    let mut calls = 0;
    let rpcs = contract();
    let public = rpcs.iter().filter(|rpc| rpc.public()).count();
    for rpc in rpcs.iter() {
        let anonymous = call(&server, &rpc.path, None).await;
        calls += 1;
        if rpc.public() {
            // A public RPC not served yet says so in its comment, and only then.
            if anonymous.code() == Code::Unauthenticated
                || (anonymous.code() == Code::Unimplemented) != rpc.not_served
            {
                wrong.push(format!("{} anonymous: {anonymous:?}", rpc.path));
            }
            continue;
        }
        if (anonymous.code(), reason(&anonymous).as_str())
            != (Code::Unauthenticated, "CREDENTIALS_MISSING")
        {
            wrong.push(format!("{} anonymous: {anonymous:?}", rpc.path));
        }
        // A session of its own: an empty Logout ends the session it is called with.
        let person = server.token_for(&admin).await;
        let status = call(&server, &rpc.path, Some(&person)).await;
        calls += 1;
        let refused = status.code() == Code::PermissionDenied;
        if rpc.admits_persons() == refused
            || refused && reason(&status) != "PERMISSION_MISSING"
            || status.code() == Code::Unauthenticated
        {
            wrong.push(format!("{} person: {status:?}", rpc.path));
        }
        for scope in identity::domain::actor::Scope::ALL {
            let scope = scope.as_str();
            let status = call(&server, &rpc.path, Some(&scope_token(scope))).await;
            calls += 1;
            let refused = status.code() == Code::PermissionDenied;
            let expected_reason = match rpc.service_scopes() {
                Some(scopes) if scopes.is_empty() => "PERMISSION_MISSING",
                _ => "SCOPE_MISSING",
            };
            if rpc.admits_scope(scope) == refused
                || refused && reason(&status) != expected_reason
                || status.code() == Code::Unauthenticated
            {
                wrong.push(format!("{} {scope}: {status:?}", rpc.path));
            }
        }
    }
    // No credentials, a person, and each of the seven scopes alone.
    assert_eq!(calls, public + (rpcs.len() - public) * 9);
    assert!(rpcs.len() - public > 40, "{rpcs:?}");
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Who among people a comment admits, beyond what the gate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// "Persons are refused" / service-only.
    NoPersons,
    /// "any person's access token": their own profile, sessions, MFA, whatever the account.
    AnyPerson,
    /// "any ACTIVE member of the account".
    AnyMember,
    /// "person with permission `users.manage`" (about another user, for the access reads).
    Administrators,
    /// Administrator, Developer, Full Access, or a Restricted user with MANAGE on the resource.
    MediaManagers,
    /// Those with an account-wide media level (View-only too), or Restricted with MANAGE.
    MediaReaders,
    /// "person with permission `audit.view`": Administrator, Developer, Full Access, View-only.
    AuditViewers,
}

/// Each RPC's people, as its comment says; public RPCs have none. An RPC missing here fails.
fn who(rpc: &str) -> Option<Who> {
    use Who::*;
    let name = rpc.rsplit('/').next().unwrap();
    Some(match name {
        "CreateAccount" | "SetAccountLimits" | "RecordAuditEvents" | "ValidateToken" => NoPersons,
        "GetMyProfile" | "UpdateMyProfile" | "ChangePassword" | "Logout" | "ListMySessions"
        | "RevokeSession" | "EnableMfa" | "DisableMfa" => AnyPerson,
        "GetAccount" | "GetUser" | "ListUsers" | "GetGroup" | "ListGroups" | "ListGroupMembers"
        | "ListUserGroups" | "ListMyPermissions" => AnyMember,
        "UpdateAccountSettings"
        | "GetSsoSettings"
        | "UpdateSsoSettings"
        | "CreateUser"
        | "UpdateUser"
        | "DeleteUser"
        | "ResendInvitation"
        | "DisableUser"
        | "EnableUser"
        | "CreateGroup"
        | "UpdateGroup"
        | "DeleteGroup"
        | "AddGroupMembers"
        | "RemoveGroupMembers"
        | "ListSharedWithUser"
        | "CheckAccess"
        | "BatchCheckAccess"
        | "ExplainAccess" => Administrators,
        "ListAuditEvents" => AuditViewers,
        "ShareResource" | "RevokeShare" => MediaManagers,
        "ListResourceShares" => MediaReaders,
        _ => return None,
    })
}

/// Who calls, in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Expired,
    Revoked,
    /// The administrator of another account.
    OtherAccount,
    Service(identity::domain::actor::Scope),
    Member(identity::domain::roles::Role),
    /// A Restricted member with MANAGE on folder `shared` (and so on what it holds).
    RestrictedWithShare,
}

const FINANCE: ::identity::domain::roles::Role = ::identity::domain::roles::Role::Finance;

/// The account the matrix calls into, with a member of each role and things to act on.
struct Matrix {
    acme: crate::sharing::Acme,
    members: Vec<(identity::domain::roles::Role, identity::proto::User)>,
    other_admin: identity::proto::User,
    /// An invited Developer the user RPCs act on.
    target: identity::proto::User,
}

impl Matrix {
    async fn start() -> Self {
        use identity::domain::roles::Role;
        use identity::proto::AccessLevel;
        let acme = crate::sharing::Acme::start().await;
        let server = &acme.server;
        let mut members = Vec::new();
        for role in [
            Role::AccountAdministrator,
            Role::Developer,
            Role::MediaLibraryFullAccess,
            Role::MediaLibraryViewOnly,
            Role::MediaLibraryRestricted,
            Role::Finance,
        ] {
            let email = format!("{}@acme.test", role.as_str().replace('_', "-"));
            members.push((role, server.add_member(&acme.account, &email, role).await));
        }
        // Rita (Restricted) manages folder `shared`.
        acme.share(
            crate::sharing::folder("shared"),
            crate::sharing::to_user(&acme.rita.id),
            AccessLevel::Manage,
        )
        .await;
        let (_, other_admin) = server.create_account("Other", "boss@other.test").await;
        server.activate(&other_admin).await;
        let target = server
            .users()
            .create_user(with_token(
                OPERATOR,
                identity::proto::CreateUserRequest {
                    account_id: acme.account.clone(),
                    email: "target@acme.test".into(),
                    role: identity::proto::Role::Developer as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        Self {
            acme,
            members,
            other_admin,
            target,
        }
    }

    fn callers() -> Vec<Caller> {
        use identity::domain::roles::Role;
        let mut callers = vec![
            Caller::NoToken,
            Caller::Expired,
            Caller::Revoked,
            Caller::OtherAccount,
            Caller::RestrictedWithShare,
        ];
        callers.extend(
            identity::domain::actor::Scope::ALL
                .iter()
                .map(|scope| Caller::Service(*scope)),
        );
        callers.extend(
            [
                Role::AccountAdministrator,
                Role::Developer,
                Role::MediaLibraryFullAccess,
                Role::MediaLibraryViewOnly,
                Role::MediaLibraryRestricted,
                Role::Finance,
            ]
            .map(Caller::Member),
        );
        callers
    }

    fn member(&self, role: identity::domain::roles::Role) -> &identity::proto::User {
        &self.members.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// A fresh token of `caller` (every person's call has a session of its own: Logout ends it).
    async fn token(&self, caller: Caller) -> Option<String> {
        use identity::domain::roles::Role;
        let server = &self.acme.server;
        Some(match caller {
            Caller::NoToken => return None,
            Caller::Expired => {
                use identity::auth::keys::TokenSubject;
                let user = self.member(Role::AccountAdministrator);
                let subject = TokenSubject {
                    user_id: user.id.parse().unwrap(),
                    account_id: user.account_id.parse().unwrap(),
                    role: Role::AccountAdministrator,
                    session_id: uuid::Uuid::now_v7(),
                    amr: vec!["pwd".into()],
                    email: user.email.clone(),
                };
                let issued_at = server.clock.now_utc() - chrono::Duration::minutes(20);
                server.app.keys.issue(&subject, issued_at).unwrap().0
            }
            Caller::Revoked => {
                let token = server.token_for(self.member(Role::Developer)).await;
                server
                    .auth()
                    .logout(with_token(&token, identity::proto::LogoutRequest {}))
                    .await
                    .unwrap();
                token
            }
            Caller::OtherAccount => server.token_for(&self.other_admin).await,
            Caller::Service(scope) => scope_token(scope.as_str()),
            Caller::Member(role) => server.token_for(self.member(role)).await,
            Caller::RestrictedWithShare => server.token_for(&self.acme.rita).await,
        })
    }

    /// A request for `rpc` that the callers it admits may make.
    async fn body(&self, rpc: &str) -> Vec<u8> {
        use ::identity::proto::*;
        use prost::Message;
        let account_id = self.acme.account.clone();
        let target = self.target.id.clone();
        let group_id = self.acme.group.clone();
        let check = crate::sharing::placed(crate::sharing::file("f1"), &["shared"]);
        let placement = Some(ResourcePlacement {
            ancestor_folder_ids: vec!["shared".into()],
            ..Default::default()
        });
        let mask = |path: &str| {
            Some(prost_types::FieldMask {
                paths: vec![path.to_owned()],
            })
        };
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = rpc.rsplit('/').next().unwrap();
        match name {
            "CreateAccount" => CreateAccountRequest {
                name: "Matrix".into(),
                administrator_email: format!("{unique}@matrix.test"),
                ..Default::default()
            }
            .encode_to_vec(),
            "GetAccount" | "GetSsoSettings" | "ListMyPermissions" => {
                GetAccountRequest { account_id }.encode_to_vec()
            }
            "UpdateAccountSettings" => UpdateAccountSettingsRequest {
                account_id,
                settings: Some(AccountSettings { enforce_mfa: false }),
                update_mask: mask("enforce_mfa"),
                ..Default::default()
            }
            .encode_to_vec(),
            "SetAccountLimits" => SetAccountLimitsRequest {
                account_id,
                max_groups: Some(100),
                ..Default::default()
            }
            .encode_to_vec(),
            "UpdateSsoSettings" => UpdateSsoSettingsRequest {
                account_id,
                sso_settings: Some(SsoSettings::default()),
                update_mask: mask("enabled"),
                ..Default::default()
            }
            .encode_to_vec(),
            "ListAuditEvents" => ListAuditEventsRequest {
                account_id,
                ..Default::default()
            }
            .encode_to_vec(),
            "RecordAuditEvents" => RecordAuditEventsRequest {
                account_id,
                ..Default::default()
            }
            .encode_to_vec(),
            "CreateUser" => CreateUserRequest {
                account_id,
                email: format!("{unique}@acme.test"),
                role: Role::Developer as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            "GetUser" | "ResendInvitation" | "ListUserGroups" => GetUserRequest {
                account_id,
                user_id: target,
            }
            .encode_to_vec(),
            "ListUsers" => ListUsersRequest {
                account_id,
                ..Default::default()
            }
            .encode_to_vec(),
            "UpdateUser" => UpdateUserRequest {
                account_id,
                user: Some(User {
                    id: target,
                    display_name: "Target".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
                ..Default::default()
            }
            .encode_to_vec(),
            "DeleteUser" => DeleteUserRequest {
                account_id,
                user_id: uuid::Uuid::now_v7().to_string(),
                allow_missing: true,
                ..Default::default()
            }
            .encode_to_vec(),
            "DisableUser" | "EnableUser" => DisableUserRequest {
                account_id,
                user_id: target,
                ..Default::default()
            }
            .encode_to_vec(),
            "GetMyProfile" | "Logout" | "EnableMfa" | "ListMySessions" => Vec::new(),
            "UpdateMyProfile" => UpdateMyProfileRequest {
                user: Some(User {
                    display_name: "Me".into(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
                ..Default::default()
            }
            .encode_to_vec(),
            "ChangePassword" => ChangePasswordRequest {
                current_password: "not the password".into(),
                new_password: "quiet harbor violet 77".into(),
            }
            .encode_to_vec(),
            "RevokeSession" => RevokeSessionRequest {
                session_id: uuid::Uuid::now_v7().to_string(),
            }
            .encode_to_vec(),
            "DisableMfa" => DisableMfaRequest {
                current_password: "not the password".into(),
            }
            .encode_to_vec(),
            "ValidateToken" => ValidateTokenRequest {
                access_token: self.acme.admin.clone(),
            }
            .encode_to_vec(),
            "CreateGroup" => CreateGroupRequest {
                account_id,
                name: format!("Team {unique}"),
                ..Default::default()
            }
            .encode_to_vec(),
            "GetGroup" | "ListGroupMembers" => GetGroupRequest {
                account_id,
                group_id,
            }
            .encode_to_vec(),
            "ListGroups" => ListGroupsRequest {
                account_id,
                ..Default::default()
            }
            .encode_to_vec(),
            "UpdateGroup" => UpdateGroupRequest {
                account_id,
                group: Some(Group {
                    id: group_id,
                    description: "the editors".into(),
                    ..Default::default()
                }),
                update_mask: mask("description"),
                ..Default::default()
            }
            .encode_to_vec(),
            "DeleteGroup" => DeleteGroupRequest {
                account_id,
                group_id: uuid::Uuid::now_v7().to_string(),
                allow_missing: true,
                ..Default::default()
            }
            .encode_to_vec(),
            "AddGroupMembers" | "RemoveGroupMembers" => AddGroupMembersRequest {
                account_id,
                group_id,
                user_ids: vec![target],
            }
            .encode_to_vec(),
            "ShareResource" => ShareResourceRequest {
                account_id,
                resource: check.resource.clone(),
                subject: crate::sharing::to_user(&target),
                level: AccessLevel::View as i32,
                placement,
                ..Default::default()
            }
            .encode_to_vec(),
            "RevokeShare" => {
                // A share of its own for every call.
                let (share_id, _) = self
                    .acme
                    .share(
                        crate::sharing::file("f1"),
                        crate::sharing::to_user(&self.member(FINANCE).id),
                        AccessLevel::View,
                    )
                    .await;
                RevokeShareRequest {
                    account_id,
                    share_id,
                    placement,
                    ..Default::default()
                }
                .encode_to_vec()
            }
            "ListResourceShares" => ListResourceSharesRequest {
                account_id,
                resource: check.resource.clone(),
                placement,
                ..Default::default()
            }
            .encode_to_vec(),
            "ListSharedWithUser" => ListSharedWithUserRequest {
                account_id,
                user_id: target,
                ..Default::default()
            }
            .encode_to_vec(),
            "CheckAccess" => CheckAccessRequest {
                account_id,
                user_id: target,
                target: Some(check_access_request::Target::Resource(check)),
                ..Default::default()
            }
            .encode_to_vec(),
            "BatchCheckAccess" => BatchCheckAccessRequest {
                account_id,
                items: vec![CheckAccessItem {
                    user_id: target,
                    target: Some(check_access_item::Target::Resource(check)),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode_to_vec(),
            "ExplainAccess" => ExplainAccessRequest {
                account_id,
                user_id: target,
                resource: Some(check),
                ..Default::default()
            }
            .encode_to_vec(),
            other => panic!("the matrix has no request for {other}"),
        }
    }
}

/// What the contract promises `caller` on `rpc`: `None` when it may call (any answer but
/// UNAUTHENTICATED and PERMISSION_DENIED), else the code and reason of the refusal.
fn promised(rpc: &Rpc, who: Who, caller: Caller) -> Option<(Code, &'static str)> {
    use identity::domain::roles::Role;
    let denied = |reason| Some((Code::PermissionDenied, reason));
    match caller {
        Caller::NoToken => Some((Code::Unauthenticated, "CREDENTIALS_MISSING")),
        Caller::Expired => Some((Code::Unauthenticated, "TOKEN_EXPIRED")),
        Caller::Revoked => Some((Code::Unauthenticated, "SESSION_REVOKED")),
        Caller::Service(scope) => match rpc.service_scopes() {
            Some(scopes) if scopes.is_empty() => denied("PERMISSION_MISSING"),
            _ if rpc.admits_scope(scope.as_str()) => None,
            _ => denied("SCOPE_MISSING"),
        },
        Caller::OtherAccount => match who {
            Who::NoPersons => denied("PERMISSION_MISSING"),
            Who::AnyPerson => None,
            _ => denied("ACCOUNT_MISMATCH"),
        },
        Caller::Member(_) | Caller::RestrictedWithShare => {
            let (role, restricted_manager) = match caller {
                Caller::Member(role) => (role, false),
                _ => (Role::MediaLibraryRestricted, true),
            };
            let admitted = match who {
                Who::NoPersons => false,
                Who::AnyPerson | Who::AnyMember => true,
                Who::Administrators => role == Role::AccountAdministrator,
                Who::AuditViewers => role.has(identity::domain::roles::Permission::AuditView),
                Who::MediaManagers => {
                    restricted_manager
                        || [
                            Role::AccountAdministrator,
                            Role::Developer,
                            Role::MediaLibraryFullAccess,
                        ]
                        .contains(&role)
                }
                Who::MediaReaders => {
                    restricted_manager
                        || [
                            Role::AccountAdministrator,
                            Role::Developer,
                            Role::MediaLibraryFullAccess,
                            Role::MediaLibraryViewOnly,
                        ]
                        .contains(&role)
                }
            };
            if admitted {
                None
            } else {
                denied("PERMISSION_MISSING")
            }
        }
    }
}

#[tokio::test]
async fn every_rpc_as_every_kind_of_caller_is_answered_as_its_comment_says() {
    let matrix = Matrix::start().await;
    let server = &matrix.acme.server;
    let mut wrong = Vec::new();
    let mut calls = 0;
    for rpc in contract().iter().filter(|rpc| !rpc.public()) {
        let who =
            who(&rpc.path).unwrap_or_else(|| panic!("{} is missing from the matrix", rpc.path));
        // The comment's people and the matrix agree on whether people may call at all.
        assert_eq!(
            who != Who::NoPersons,
            rpc.admits_persons(),
            "{}: {who:?} against {:?}",
            rpc.path,
            rpc.caller
        );
        for caller in Matrix::callers() {
            let token = matrix.token(caller).await;
            let body = matrix.body(&rpc.path).await;
            let status = crate::hostile::send(server.channel(), &rpc.path, token.as_deref(), body)
                .await
                .err();
            calls += 1;
            let answered = status
                .as_ref()
                .map(|s| (s.code(), reason(s)))
                .unwrap_or((Code::Ok, String::new()));
            let ok = match promised(rpc, who, caller) {
                None => !matches!(answered.0, Code::Unauthenticated | Code::PermissionDenied),
                // An RPC not served yet answers UNIMPLEMENTED to every caller the gate admits:
                // its people's rules (role, account) are the use case's, checked once it exists.
                Some(_)
                    if rpc.not_served
                        && answered.0 == Code::Unimplemented
                        && matches!(
                            caller,
                            Caller::Member(_) | Caller::RestrictedWithShare | Caller::OtherAccount
                        ) =>
                {
                    true
                }
                Some((code, reason)) => answered.0 == code && answered.1 == reason,
            };
            // Served or not, as the comment says.
            if rpc.not_served != (answered.0 == Code::Unimplemented)
                && !matches!(answered.0, Code::Unauthenticated | Code::PermissionDenied)
            {
                wrong.push(format!(
                    "{} as {caller:?}: the comment says not served: {}; answered {answered:?}",
                    rpc.path, rpc.not_served
                ));
            }
            if !ok {
                wrong.push(format!(
                    "{} as {caller:?}: promised {:?}, answered {answered:?} {:?}",
                    rpc.path,
                    promised(rpc, who, caller),
                    status.map(|s| s.message().to_owned())
                ));
            }
        }
    }
    eprintln!(
        "{calls} calls: {} RPCs as {} callers",
        contract().iter().filter(|rpc| !rpc.public()).count(),
        Matrix::callers().len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
