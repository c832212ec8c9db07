//! AccountService rules: who may create, read and change accounts, and the caps per plan.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::DefaultLimits;
use crate::store::Store;
use crate::store::accounts::{AccountChange, CreatedAccount, Idempotency, NewAccount};
use crate::store::entities::account;

use super::actor::{Actor, Requirement, Scope};
use super::error::{DomainError, DomainResult, Violations, reason};
use super::roles::Permission;

/// The largest caps support may set.
pub const MAX_USERS_CAP: i32 = 1_000_000;
pub const MAX_GROUPS_CAP: i32 = 100_000;

#[derive(Debug, Clone)]
pub struct CreateAccount {
    pub name: String,
    pub admin_email: String,
    pub admin_email_key: String,
    pub admin_display_name: String,
    pub max_users: Option<i32>,
    pub max_groups: Option<i32>,
    pub request_id: Option<String>,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    clock: SharedClock,
    defaults: DefaultLimits,
    public_url: String,
}

/// Checks a cap given by support; `field` names it in the violation.
pub fn check_limit(violations: &mut Violations, field: &str, value: i32, min: i32, max: i32) {
    if !(min..=max).contains(&value) {
        violations.add(field, format!("must be between {min} and {max}"));
    }
}

impl Accounts {
    pub fn new(
        store: Store,
        clock: SharedClock,
        defaults: DefaultLimits,
        public_url: String,
    ) -> Self {
        Self {
            store,
            clock,
            defaults,
            public_url,
        }
    }

    /// Operators create accounts; the first administrator is invited (membership, link, email).
    pub async fn create(
        &self,
        actor: &Actor,
        input: CreateAccount,
    ) -> DomainResult<CreatedAccount> {
        actor.require_operator()?;
        let idempotency = input.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("CreateAccount/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: fingerprint(&[
                &input.name,
                &input.admin_email_key,
                &input.admin_display_name,
                &format!("{:?}/{:?}", input.max_users, input.max_groups),
            ]),
        });
        self.store
            .create_account(
                NewAccount {
                    name: input.name,
                    max_users: input.max_users.unwrap_or(self.defaults.max_users),
                    max_groups: input.max_groups.unwrap_or(self.defaults.max_groups),
                    admin_email: input.admin_email,
                    admin_email_key: input.admin_email_key,
                    admin_display_name: input.admin_display_name,
                    idempotency,
                },
                super::users::invitation_link(&self.public_url),
                self.clock.now(),
            )
            .await
    }

    /// Members of the account, operators and services with `users.read` may read it.
    pub async fn get(&self, actor: &Actor, account_id: Uuid) -> DomainResult<account::Model> {
        actor.authorize(
            account_id,
            Requirement {
                permission: None,
                scope: Scope::UsersRead,
            },
        )?;
        self.find(account_id).await
    }

    /// Administrators (`users.manage`) change the account's settings.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        account_id: Uuid,
        enforce_mfa: Option<bool>,
        etag: Option<i64>,
    ) -> DomainResult<account::Model> {
        actor.authorize(
            account_id,
            Requirement {
                permission: Some(Permission::UsersManage),
                scope: Scope::UsersManage,
            },
        )?;
        self.store
            .update_account(
                account_id,
                etag,
                AccountChange {
                    enforce_mfa,
                    ..AccountChange::default()
                },
                self.clock.now(),
            )
            .await
    }

    /// Operators (support) raise or lower the caps. Lowering a cap below the current count
    /// keeps what exists and refuses new ones.
    pub async fn set_limits(
        &self,
        actor: &Actor,
        account_id: Uuid,
        max_users: Option<i32>,
        max_groups: Option<i32>,
        etag: Option<i64>,
    ) -> DomainResult<account::Model> {
        actor.require_operator()?;
        self.store
            .update_account(
                account_id,
                etag,
                AccountChange {
                    max_users,
                    max_groups,
                    ..AccountChange::default()
                },
                self.clock.now(),
            )
            .await
    }

    async fn find(&self, account_id: Uuid) -> DomainResult<account::Model> {
        self.store
            .find_account(account_id)
            .await?
            .ok_or_else(|| DomainError::not_found(reason::ACCOUNT_NOT_FOUND, "account"))
    }
}

/// A stable digest of a request's content, to tell a retry from a different request.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
