//! AccessService's use cases: sharing, the DAM's access checks, and the caller's permissions.
//!
//! Checks are answered from the replica's memory (`cache`) whenever the freshness rule allows;
//! shares are written in a unit of work that locks the account and records the access change.
//! Lists and explanations, which are not on the hot path, read the database.

pub mod cache;
pub mod memory;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::access::{MyPermissions, permissions_of};
use crate::domain::access_changes::AccessChange;
use crate::domain::accounts::fingerprint;
use crate::domain::actor::{Actor, Requirement, Scope};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::page::{ListQuery, Page, PageTokens};
use crate::domain::roles::{Level, MediaAccess, Permission, Role};
use crate::domain::sharing::{
    self as rules, AccessView, CheckItem, Decision, Grant, OnShare, ResourceCheck, ResourceRef,
    ResourceType, Share, Subject, Via,
};
use crate::domain::users::{MembershipStatus, user_not_found};
use crate::store::Store;
use crate::store::idempotency::Idempotency;
use crate::store::shares::{ExplainRows, resource_position};

use self::cache::{AccessCache, no_account};
use super::{audit, idempotent};
use crate::domain::audit::{Change, Draft, Target, action};

/// A share's audit event: the resource is the target, the share and its subject are details.
fn share_event(action: &'static str, actor: &Actor, share: &Share, level: Change) -> Draft {
    let (subject_kind, subject_id) = share.subject.parts();
    Draft::by(action, actor)
        .target(Target::new(
            share.resource.kind.as_str(),
            &share.resource.id,
            "",
        ))
        .changes([level])
        .meta("share_id", share.id)
        .meta("subject_type", subject_kind)
        .meta("subject_id", subject_id)
}
use super::users::lock_account;

/// A share to make: `ShareResource`.
#[derive(Debug, Clone)]
pub struct ShareCommand {
    pub account_id: Uuid,
    pub resource: ResourceRef,
    pub subject: Subject,
    pub level: Level,
    pub request_id: Option<String>,
    /// Where the resource sits: needed for a Restricted caller's MANAGE.
    pub placement: rules::Placement,
}

/// A share made or updated, and the write's revision.
#[derive(Debug, Clone)]
pub struct Shared {
    pub share: Share,
    pub created: bool,
    pub revision: i64,
}

/// A resource shared with a user: the highest level of the shares reaching them, and those.
#[derive(Debug, Clone)]
pub struct SharedResource {
    pub resource: ResourceRef,
    pub level: Level,
    pub shares: Vec<Share>,
}

/// An explanation: the level, every grant (with the share behind it), the member's role and
/// status, and the revision it was computed from.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub level: Level,
    pub grants: Vec<Grant<Share>>,
    pub member: Option<(Role, MembershipStatus)>,
    pub revision: i64,
    pub evaluated_at: DateTime<Utc>,
}

/// Checking: services with `access.check` (operators too); a person about themself; a person
/// with `users.manage` about anyone.
const CHECK: Requirement = Requirement {
    permission: Some(Permission::UsersManage),
    scope: Scope::AccessCheck,
};

#[derive(Clone)]
pub struct Access {
    store: Store,
    clock: SharedClock,
    pages: PageTokens,
    cache: Arc<AccessCache>,
}

fn share_position(share: &Share) -> crate::domain::page::After {
    crate::domain::page::After {
        key: share
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        id: share.id,
    }
}

fn share_not_found() -> DomainError {
    DomainError::not_found(reason::SHARE_NOT_FOUND, "share")
}

fn not_a_subject(subject: Subject) -> DomainError {
    let (field, what) = match subject {
        Subject::User(_) => ("subject.user_id", "is not a user of this account"),
        Subject::Group(_) => ("subject.group_id", "is not a group of this account"),
    };
    DomainError::invalid(field, what)
}

fn permission_missing(what: &str) -> DomainError {
    DomainError::permission_denied(reason::PERMISSION_MISSING, what.to_owned())
}

fn account_mismatch() -> DomainError {
    DomainError::permission_denied(
        reason::ACCOUNT_MISMATCH,
        "the access token is for another account",
    )
}

impl Access {
    pub fn new(
        store: Store,
        clock: SharedClock,
        pages: PageTokens,
        cache: Arc<AccessCache>,
    ) -> Self {
        Self {
            store,
            clock,
            pages,
            cache,
        }
    }

    pub fn cache(&self) -> &Arc<AccessCache> {
        &self.cache
    }

    /// The caller's role (as stored now, not as in the token) and what it grants.
    pub async fn my_permissions(
        &self,
        actor: &Actor,
        account_id: Uuid,
    ) -> DomainResult<MyPermissions> {
        let person = actor.require_person("permissions belong to a person")?;
        if person.account_id != account_id {
            return Err(account_mismatch());
        }
        let member = self
            .store
            .member(account_id, person.user_id)
            .await?
            .ok_or_else(user_not_found)?;
        Ok(permissions_of(member.role()))
    }

    /// Fails unless a person caller's role gives MANAGE everywhere (or any level, with
    /// `allow_media_viewers`), or, for a Restricted user, their shares and ownership give MANAGE
    /// on the resource; or a service has `scope`. The role is the token's, as for every RPC
    /// (a role change ends the member's sessions).
    async fn authorize_manage(
        &self,
        actor: &Actor,
        account_id: Uuid,
        check: &ResourceCheck,
        scope: Scope,
        allow_media_viewers: bool,
    ) -> DomainResult<()> {
        let Actor::Person(person) = actor else {
            return actor.authorize(
                account_id,
                Requirement {
                    permission: None,
                    scope,
                },
            );
        };
        if person.account_id != account_id {
            return Err(account_mismatch());
        }
        match person.role.media_access() {
            MediaAccess::All(Level::Manage) => return Ok(()),
            MediaAccess::All(level) if allow_media_viewers && level > Level::None => {
                return Ok(());
            }
            MediaAccess::All(_) => {
                return Err(permission_missing("the role gives no MANAGE on media"));
            }
            MediaAccess::PerShare => {}
        }
        let fresh = self
            .cache
            .fresh(account_id, None)
            .await?
            .ok_or_else(no_account)?;
        if rules::may_manage_shares(fresh.read().data(), person.user_id, check) {
            Ok(())
        } else {
            Err(permission_missing("MANAGE on the resource is required"))
        }
    }

    /// Grants a level (or replaces the level of the subject's existing share).
    pub async fn share(&self, actor: &Actor, command: ShareCommand) -> DomainResult<Shared> {
        let account_id = command.account_id;
        rules::check_shareable(&command.resource)?;
        let check = ResourceCheck {
            resource: command.resource.clone(),
            placement: command.placement.clone(),
        };
        self.authorize_manage(actor, account_id, &check, Scope::AccessShare, false)
            .await?;
        let now = self.clock.now();
        let (subject_kind, subject_id) = command.subject.parts();
        let key = command.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("ShareResource/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: fingerprint(&[
                &account_id.to_string(),
                command.resource.kind.as_str(),
                &command.resource.id,
                subject_kind,
                &subject_id.to_string(),
                command.level.as_str(),
            ]),
        });
        idempotent(
            &self.store,
            key.as_ref(),
            now,
            |share_id| self.replay_share(account_id, share_id),
            async {
                let tx = self.store.begin().await?;
                lock_account(&tx, account_id).await?;
                let exists = match command.subject {
                    Subject::User(user_id) => tx.member(account_id, user_id).await?.is_some(),
                    Subject::Group(group_id) => tx.group(account_id, group_id).await?.is_some(),
                };
                if !exists {
                    return Err(not_a_subject(command.subject));
                }
                let by = actor_name(actor);
                let existing = tx
                    .share_of(account_id, &command.resource, command.subject)
                    .await?;
                let before = existing.as_ref().map(|share| share.level.as_str());
                let (share, created) = match existing {
                    Some(mut share) => {
                        tx.update_share(account_id, share.id, command.level, &by, now)
                            .await?;
                        share.level = command.level;
                        share.created_by = by;
                        share.updated_at = now;
                        (share, false)
                    }
                    None => {
                        let share = Share {
                            id: Uuid::now_v7(),
                            account_id,
                            resource: command.resource.clone(),
                            subject: command.subject,
                            level: command.level,
                            created_by: by,
                            created_at: now,
                            updated_at: now,
                        };
                        tx.insert_share(&share).await?;
                        (share, true)
                    }
                };
                if let Some(key) = &key {
                    tx.record_request(key, &share.id.to_string(), now).await?;
                }
                let revision = tx
                    .record_access_change(
                        account_id,
                        &[AccessChange::Shared {
                            r: share.resource.clone(),
                            s: share.subject,
                            l: share.level.into(),
                        }],
                        now,
                    )
                    .await?;
                let level = Change::new("level", before, Some(share.level.as_str()));
                let action = if created {
                    action::SHARE_CREATED
                } else {
                    action::SHARE_CHANGED
                };
                audit::append(
                    &tx,
                    account_id,
                    now,
                    [share_event(action, actor, &share, level)],
                )
                .await?;
                tx.commit().await?;
                Ok(Shared {
                    share,
                    created,
                    revision,
                })
            },
        )
        .await
    }

    /// The answer to a retried `ShareResource`: the share as it is now, at the current revision.
    async fn replay_share(&self, account_id: Uuid, share_id: Uuid) -> DomainResult<Shared> {
        let share = self
            .store
            .share(account_id, share_id)
            .await?
            .ok_or_else(share_not_found)?;
        let revision = self.current_revision(account_id).await?;
        Ok(Shared {
            created: share.created_at == share.updated_at,
            share,
            revision,
        })
    }

    /// Deletes a share; returns the revision after it (the current one when there was nothing
    /// to delete and `allow_missing`).
    pub async fn revoke(
        &self,
        actor: &Actor,
        account_id: Uuid,
        share_id: Uuid,
        allow_missing: bool,
        placement: rules::Placement,
    ) -> DomainResult<i64> {
        let now = self.clock.now();
        // The caller's right is checked on the share's resource, which needs the share first;
        // a caller who may not see it learns no more than that it is not found.
        if let Actor::Person(person) = actor
            && person.account_id != account_id
        {
            return Err(account_mismatch());
        }
        let found = self.store.share(account_id, share_id).await?;
        let Some(share) = found else {
            if let Actor::Service(_) = actor {
                actor.authorize(
                    account_id,
                    Requirement {
                        permission: None,
                        scope: Scope::AccessShare,
                    },
                )?;
            }
            return if allow_missing {
                self.current_revision(account_id).await
            } else {
                Err(share_not_found())
            };
        };
        let check = ResourceCheck {
            resource: share.resource.clone(),
            placement,
        };
        self.authorize_manage(actor, account_id, &check, Scope::AccessShare, false)
            .await?;
        let tx = self.store.begin().await?;
        lock_account(&tx, account_id).await?;
        let Some(share) = tx.share(account_id, share_id).await? else {
            // Revoked meanwhile.
            drop(tx);
            return if allow_missing {
                self.current_revision(account_id).await
            } else {
                Err(share_not_found())
            };
        };
        tx.delete_share(account_id, share.id).await?;
        let level = Change::new("level", Some(share.level.as_str()), None::<&str>);
        let draft = share_event(action::SHARE_REVOKED, actor, &share, level);
        let revision = tx
            .record_access_change(
                account_id,
                &[AccessChange::Unshared {
                    r: share.resource,
                    s: share.subject,
                }],
                now,
            )
            .await?;
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn current_revision(&self, account_id: Uuid) -> DomainResult<i64> {
        Ok(self
            .cache
            .fresh(account_id, None)
            .await?
            .ok_or_else(no_account)?
            .read()
            .data()
            .revision)
    }

    /// The shares placed on one resource, oldest first.
    pub async fn resource_shares(
        &self,
        actor: &Actor,
        account_id: Uuid,
        check: &ResourceCheck,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<Share>> {
        let scope = match actor {
            Actor::Service(service) if service.scopes.contains(&Scope::AccessShare) => {
                Scope::AccessShare
            }
            _ => Scope::AccessCheck,
        };
        self.authorize_manage(actor, account_id, check, scope, true)
            .await?;
        let resource = &check.resource;
        let query = ListQuery::new(
            "ListResourceShares",
            &[
                &account_id.to_string(),
                resource.kind.as_str(),
                &resource.id,
            ],
        );
        let after = self.pages.decode(&query, page_token)?;
        let rows = self
            .store
            .resource_shares(account_id, resource, after.as_ref(), page_size + 1)
            .await?;
        Ok(self.pages.page(&query, rows, page_size, share_position))
    }

    /// The resources shared with the user, one entry per resource.
    #[allow(clippy::too_many_arguments)]
    pub async fn shared_with(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        kind: Option<ResourceType>,
        page_size: u64,
        page_token: &str,
        _at_least: Option<i64>,
    ) -> DomainResult<Page<SharedResource>> {
        self.authorize_about(actor, account_id, &[user_id])?;
        if !self.store.is_member(account_id, user_id).await? {
            return Err(user_not_found());
        }
        let kind_filter = kind.map_or("", ResourceType::as_str);
        let query = ListQuery::new(
            "ListSharedWithUser",
            &[&account_id.to_string(), &user_id.to_string(), kind_filter],
        );
        let after = self.pages.decode(&query, page_token)?;
        // The database is the freshest source: any token is satisfied.
        let rows = self
            .store
            .shared_with(account_id, user_id, kind, after.as_ref(), page_size + 1)
            .await?;
        let resources = rows
            .into_iter()
            .map(|(resource, shares)| SharedResource {
                level: shares.iter().map(|s| s.level).max().unwrap_or(Level::None),
                resource,
                shares,
            })
            .collect();
        Ok(self
            .pages
            .page(&query, resources, page_size, |r: &SharedResource| {
                resource_position(&r.resource)
            }))
    }

    /// Fails unless the caller may ask about every one of `user_ids`.
    fn authorize_about(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<()> {
        if let Actor::Person(person) = actor
            && person.account_id == account_id
            && user_ids.iter().all(|id| *id == person.user_id)
        {
            return Ok(());
        }
        actor.authorize(account_id, CHECK)
    }

    /// Decides the checks from one snapshot at least at `at_least`; returns the decisions in
    /// order and the revision they were computed from.
    pub async fn check(
        &self,
        actor: &Actor,
        account_id: Uuid,
        items: &[CheckItem],
        at_least: Option<i64>,
    ) -> DomainResult<(Vec<Decision>, i64)> {
        let users: Vec<Uuid> = items.iter().map(|item| item.user_id).collect();
        self.authorize_about(actor, account_id, &users)?;
        let Some(fresh) = self.cache.fresh(account_id, at_least).await? else {
            // An account that does not exist has no members: nothing is allowed.
            return Ok((items.iter().map(none_for).collect(), 0));
        };
        let snapshot = fresh.read();
        let data = snapshot.data();
        Ok((
            items.iter().map(|item| rules::decide(data, item)).collect(),
            data.revision,
        ))
    }

    /// The user's level on the resource and every grant behind it, read from the database.
    pub async fn explain(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        check: &ResourceCheck,
    ) -> DomainResult<Explanation> {
        self.authorize_about(actor, account_id, &[user_id])?;
        let mut resources = vec![check.resource.clone()];
        resources.extend(
            check
                .placement
                .ancestors
                .iter()
                .filter(|id| *id != rules::ROOT_FOLDER_ID)
                .map(|id| ResourceRef {
                    kind: ResourceType::Folder,
                    id: id.clone(),
                }),
        );
        resources.extend(check.placement.collections.iter().map(|id| ResourceRef {
            kind: ResourceType::Collection,
            id: id.clone(),
        }));
        let evaluated_at = self.clock.now();
        let Some(rows) = self
            .store
            .explain_rows(account_id, user_id, &resources)
            .await?
        else {
            return Ok(Explanation {
                level: Level::None,
                grants: Vec::new(),
                member: None,
                revision: 0,
                evaluated_at,
            });
        };
        let view = RowsView::new(user_id, &rows);
        let (level, grants) = rules::explain(&view, user_id, check);
        Ok(Explanation {
            level,
            grants,
            member: rows.member,
            revision: rows.revision,
            evaluated_at,
        })
    }
}

fn none_for(item: &CheckItem) -> Decision {
    match item.target {
        rules::Target::Permission(_) => Decision {
            allowed: false,
            level: None,
        },
        rules::Target::Resource { .. } => Decision {
            allowed: false,
            level: Some(Level::None),
        },
    }
}

/// Who a share names as its author: a person id, or `service:<name>`.
fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Person(person) => person.user_id.to_string(),
        other => other.label(),
    }
}

/// The rows an explanation read, as an `AccessView` of one user.
struct RowsView<'a> {
    user_id: Uuid,
    rows: &'a ExplainRows,
    by_resource: HashMap<(ResourceType, &'a str), Vec<&'a Share>>,
}

impl<'a> RowsView<'a> {
    fn new(user_id: Uuid, rows: &'a ExplainRows) -> Self {
        let mut by_resource: HashMap<_, Vec<_>> = HashMap::new();
        for share in &rows.shares {
            by_resource
                .entry((share.resource.kind, share.resource.id.as_str()))
                .or_default()
                .push(share);
        }
        Self {
            user_id,
            rows,
            by_resource,
        }
    }
}

impl AccessView for RowsView<'_> {
    type Reach<'b>
        = ()
    where
        Self: 'b;
    type Share = Share;

    fn member(&self, user_id: Uuid) -> Option<(Role, MembershipStatus)> {
        (user_id == self.user_id)
            .then_some(self.rows.member)
            .flatten()
    }

    fn reach(&self, _: Uuid) {}

    fn shares_reaching(
        &self,
        _: &(),
        kind: ResourceType,
        id: &str,
        f: OnShare<'_, Share>,
    ) -> ControlFlow<()> {
        for share in self.by_resource.get(&(kind, id)).into_iter().flatten() {
            let via = match share.subject {
                Subject::User(id) if id == self.user_id => Via::User,
                Subject::Group(id) if self.rows.groups.contains(&id) => Via::Group,
                _ => continue,
            };
            f(via, share.level, share)?;
        }
        ControlFlow::Continue(())
    }
}
