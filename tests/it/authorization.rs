//! Who may call what, compared with the proto comments: every RPC of the contract, read from the
//! `.proto` files with its `Caller:` paragraph, is called with an empty body by no one, by a person
//! and by a service holding each scope alone. Authorization comes before the body: a caller the
//! comment does not admit is refused whatever the body holds.

use std::str::FromStr;

use tonic::Code;

use crate::harness::*;

/// One RPC as its comment describes its callers.
#[derive(Debug)]
struct Rpc {
    path: String,
    caller: String,
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

/// An empty message: every request type decodes it (all fields default), and any response
/// decodes into it (unknown fields are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// Calls `path` with an empty body and `token`, if any.
async fn call(server: &TestServer, path: &str, token: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel());
    grpc.ready().await.unwrap();
    let request = match token {
        Some(token) => with_token(token, Empty {}),
        None => tonic::Request::new(Empty {}),
    };
    let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
    match grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_str(path).unwrap(),
            codec,
        )
        .await
    {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
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
            if anonymous.code() == Code::Unauthenticated {
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
