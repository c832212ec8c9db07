//! UserService's use cases: members of an account, their roles, invitations and profiles. Every
//! write locks the account row first, so the cap, the last-administrator rule and invitations
//! hold under concurrent requests on any number of replicas.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::secret_token;
use crate::clock::SharedClock;
use crate::domain::access_changes::AccessChange;
use crate::domain::accounts::{Account, account_not_found};
use crate::domain::actor::{Actor, MANAGE_USERS, READ_USERS};
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::page::{After, ListQuery, Page, PageTokens};
use crate::domain::roles::Role;
use crate::domain::sharing::Subject;
use crate::domain::users::{
    self as rules, CreateUser, Inviter, Member, MemberChange, MemberFilter, MembershipStatus,
    Person, UserEtag,
};
use crate::store::accounts::Counter;
use crate::store::idempotency::Idempotency;
use crate::store::{Store, Tx};

use super::{audit, idempotent};
use crate::domain::audit::{Change, Draft, EventActor, Target, action};

/// A member as the target of an event.
fn user_target(member: &Member) -> Target {
    Target::new("user", member.membership.user_id, &member.person.email)
}

/// A new invitation link: the token goes into the email, its hash into the table.
pub struct NewLink {
    pub token: String,
    pub token_hash: String,
    pub link: String,
}

/// A fresh invitation link under `public_url`.
pub fn invitation_link(public_url: &str) -> NewLink {
    let token = secret_token::generate("inv_");
    NewLink {
        token_hash: secret_token::digest_hex(&token),
        link: format!("{public_url}/invitations/accept?token={token}"),
        token,
    }
}

/// A new person sets a password; a person who has one accepts with it.
fn invitation_email(person: &Person, account_name: &str, inviter: &str, link: String) -> Email {
    let expires_in_days = rules::INVITATION_TTL.num_days();
    let (account_name, inviter) = (account_name.to_owned(), inviter.to_owned());
    if person.has_password() {
        Email::AddedToAccount {
            account_name,
            inviter,
            link,
            expires_in_days,
        }
    } else {
        Email::Invitation {
            account_name,
            inviter,
            link,
            expires_in_days,
        }
    }
}

/// Records the membership's invitation (a new link, valid 7 days) and queues its email, in `tx`.
pub(super) async fn invite(
    tx: &Tx,
    account: &Account,
    person: &Person,
    inviter: &Inviter,
    link: NewLink,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let invitation =
        rules::invitation(account.id, person.id, link.token_hash, inviter.user_id, now);
    tx.insert_invitation(&invitation).await?;
    let email = invitation_email(person, &account.name, &inviter.name, link.link);
    super::queue(tx, Some(account.id), &person.email, &email, now).await
}

/// The locked account, or `ACCOUNT_NOT_FOUND`.
pub(super) async fn lock_account(tx: &Tx, account_id: Uuid) -> DomainResult<Account> {
    tx.lock_account(account_id)
        .await?
        .ok_or_else(account_not_found)
}

/// Gives the member `role`, in `tx`: a role change takes them out of every group of the account,
/// ends their sessions (tokens carry the role) and moves the access revision, which is returned.
pub(super) async fn change_role(
    tx: &Tx,
    account_id: Uuid,
    user_id: Uuid,
    role: Role,
    status: MembershipStatus,
    now: DateTime<Utc>,
) -> DomainResult<i64> {
    tx.remove_from_groups(account_id, user_id).await?;
    tx.update_membership(account_id, user_id, Some(role), None, now)
        .await?;
    let changes = [
        AccessChange::LeftGroups { u: user_id },
        AccessChange::member(user_id, role, status),
    ];
    let revision = tx.record_access_change(account_id, &changes, now).await?;
    tx.revoke_member_sessions(user_id, account_id, "role_changed", now)
        .await?;
    Ok(revision)
}

/// The member inside a unit of work, checked against the caller's etag.
async fn member_at(
    tx: &Tx,
    account_id: Uuid,
    user_id: Uuid,
    etag: Option<UserEtag>,
) -> DomainResult<Member> {
    let member = tx
        .member(account_id, user_id)
        .await?
        .ok_or_else(rules::user_not_found)?;
    UserEtag::check(etag, member.etag())?;
    Ok(member)
}

/// The member as the unit of work leaves it.
async fn reread(tx: &Tx, account_id: Uuid, user_id: Uuid) -> DomainResult<Member> {
    member_at(tx, account_id, user_id, None).await
}

/// Refuses to take `member` out of the administrators when they are the account's last one.
pub(super) async fn keep_an_administrator(tx: &Tx, member: &Member) -> DomainResult<()> {
    if rules::leaves_administrators(member) {
        let counts = tx.admin_counts(member.membership.account_id).await?;
        rules::check_admin_remains(member.status(), counts)?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct Users {
    store: Store,
    clock: SharedClock,
    pages: PageTokens,
    public_url: String,
}

impl Users {
    pub fn new(store: Store, clock: SharedClock, pages: PageTokens, public_url: String) -> Self {
        Self {
            store,
            clock,
            pages,
            public_url,
        }
    }

    /// Who invites, as the email names them.
    async fn inviter(&self, tx: &Tx, actor: &Actor, account_id: Uuid) -> DomainResult<Inviter> {
        Ok(match actor {
            Actor::Person(person) => Inviter {
                user_id: Some(person.user_id),
                name: match tx.member(account_id, person.user_id).await? {
                    Some(member) => member.person.display_name,
                    None => "An administrator".to_owned(),
                },
            },
            _ => Inviter {
                user_id: None,
                name: "The account's administrators".to_owned(),
            },
        })
    }

    /// Adds a member (INVITED), its invitation and the email, in one unit of work under the
    /// account lock: the user cap counts invited members and holds under concurrent calls.
    pub async fn create(&self, actor: &Actor, input: CreateUser) -> DomainResult<Member> {
        let account_id = input.account_id;
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let key = input.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("CreateUser/{account_id}/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: crate::domain::accounts::fingerprint(&[
                input.email.key(),
                input.display_name.as_deref().unwrap_or_default(),
                input.role.as_str(),
            ]),
        });
        idempotent(
            &self.store,
            key.as_ref(),
            now,
            |user_id| self.require(account_id, user_id),
            async {
                let tx = self.store.begin().await?;
                let account = lock_account(&tx, account_id).await?;
                let inviter = self.inviter(&tx, actor, account_id).await?;
                let display_name = input
                    .display_name
                    .clone()
                    .unwrap_or_else(|| rules::default_display_name(&input.email));
                let person = tx
                    .find_or_create_person(&input.email, &display_name, now)
                    .await?;
                // The key before the cap: a concurrent retry then fails on the key (and replays
                // the first result) instead of on the slot its twin has just taken.
                if let Some(key) = &key {
                    tx.record_request(key, &person.id.to_string(), now).await?;
                }
                let membership = rules::admit(&account, &person, input.role, inviter.user_id, now)?;
                if !tx.insert_membership(&membership).await? {
                    return Err(rules::already_member());
                }
                tx.add_to_counter(account_id, Counter::Users, 1).await?;
                invite(&tx, &account, &person, &inviter, self.new_link(), now).await?;
                let member = reread(&tx, account_id, person.id).await?;
                audit::append(
                    &tx,
                    account_id,
                    now,
                    [Draft::by(action::USER_INVITED, actor)
                        .target(user_target(&member))
                        .changes([Change::new("role", None::<&str>, Some(input.role.as_str()))])],
                )
                .await?;
                tx.commit().await?;
                Ok(member)
            },
        )
        .await
    }

    fn new_link(&self) -> NewLink {
        invitation_link(&self.public_url)
    }

    async fn require(&self, account_id: Uuid, user_id: Uuid) -> DomainResult<Member> {
        self.store
            .member(account_id, user_id)
            .await?
            .ok_or_else(rules::user_not_found)
    }

    pub async fn get(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Member> {
        actor.authorize(account_id, READ_USERS)?;
        self.require(account_id, user_id).await
    }

    /// One page of the account's users in email order; the token is tied to the filter.
    pub async fn list(
        &self,
        actor: &Actor,
        account_id: Uuid,
        filter: MemberFilter,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Member>> {
        actor.authorize(account_id, READ_USERS)?;
        let role = filter.role.map(Role::as_str).unwrap_or_default();
        let status = filter
            .status
            .map(MembershipStatus::as_str)
            .unwrap_or_default();
        let group = filter.group_id.map(|g| g.to_string()).unwrap_or_default();
        let query = ListQuery::new(
            "ListUsers",
            &[
                &account_id.to_string(),
                role,
                status,
                filter.email_prefix.as_deref().unwrap_or_default(),
                &group,
            ],
        );
        let after = self.pages.decode(&query, page_token)?;
        if let Some(group_id) = filter.group_id
            && self.store.group(account_id, group_id).await?.is_none()
        {
            return Err(crate::domain::groups::group_not_found());
        }
        let rows = self
            .store
            .members(account_id, &filter, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&query, rows, page_size, member_position))
    }

    /// Changes a member's name and/or role. A role change takes the member out of every group of
    /// the account, ends their sessions (tokens carry the role) and moves the access revision,
    /// which is returned.
    pub async fn update(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        change: MemberChange,
        etag: Option<UserEtag>,
    ) -> DomainResult<(Member, Option<i64>)> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        lock_account(&tx, account_id).await?;
        let member = member_at(&tx, account_id, user_id, etag).await?;
        let mut revision = None;
        if let Some(role) = change.role.filter(|role| *role != member.role()) {
            keep_an_administrator(&tx, &member).await?;
            revision =
                Some(change_role(&tx, account_id, user_id, role, member.status(), now).await?);
        }
        if let Some(name) = change
            .display_name
            .filter(|name| *name != member.person.display_name)
            && !tx
                .rename_person(user_id, &name, member.person.version, now)
                .await?
        {
            return Err(DomainError::etag_mismatch("user"));
        }
        let updated = reread(&tx, account_id, user_id).await?;
        let changes: Vec<Change> = [
            Change::of("role", member.role().as_str(), updated.role().as_str()),
            Change::of(
                "display_name",
                &member.person.display_name,
                &updated.person.display_name,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !changes.is_empty() {
            let action = if revision.is_some() {
                action::USER_ROLE_CHANGED
            } else {
                action::USER_UPDATED
            };
            let draft = Draft::by(action, actor)
                .target(user_target(&updated))
                .changes(changes);
            audit::append(&tx, account_id, now, [draft]).await?;
        }
        tx.commit().await?;
        Ok((updated, revision))
    }

    /// Removes a member: membership, invitation, group memberships and sessions go; the person
    /// stays. Returns the access revision after the removal, or `None` when there was nothing to
    /// remove (`allow_missing`).
    pub async fn delete(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        etag: Option<UserEtag>,
        allow_missing: bool,
    ) -> DomainResult<Option<i64>> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        lock_account(&tx, account_id).await?;
        let member = match member_at(&tx, account_id, user_id, etag).await {
            Err(DomainError::NotFound { .. }) if allow_missing => return Ok(None),
            other => other?,
        };
        keep_an_administrator(&tx, &member).await?;
        tx.remove_from_groups(account_id, user_id).await?;
        tx.delete_invitation(account_id, user_id).await?;
        tx.delete_membership(account_id, user_id).await?;
        tx.revoke_member_sessions(user_id, account_id, "removed", now)
            .await?;
        tx.add_to_counter(account_id, Counter::Users, -1).await?;
        tx.delete_shares_to(account_id, Subject::User(user_id))
            .await?;
        let revision = tx
            .record_access_change(account_id, &[AccessChange::Removed { u: user_id }], now)
            .await?;
        let draft = Draft::by(action::USER_REMOVED, actor)
            .target(user_target(&member))
            .changes([
                Change::new("role", Some(member.role().as_str()), None::<&str>),
                Change::new("status", Some(member.status().as_str()), None::<&str>),
            ]);
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(Some(revision))
    }

    /// Replaces the member's invitation link (the old one stops working) and queues the email.
    pub async fn resend_invitation(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Member> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let account = lock_account(&tx, account_id).await?;
        let member = member_at(&tx, account_id, user_id, None).await?;
        let previous = tx.invitation_sent_at(account_id, user_id).await?;
        rules::check_resend(&member, previous, now)?;
        let inviter = self.inviter(&tx, actor, account_id).await?;
        tx.delete_invitation(account_id, user_id).await?;
        invite(
            &tx,
            &account,
            &member.person,
            &inviter,
            self.new_link(),
            now,
        )
        .await?;
        let updated = reread(&tx, account_id, user_id).await?;
        let draft = Draft::by(action::USER_INVITATION_RESENT, actor).target(user_target(&updated));
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// The embedded mode's start: a fresh invitation for a member still INVITED, replacing the
    /// link before it, without an email (the start banner shows the token). `None` once the member
    /// has accepted.
    pub async fn renew_invitation_quietly(
        &self,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Option<String>> {
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        lock_account(&tx, account_id).await?;
        let member = member_at(&tx, account_id, user_id, None).await?;
        if member.status() != MembershipStatus::Invited {
            return Ok(None);
        }
        let link = self.new_link();
        tx.delete_invitation(account_id, user_id).await?;
        tx.insert_invitation(&rules::invitation(
            account_id,
            user_id,
            link.token_hash,
            None,
            now,
        ))
        .await?;
        let draft = Draft::new(action::USER_INVITATION_RESENT, EventActor::system())
            .target(user_target(&member))
            .meta("reason", "the zero-setup start renewed it");
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(Some(link.token))
    }

    /// Disables (`disable = true`) or re-enables a member. Disabling ends their sessions and
    /// voids a pending invitation. Returns the member and the access revision after the change.
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        disable: bool,
        etag: Option<UserEtag>,
    ) -> DomainResult<(Member, i64)> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        lock_account(&tx, account_id).await?;
        let member = member_at(&tx, account_id, user_id, etag).await?;
        let target = rules::enabled_status(&member.membership, disable);
        if target != member.status() {
            if disable {
                keep_an_administrator(&tx, &member).await?;
                tx.delete_invitation(account_id, user_id).await?;
                tx.revoke_member_sessions(user_id, account_id, "disabled", now)
                    .await?;
            }
            tx.update_membership(account_id, user_id, None, Some(target), now)
                .await?;
        }
        let change = AccessChange::member(user_id, member.role(), target);
        let revision = tx.record_access_change(account_id, &[change], now).await?;
        let updated = reread(&tx, account_id, user_id).await?;
        if target != member.status() {
            let action = if disable {
                action::USER_DISABLED
            } else {
                action::USER_ENABLED
            };
            let draft = Draft::by(action, actor)
                .target(user_target(&updated))
                .changes([Change::new(
                    "status",
                    Some(member.status().as_str()),
                    Some(target.as_str()),
                )]);
            audit::append(&tx, account_id, now, [draft]).await?;
        }
        tx.commit().await?;
        Ok((updated, revision))
    }

    /// The caller's own user in the account of their token.
    pub async fn my_profile(&self, actor: &Actor) -> DomainResult<Member> {
        let person = actor.require_person("a profile belongs to a person")?;
        self.require(person.account_id, person.user_id).await
    }

    /// Renames the caller (their name is shared by all their accounts).
    pub async fn update_my_profile(
        &self,
        actor: &Actor,
        display_name: Option<String>,
        etag: Option<UserEtag>,
    ) -> DomainResult<Member> {
        let person = actor.require_person("a profile belongs to a person")?;
        let (account_id, user_id) = (person.account_id, person.user_id);
        let Some(name) = display_name else {
            return self.require(account_id, user_id).await;
        };
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let member = member_at(&tx, account_id, user_id, etag).await?;
        if name != member.person.display_name
            && !tx
                .rename_person(user_id, &name, member.person.version, now)
                .await?
        {
            return Err(DomainError::etag_mismatch("user"));
        }
        let updated = reread(&tx, account_id, user_id).await?;
        if let Some(change) = Change::of(
            "display_name",
            &member.person.display_name,
            &updated.person.display_name,
        ) {
            let draft = Draft::by(action::USER_PROFILE_UPDATED, actor)
                .target(user_target(&updated))
                .changes([change]);
            audit::append(&tx, account_id, now, [draft]).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }
}

/// Where a member stands in email order.
pub(super) fn member_position(member: &Member) -> After {
    After {
        key: member.membership.email_key.clone(),
        id: member.membership.user_id,
    }
}
