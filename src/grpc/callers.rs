//! Who may call each RPC of the contract, as its proto comment says: the authentication layer
//! checks this before the request's body is read, so a caller the RPC refuses learns that, and
//! nothing about the body. The use cases check the rest (the account, the role, the resource).
//!
//! Every scope list ends with what else admits a service: `users.manage` includes `users.read`, and
//! support tooling (`accounts.operate`) may act on any account through every RPC a scope opens,
//! except recording the DAM's audit events.

use crate::domain::actor::{Callers, Scope};

const OPERATE: &[Scope] = &[Scope::AccountsOperate];
const USERS_READ: &[Scope] = &[Scope::UsersRead, Scope::UsersManage, Scope::AccountsOperate];
const USERS_MANAGE: &[Scope] = &[Scope::UsersManage, Scope::AccountsOperate];
const ACCESS_CHECK: &[Scope] = &[Scope::AccessCheck, Scope::AccountsOperate];
const ACCESS_SHARE: &[Scope] = &[Scope::AccessShare, Scope::AccountsOperate];
const ACCESS_CHECK_OR_SHARE: &[Scope] = &[
    Scope::AccessCheck,
    Scope::AccessShare,
    Scope::AccountsOperate,
];
const AUDIT_READ: &[Scope] = &[Scope::AuditRead, Scope::AccountsOperate];
const AUDIT_WRITE: &[Scope] = &[Scope::AuditWrite];

use Callers::{AnyService, Persons, PersonsAndServices as Both, Public, Services};

/// Every RPC of package `identity.v1` by its path, with who may call it.
pub const RPCS: &[(&str, Callers)] = &[
    (
        "/identity.v1.AccountService/CreateAccount",
        Services(OPERATE),
    ),
    ("/identity.v1.AccountService/GetAccount", Both(USERS_READ)),
    (
        "/identity.v1.AccountService/UpdateAccountSettings",
        Both(OPERATE),
    ),
    (
        "/identity.v1.AccountService/SetAccountLimits",
        Services(OPERATE),
    ),
    ("/identity.v1.AccountService/GetSsoSettings", Both(OPERATE)),
    (
        "/identity.v1.AccountService/UpdateSsoSettings",
        Both(OPERATE),
    ),
    ("/identity.v1.UserService/CreateUser", Both(USERS_MANAGE)),
    ("/identity.v1.UserService/GetUser", Both(USERS_READ)),
    ("/identity.v1.UserService/ListUsers", Both(USERS_READ)),
    ("/identity.v1.UserService/UpdateUser", Both(USERS_MANAGE)),
    ("/identity.v1.UserService/DeleteUser", Both(USERS_MANAGE)),
    (
        "/identity.v1.UserService/ResendInvitation",
        Both(USERS_MANAGE),
    ),
    ("/identity.v1.UserService/DisableUser", Both(USERS_MANAGE)),
    ("/identity.v1.UserService/EnableUser", Both(USERS_MANAGE)),
    ("/identity.v1.UserService/GetMyProfile", Persons),
    ("/identity.v1.UserService/UpdateMyProfile", Persons),
    ("/identity.v1.GroupService/CreateGroup", Both(USERS_MANAGE)),
    ("/identity.v1.GroupService/GetGroup", Both(USERS_READ)),
    ("/identity.v1.GroupService/ListGroups", Both(USERS_READ)),
    ("/identity.v1.GroupService/UpdateGroup", Both(USERS_MANAGE)),
    ("/identity.v1.GroupService/DeleteGroup", Both(USERS_MANAGE)),
    (
        "/identity.v1.GroupService/AddGroupMembers",
        Both(USERS_MANAGE),
    ),
    (
        "/identity.v1.GroupService/RemoveGroupMembers",
        Both(USERS_MANAGE),
    ),
    (
        "/identity.v1.GroupService/ListGroupMembers",
        Both(USERS_READ),
    ),
    ("/identity.v1.GroupService/ListUserGroups", Both(USERS_READ)),
    ("/identity.v1.AuthService/Login", Public),
    ("/identity.v1.AuthService/VerifyMfaChallenge", Public),
    ("/identity.v1.AuthService/ResendMfaCode", Public),
    ("/identity.v1.AuthService/LoginWithGoogle", Public),
    ("/identity.v1.AuthService/StartSsoLogin", Public),
    ("/identity.v1.AuthService/LoginWithSso", Public),
    ("/identity.v1.AuthService/SelectAccount", Public),
    ("/identity.v1.AuthService/GetInvitation", Public),
    ("/identity.v1.AuthService/AcceptInvitation", Public),
    ("/identity.v1.AuthService/RequestPasswordReset", Public),
    ("/identity.v1.AuthService/ResetPassword", Public),
    ("/identity.v1.AuthService/ChangePassword", Persons),
    ("/identity.v1.AuthService/RefreshSession", Public),
    ("/identity.v1.AuthService/Logout", Persons),
    ("/identity.v1.AuthService/ListMySessions", Persons),
    ("/identity.v1.AuthService/RevokeSession", Persons),
    ("/identity.v1.AuthService/EnableMfa", Persons),
    ("/identity.v1.AuthService/DisableMfa", Persons),
    ("/identity.v1.AuthService/ValidateToken", AnyService),
    ("/identity.v1.AuthService/GetJwks", Public),
    (
        "/identity.v1.AccessService/ShareResource",
        Both(ACCESS_SHARE),
    ),
    ("/identity.v1.AccessService/RevokeShare", Both(ACCESS_SHARE)),
    (
        "/identity.v1.AccessService/ListResourceShares",
        Both(ACCESS_CHECK_OR_SHARE),
    ),
    (
        "/identity.v1.AccessService/ListSharedWithUser",
        Both(ACCESS_CHECK),
    ),
    ("/identity.v1.AccessService/CheckAccess", Both(ACCESS_CHECK)),
    (
        "/identity.v1.AccessService/BatchCheckAccess",
        Both(ACCESS_CHECK),
    ),
    (
        "/identity.v1.AccessService/ExplainAccess",
        Both(ACCESS_CHECK),
    ),
    ("/identity.v1.AccessService/ListMyPermissions", Persons),
    (
        "/identity.v1.AuditService/ListAuditEvents",
        Both(AUDIT_READ),
    ),
    (
        "/identity.v1.AuditService/RecordAuditEvents",
        Services(AUDIT_WRITE),
    ),
];

/// Health and reflection: open to anyone.
const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Who may call the RPC at `path`; `None` for a path that is not an RPC of the contract.
pub fn callers(path: &str) -> Option<Callers> {
    if PUBLIC_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        return Some(Public);
    }
    RPCS.iter()
        .find(|(rpc, _)| *rpc == path)
        .map(|(_, callers)| *callers)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_rpc_of_the_contract_is_listed_once() {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set");
        let mut contract: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service.iter().flat_map(move |service| {
                    let prefix = format!("/{package}.{}/", service.name());
                    service
                        .method
                        .iter()
                        .map(move |method| format!("{prefix}{}", method.name()))
                })
            })
            .collect();
        contract.sort();
        let mut listed: Vec<String> = RPCS.iter().map(|(rpc, _)| rpc.to_string()).collect();
        listed.sort();
        assert_eq!(listed, contract);
    }

    #[test]
    fn health_and_reflection_are_public_and_unknown_paths_unlisted() {
        assert_eq!(callers("/grpc.health.v1.Health/Check"), Some(Public));
        assert_eq!(
            callers("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Some(Public)
        );
        assert_eq!(callers("/identity.v1.AuthService/Nope"), None);
    }
}
