//! Who is calling. The authentication layer resolves the caller once per request and the domain
//! decides, from the `Actor` it is handed, what that caller may do.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::error::{DomainError, DomainResult, reason};
use super::roles::{Permission, Role};

/// A scope of a service token. The strings are configuration and API; they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Support tooling: create accounts, set limits, act on any account.
    AccountsOperate,
    UsersRead,
    UsersManage,
    AccessCheck,
    AccessShare,
    AuditRead,
    AuditWrite,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::AccountsOperate,
        Scope::UsersRead,
        Scope::UsersManage,
        Scope::AccessCheck,
        Scope::AccessShare,
        Scope::AuditRead,
        Scope::AuditWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AccountsOperate => "accounts.operate",
            Scope::UsersRead => "users.read",
            Scope::UsersManage => "users.manage",
            Scope::AccessCheck => "access.check",
            Scope::AccessShare => "access.share",
            Scope::AuditRead => "audit.read",
            Scope::AuditWrite => "audit.write",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == value)
    }
}

/// A backend service authenticated by a configured token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

/// A person authenticated by an access token of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonCaller {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
    pub amr: Vec<String>,
    /// The person's email when the token was issued (a label for the audit log).
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// No credentials: only the public RPCs accept it.
    Anonymous,
    Service(ServiceCaller),
    Person(PersonCaller),
}

/// What an operation on one account asks of the caller: a person needs the permission (or just
/// membership when `None`), a service needs the scope (operators may do everything).
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    pub permission: Option<Permission>,
    pub scope: Scope,
}

/// Managing users and groups: administrators, services with `users.manage`, operators.
pub const MANAGE_USERS: Requirement = Requirement {
    permission: Some(Permission::UsersManage),
    scope: Scope::UsersManage,
};

/// Reading users and groups: any member of the account (people pick share subjects from them),
/// services with `users.read` (or `users.manage`), operators.
pub const READ_USERS: Requirement = Requirement {
    permission: None,
    scope: Scope::UsersRead,
};

/// Who may call an RPC at all, before its request is read: the first gate of authorization. The
/// use case then checks the rest (the account, the role, the resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// No credentials needed.
    Public,
    /// People only (their own profile, sessions, MFA, permissions).
    Persons,
    /// People, and services holding one of these scopes.
    PersonsAndServices(&'static [Scope]),
    /// Services holding one of these scopes; people are refused.
    Services(&'static [Scope]),
    /// Any service token, whatever its scopes; people are refused.
    AnyService,
}

impl Actor {
    /// Fails when the caller is not one `callers` admits: `UNAUTHENTICATED` without credentials,
    /// `PERMISSION_DENIED SCOPE_MISSING` for a service without an admitting scope,
    /// `PERMISSION_DENIED PERMISSION_MISSING` for a kind of caller the RPC refuses.
    pub fn admitted_by(&self, callers: Callers) -> DomainResult<()> {
        let services = match (self, callers) {
            (_, Callers::Public) => return Ok(()),
            (Actor::Anonymous, _) => return Err(unauthenticated()),
            (Actor::Person(_), Callers::Persons | Callers::PersonsAndServices(_)) => {
                return Ok(());
            }
            (Actor::Person(_), Callers::Services(_) | Callers::AnyService) => {
                return Err(DomainError::permission_denied(
                    reason::PERMISSION_MISSING,
                    "this RPC is for services: use a service token",
                ));
            }
            (Actor::Service(_), Callers::Persons) => {
                return Err(DomainError::permission_denied(
                    reason::PERMISSION_MISSING,
                    "this RPC is for people: use a person's access token",
                ));
            }
            (Actor::Service(_), Callers::AnyService) => return Ok(()),
            (Actor::Service(service), Callers::PersonsAndServices(scopes))
            | (Actor::Service(service), Callers::Services(scopes)) => (service, scopes),
        };
        let (service, scopes) = services;
        if scopes.iter().any(|scope| service.scopes.contains(scope)) {
            return Ok(());
        }
        Err(match scopes.first() {
            Some(scope) => missing_scope(*scope),
            None => DomainError::permission_denied(
                reason::PERMISSION_MISSING,
                "this RPC is not for services",
            ),
        })
    }
}

impl Actor {
    /// Support tooling with `accounts.operate`.
    pub fn is_operator(&self) -> bool {
        matches!(self, Actor::Service(service) if service.scopes.contains(&Scope::AccountsOperate))
    }

    /// Fails unless the caller is an operator.
    pub fn require_operator(&self) -> DomainResult<()> {
        match self {
            Actor::Anonymous => Err(unauthenticated()),
            _ if self.is_operator() => Ok(()),
            Actor::Service(_) => Err(missing_scope(Scope::AccountsOperate)),
            Actor::Person(_) => Err(DomainError::permission_denied(
                reason::PERMISSION_MISSING,
                "only support tooling with the accounts.operate scope may do this",
            )),
        }
    }

    /// Fails unless the caller may act on `account_id` as `need` says. A person of another
    /// account learns nothing about `account_id`: the answer is the same whether it exists or not.
    pub fn authorize(&self, account_id: Uuid, need: Requirement) -> DomainResult<()> {
        match self {
            Actor::Anonymous => Err(unauthenticated()),
            Actor::Service(service) => {
                let manage_covers_read =
                    need.scope == Scope::UsersRead && service.scopes.contains(&Scope::UsersManage);
                if service.scopes.contains(&Scope::AccountsOperate)
                    || service.scopes.contains(&need.scope)
                    || manage_covers_read
                {
                    Ok(())
                } else {
                    Err(missing_scope(need.scope))
                }
            }
            Actor::Person(person) => {
                if person.account_id != account_id {
                    return Err(DomainError::permission_denied(
                        reason::ACCOUNT_MISMATCH,
                        "the access token is for another account",
                    ));
                }
                match need.permission {
                    Some(permission) if !person.role.has(permission) => {
                        Err(DomainError::permission_denied(
                            reason::PERMISSION_MISSING,
                            format!("the {} permission is required", permission.as_str()),
                        ))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// The person behind the call, or the refusal: `UNAUTHENTICATED` without credentials,
    /// `PERMISSION_DENIED` for a service (`why` tells it what the operation is about).
    pub fn require_person(&self, why: &str) -> DomainResult<&PersonCaller> {
        match self {
            Actor::Person(person) => Ok(person),
            Actor::Anonymous => Err(unauthenticated()),
            Actor::Service(_) => Err(DomainError::permission_denied(
                reason::PERMISSION_MISSING,
                format!("{why}: use a person's access token"),
            )),
        }
    }

    /// The person behind the call, when it is one.
    pub fn person(&self) -> Option<&PersonCaller> {
        match self {
            Actor::Person(person) => Some(person),
            _ => None,
        }
    }

    /// A short label for logs and audit: never a token.
    pub fn label(&self) -> String {
        match self {
            Actor::Anonymous => "anonymous".to_owned(),
            Actor::Service(service) => format!("service:{}", service.name),
            Actor::Person(person) => format!("user:{}", person.user_id),
        }
    }
}

fn unauthenticated() -> DomainError {
    DomainError::unauthenticated(
        reason::CREDENTIALS_MISSING,
        "this RPC needs `authorization: Bearer <token>`",
    )
}

fn missing_scope(scope: Scope) -> DomainError {
    DomainError::PermissionDenied {
        reason: reason::SCOPE_MISSING,
        message: format!("the service token lacks the {} scope", scope.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: Role, account_id: Uuid) -> Actor {
        Actor::Person(PersonCaller {
            user_id: Uuid::now_v7(),
            account_id,
            role,
            session_id: Uuid::now_v7(),
            amr: vec!["pwd".into()],
            email: "someone@example.com".into(),
        })
    }

    fn service(scopes: &[Scope]) -> Actor {
        Actor::Service(ServiceCaller {
            name: "dam".into(),
            scopes: scopes.iter().copied().collect(),
        })
    }

    const MANAGE_USERS: Requirement = Requirement {
        permission: Some(Permission::UsersManage),
        scope: Scope::UsersManage,
    };

    #[test]
    fn people_act_only_on_their_account_with_the_permission() {
        let account = Uuid::now_v7();
        assert!(
            person(Role::AccountAdministrator, account)
                .authorize(account, MANAGE_USERS)
                .is_ok()
        );
        assert!(matches!(
            person(Role::Developer, account).authorize(account, MANAGE_USERS),
            Err(DomainError::PermissionDenied { .. })
        ));
        assert!(matches!(
            person(Role::AccountAdministrator, Uuid::now_v7()).authorize(account, MANAGE_USERS),
            Err(DomainError::PermissionDenied { .. })
        ));
    }

    #[test]
    fn services_need_the_scope_or_operator() {
        let account = Uuid::now_v7();
        assert!(
            service(&[Scope::UsersManage])
                .authorize(account, MANAGE_USERS)
                .is_ok()
        );
        assert!(
            service(&[Scope::AccountsOperate])
                .authorize(account, MANAGE_USERS)
                .is_ok()
        );
        assert!(matches!(
            service(&[Scope::AccessCheck]).authorize(account, MANAGE_USERS),
            Err(DomainError::PermissionDenied {
                reason: reason::SCOPE_MISSING,
                ..
            })
        ));
        assert!(matches!(
            Actor::Anonymous.authorize(account, MANAGE_USERS),
            Err(DomainError::Unauthenticated { .. })
        ));
    }

    #[test]
    fn only_operators_operate() {
        assert!(
            service(&[Scope::AccountsOperate])
                .require_operator()
                .is_ok()
        );
        assert!(service(&[Scope::UsersManage]).require_operator().is_err());
        assert!(
            person(Role::AccountAdministrator, Uuid::now_v7())
                .require_operator()
                .is_err()
        );
    }
}
