//! UserService rules: members of an account, their roles, invitations and profiles.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::auth::secret_token;
use crate::clock::SharedClock;
use crate::store::Store;
use crate::store::accounts::status;
use crate::store::idempotency::Idempotency;
use crate::store::pagination;
use crate::store::users::{Member, MemberChange, MemberFilter, NewLink, NewMember};

use super::accounts::fingerprint;
use super::actor::{Actor, MANAGE_USERS, READ_USERS};
use super::error::{DomainError, DomainResult};
use super::roles::Role;

/// Stable `ErrorInfo.reason` values of user management.
pub mod reason {
    pub use crate::domain::error::reason::{GROUP_NOT_FOUND, USER_NOT_FOUND};
    pub const USER_ALREADY_MEMBER: &str = "USER_ALREADY_MEMBER";
    pub const USER_LIMIT_REACHED: &str = "USER_LIMIT_REACHED";
    pub const LAST_ADMINISTRATOR: &str = "LAST_ADMINISTRATOR";
    pub const USER_NOT_INVITED: &str = "USER_NOT_INVITED";
    pub const INVITATION_RESEND_TOO_SOON: &str = "INVITATION_RESEND_TOO_SOON";
    pub const PERMISSION_MISSING: &str = super::super::error::reason::PERMISSION_MISSING;
}

/// Invitation links work for 7 days.
pub const INVITATION_TTL: Duration = Duration::days(7);
/// At most one invitation email per user per minute.
pub const RESEND_INTERVAL: Duration = Duration::minutes(1);

/// A user's etag: the versions of the membership and of the person (whose name is shared by
/// all their accounts), so a change of either is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEtag {
    pub membership: i64,
    pub person: i64,
}

impl UserEtag {
    pub fn parse(value: &str) -> Result<Option<UserEtag>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        let bad = || "is not an etag returned by this service".to_owned();
        let (membership, person) = value.split_once('.').ok_or_else(bad)?;
        Ok(Some(UserEtag {
            membership: membership.parse().map_err(|_| bad())?,
            person: person.parse().map_err(|_| bad())?,
        }))
    }
}

impl std::fmt::Display for UserEtag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.membership, self.person)
    }
}

/// The administrators of an account by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminCounts {
    pub active: usize,
    pub invited: usize,
}

/// Whether an administrator with status `target_status` may stop being one (deleted, demoted,
/// disabled). The account must keep an active administrator; while it has none yet (a new account
/// whose first administrator has not accepted), it must keep an invited one.
pub fn check_admin_remains(target_status: &str, counts: AdminCounts) -> DomainResult<()> {
    let (active_left, invited_left) = match target_status {
        status::ACTIVE => (counts.active.saturating_sub(1), counts.invited),
        status::INVITED => (counts.active, counts.invited.saturating_sub(1)),
        _ => return Ok(()),
    };
    let removes_last_active = target_status == status::ACTIVE && active_left == 0;
    let removes_last_invited = counts.active == 0 && invited_left == 0;
    if removes_last_active || removes_last_invited {
        return Err(DomainError::FailedPrecondition {
            reason: reason::LAST_ADMINISTRATOR,
            message: "the account must keep an administrator: make another user an Account Administrator first".to_owned(),
        });
    }
    Ok(())
}

pub fn user_limit_reached(max_users: i32) -> DomainError {
    DomainError::ResourceExhausted {
        reason: reason::USER_LIMIT_REACHED,
        message: format!(
            "the account has reached its plan's limit of {max_users} users (invited users count); contact support to raise it"
        ),
        retry_after: None,
    }
    .with_metadata("max_users", max_users.to_string())
}

pub fn user_not_found() -> DomainError {
    DomainError::not_found(reason::USER_NOT_FOUND, "user")
}

pub fn group_not_found() -> DomainError {
    DomainError::not_found(reason::GROUP_NOT_FOUND, "group")
}

pub fn already_member() -> DomainError {
    DomainError::AlreadyExists {
        reason: reason::USER_ALREADY_MEMBER,
        message: "a user with this email is already in the account".to_owned(),
    }
}

pub fn not_invited() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::USER_NOT_INVITED,
        message: "the user has already accepted (or is disabled); there is no invitation to resend"
            .to_owned(),
    }
}

/// Refuses a resend within a minute of the previous invitation.
pub fn check_resend_interval(previous: DateTime<Utc>, now: DateTime<Utc>) -> DomainResult<()> {
    let next = previous + RESEND_INTERVAL;
    if now < next {
        return Err(DomainError::ResourceExhausted {
            reason: reason::INVITATION_RESEND_TOO_SOON,
            message: "an invitation was sent less than a minute ago; retry later".to_owned(),
            retry_after: (next - now).to_std().ok(),
        });
    }
    Ok(())
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

/// `CreateUser` input, validated.
#[derive(Debug, Clone)]
pub struct CreateUser {
    pub email: String,
    pub email_key: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub request_id: Option<String>,
}

#[derive(Clone)]
pub struct Users {
    store: Store,
    clock: SharedClock,
    public_url: String,
}

impl Users {
    pub fn new(store: Store, clock: SharedClock, public_url: String) -> Self {
        Self {
            store,
            clock,
            public_url,
        }
    }

    fn new_link(&self) -> NewLink {
        invitation_link(&self.public_url)
    }

    /// Who invites, as shown in the email.
    async fn inviter(
        &self,
        actor: &Actor,
        account_id: Uuid,
    ) -> DomainResult<(Option<Uuid>, String)> {
        Ok(match actor {
            Actor::Person(person) => {
                let name = match self
                    .store
                    .find_member_name(account_id, person.user_id)
                    .await?
                {
                    Some(name) => name,
                    None => "An administrator".to_owned(),
                };
                (Some(person.user_id), name)
            }
            _ => (None, "The account's administrators".to_owned()),
        })
    }

    pub async fn create(
        &self,
        actor: &Actor,
        account_id: Uuid,
        input: CreateUser,
    ) -> DomainResult<Member> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let (invited_by, inviter_name) = self.inviter(actor, account_id).await?;
        let idempotency = input.request_id.as_ref().map(|request_id| Idempotency {
            scope: format!("CreateUser/{account_id}/{}", actor.label()),
            request_id: request_id.clone(),
            fingerprint: fingerprint(&[
                &input.email_key,
                input.display_name.as_deref().unwrap_or_default(),
                input.role.as_str(),
            ]),
        });
        let display_name = input.display_name.unwrap_or_else(|| {
            // A new person without a name is called by the local part of the address.
            input.email.split('@').next().unwrap_or_default().to_owned()
        });
        self.store
            .create_member(
                NewMember {
                    account_id,
                    email: input.email,
                    email_key: input.email_key,
                    display_name,
                    role: input.role,
                    invited_by,
                    inviter_name,
                    idempotency,
                },
                self.new_link(),
                self.clock.now(),
            )
            .await
    }

    pub async fn get(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Member> {
        actor.authorize(account_id, READ_USERS)?;
        self.store.require_member(account_id, user_id).await
    }

    /// One page of the account's users in email order; the token is tied to the filter.
    pub async fn list(
        &self,
        actor: &Actor,
        account_id: Uuid,
        filter: MemberFilter,
        page_size: i32,
        page_token: &str,
    ) -> DomainResult<(Vec<Member>, String)> {
        actor.authorize(account_id, READ_USERS)?;
        let size = pagination::page_size(page_size)?;
        let role = filter.role.map(Role::as_str).unwrap_or_default();
        let group = filter.group_id.map(|g| g.to_string()).unwrap_or_default();
        let fp = pagination::filter_fingerprint(&[
            "ListUsers",
            &account_id.to_string(),
            role,
            filter.status.unwrap_or_default(),
            filter.email_prefix.as_deref().unwrap_or_default(),
            &group,
        ]);
        let after = match pagination::decode_token(page_token, fp)? {
            None => None,
            Some(key) => Some(parse_cursor(&key).ok_or_else(|| {
                DomainError::invalid_with(
                    super::error::reason::INVALID_PAGE_TOKEN,
                    "page_token",
                    "is not a token of this list",
                )
            })?),
        };
        let rows = self
            .store
            .list_members(account_id, &filter, after, size + 1)
            .await?;
        Ok(pagination::finish_page(rows, size, fp, |m| {
            format!("{} {}", m.membership.email_key, m.membership.user_id)
        }))
    }

    pub async fn update(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        change: MemberChange,
        etag: Option<UserEtag>,
    ) -> DomainResult<(Member, Option<i64>)> {
        actor.authorize(account_id, MANAGE_USERS)?;
        self.store
            .update_member(account_id, user_id, change, etag, self.clock.now())
            .await
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        etag: Option<UserEtag>,
        allow_missing: bool,
    ) -> DomainResult<Option<i64>> {
        actor.authorize(account_id, MANAGE_USERS)?;
        self.store
            .delete_member(account_id, user_id, etag, allow_missing, self.clock.now())
            .await
    }

    pub async fn resend_invitation(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
    ) -> DomainResult<Member> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let inviter = self.inviter(actor, account_id).await?;
        self.store
            .resend_invitation(
                account_id,
                user_id,
                inviter,
                self.new_link(),
                self.clock.now(),
            )
            .await
    }

    pub async fn set_disabled(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        disable: bool,
        etag: Option<UserEtag>,
    ) -> DomainResult<(Member, i64)> {
        actor.authorize(account_id, MANAGE_USERS)?;
        self.store
            .set_member_disabled(account_id, user_id, disable, etag, self.clock.now())
            .await
    }

    /// The caller's own user in the account of their token.
    pub async fn my_profile(&self, actor: &Actor) -> DomainResult<Member> {
        let person = profile_owner(actor)?;
        self.store.require_member(person.0, person.1).await
    }

    pub async fn update_my_profile(
        &self,
        actor: &Actor,
        display_name: Option<String>,
        etag: Option<UserEtag>,
    ) -> DomainResult<Member> {
        let (account_id, user_id) = profile_owner(actor)?;
        match display_name {
            Some(name) => {
                self.store
                    .rename_person(account_id, user_id, &name, etag, self.clock.now())
                    .await
            }
            None => self.store.require_member(account_id, user_id).await,
        }
    }
}

fn profile_owner(actor: &Actor) -> DomainResult<(Uuid, Uuid)> {
    match actor {
        Actor::Person(person) => Ok((person.account_id, person.user_id)),
        Actor::Anonymous => Err(DomainError::unauthenticated(
            super::error::reason::CREDENTIALS_MISSING,
            "credentials are required",
        )),
        Actor::Service(_) => Err(DomainError::permission_denied(
            reason::PERMISSION_MISSING,
            "a profile belongs to a person: use a person's access token",
        )),
    }
}

fn parse_cursor(key: &str) -> Option<(String, Uuid)> {
    let (email_key, user_id) = key.rsplit_once(' ')?;
    Some((email_key.to_owned(), Uuid::parse_str(user_id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn counts(active: usize, invited: usize) -> AdminCounts {
        AdminCounts { active, invited }
    }

    #[test]
    fn the_last_active_administrator_stays() {
        assert!(check_admin_remains(status::ACTIVE, counts(1, 0)).is_err());
        assert!(check_admin_remains(status::ACTIVE, counts(1, 3)).is_err());
        assert!(check_admin_remains(status::ACTIVE, counts(2, 0)).is_ok());
        // Invited administrators may go while an active one remains.
        assert!(check_admin_remains(status::INVITED, counts(1, 1)).is_ok());
        // A new account keeps its only (invited) administrator.
        assert!(check_admin_remains(status::INVITED, counts(0, 1)).is_err());
        assert!(check_admin_remains(status::INVITED, counts(0, 2)).is_ok());
        assert!(check_admin_remains(status::DISABLED, counts(0, 0)).is_ok());
    }

    #[test]
    fn etags_round_trip() {
        let etag = UserEtag {
            membership: 3,
            person: 7,
        };
        assert_eq!(UserEtag::parse(&etag.to_string()).unwrap(), Some(etag));
        assert_eq!(UserEtag::parse("").unwrap(), None);
        assert!(UserEtag::parse("3").is_err());
        assert!(UserEtag::parse("a.b").is_err());
    }

    #[test]
    fn resends_wait_a_minute() {
        let then = Utc::now();
        let err = check_resend_interval(then, then + Duration::seconds(20)).unwrap_err();
        match err {
            DomainError::ResourceExhausted { retry_after, .. } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(40)))
            }
            other => panic!("{other:?}"),
        }
        assert!(check_resend_interval(then, then + Duration::seconds(60)).is_ok());
    }

    #[test]
    fn cursors_split_at_the_last_space() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_cursor(&format!("a@b.c {id}")),
            Some(("a@b.c".to_owned(), id))
        );
        assert_eq!(parse_cursor("nospace"), None);
    }
}
