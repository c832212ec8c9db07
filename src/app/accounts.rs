//! AccountService's use cases: accounts, their settings and their caps per plan.

use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::DefaultLimits;
use crate::domain::accounts::{
    self as rules, Account, AccountChange, CreateAccount, account_not_found,
};
use crate::domain::actor::{Actor, MANAGE_USERS, READ_USERS};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::roles::Role;
use crate::domain::users::{self as user_rules, Inviter, Member};
use crate::store::Store;
use crate::store::accounts::Counter;
use crate::store::idempotency::Idempotency;

use super::users::{invitation_link, invite, lock_account};
use super::{audit, idempotent};
use crate::domain::audit::{Change, Draft, Target, action};

/// An account with its first administrator.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    pub account: Account,
    pub administrator: Member,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    clock: SharedClock,
    defaults: DefaultLimits,
    public_url: String,
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

    /// Operators create accounts; the first administrator is invited (membership, link, email)
    /// in the same unit of work. A retried request (same `request_id`) returns what the first
    /// one created.
    pub async fn create(
        &self,
        actor: &Actor,
        input: CreateAccount,
    ) -> DomainResult<CreatedAccount> {
        actor.require_operator()?;
        let now = self.clock.now();
        let key = input.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("CreateAccount/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: rules::fingerprint(&[
                &input.name,
                input.admin_email.key(),
                &input.admin_display_name,
                &format!("{:?}/{:?}", input.max_users, input.max_groups),
            ]),
        });
        idempotent(
            &self.store,
            key.as_ref(),
            now,
            |account_id| self.created(account_id, input.admin_email.key()),
            async {
                let account = Account::new(
                    input.name.clone(),
                    input.max_users.unwrap_or(self.defaults.max_users),
                    input.max_groups.unwrap_or(self.defaults.max_groups),
                    now,
                );
                let tx = self.store.begin().await?;
                if let Some(key) = &key {
                    tx.record_request(key, &account.id.to_string(), now).await?;
                }
                tx.insert_account(&account).await?;
                let person = tx
                    .find_or_create_person(&input.admin_email, &input.admin_display_name, now)
                    .await?;
                let membership =
                    user_rules::admit(&account, &person, Role::AccountAdministrator, None, now)?;
                tx.insert_membership(&membership).await?;
                tx.add_to_counter(account.id, Counter::Users, 1).await?;
                let inviter = Inviter {
                    user_id: None,
                    name: "Support".to_owned(),
                };
                let link = invitation_link(&self.public_url);
                invite(&tx, &account, &person, &inviter, link, now).await?;
                let account = lock_account(&tx, account.id).await?;
                let administrator = tx
                    .member(account.id, person.id)
                    .await?
                    .ok_or_else(user_rules::user_not_found)?;
                audit::append(
                    &tx,
                    account.id,
                    now,
                    [
                        Draft::by(action::ACCOUNT_CREATED, actor)
                            .target(Target::new("account", account.id, &account.name))
                            .changes([
                                Change::new("name", None::<&str>, Some(&account.name)),
                                Change::new(
                                    "limits.max_users",
                                    None::<i32>,
                                    Some(account.max_users),
                                ),
                                Change::new(
                                    "limits.max_groups",
                                    None::<i32>,
                                    Some(account.max_groups),
                                ),
                            ]),
                        Draft::by(action::USER_INVITED, actor)
                            .target(Target::new("user", person.id, &person.email))
                            .changes([Change::new(
                                "role",
                                None::<&str>,
                                Some(Role::AccountAdministrator.as_str()),
                            )]),
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(CreatedAccount {
                    account,
                    administrator,
                })
            },
        )
        .await
    }

    /// What a retried CreateAccount answers: the account and the administrator it invited.
    async fn created(
        &self,
        account_id: Uuid,
        admin_email_key: &str,
    ) -> DomainResult<CreatedAccount> {
        let account = self.find(account_id).await?;
        let administrator = match self.store.person_by_email(admin_email_key).await? {
            Some(person) => self.store.member(account_id, person.id).await?,
            None => None,
        }
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("account without administrator")))?;
        Ok(CreatedAccount {
            account,
            administrator,
        })
    }

    /// Members of the account, operators and services with `users.read` may read it.
    pub async fn get(&self, actor: &Actor, account_id: Uuid) -> DomainResult<Account> {
        actor.authorize(account_id, READ_USERS)?;
        self.find(account_id).await
    }

    /// Administrators (`users.manage`) change the account's settings.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        account_id: Uuid,
        enforce_mfa: Option<bool>,
        etag: Option<i64>,
    ) -> DomainResult<Account> {
        actor.authorize(account_id, MANAGE_USERS)?;
        self.change(
            actor,
            action::ACCOUNT_SETTINGS_CHANGED,
            account_id,
            AccountChange {
                enforce_mfa,
                ..AccountChange::default()
            },
            etag,
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
    ) -> DomainResult<Account> {
        actor.require_operator()?;
        self.change(
            actor,
            action::ACCOUNT_LIMITS_CHANGED,
            account_id,
            AccountChange {
                max_users,
                max_groups,
                ..AccountChange::default()
            },
            etag,
        )
        .await
    }

    /// Applies `change` if the account is still at `etag` (when given), under the account lock.
    async fn change(
        &self,
        actor: &Actor,
        action: &'static str,
        account_id: Uuid,
        change: AccountChange,
        etag: Option<i64>,
    ) -> DomainResult<Account> {
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let account = lock_account(&tx, account_id).await?;
        rules::check_etag(&account, etag)?;
        tx.update_account(account_id, &change, now).await?;
        let updated = lock_account(&tx, account_id).await?;
        let changes: Vec<Change> = [
            Change::of(
                "settings.enforce_mfa",
                account.enforce_mfa,
                updated.enforce_mfa,
            ),
            Change::of("limits.max_users", account.max_users, updated.max_users),
            Change::of("limits.max_groups", account.max_groups, updated.max_groups),
        ]
        .into_iter()
        .flatten()
        .collect();
        audit::append(
            &tx,
            account_id,
            now,
            [Draft::by(action, actor)
                .target(Target::new("account", account_id, &account.name))
                .changes(changes)],
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn find(&self, account_id: Uuid) -> DomainResult<Account> {
        self.store
            .account(account_id)
            .await?
            .ok_or_else(account_not_found)
    }
}
