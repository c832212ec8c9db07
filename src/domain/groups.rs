//! GroupService rules: named sets of an account's users, used as share subjects. Administrators
//! (and services with `users.manage`) change groups; every member of the account and services
//! with `users.read` read them. At most `max_groups` per account; names are unique ignoring case.

use std::collections::HashSet;

use uuid::Uuid;

use crate::clock::SharedClock;
use crate::store::Store;
use crate::store::groups::{After, GroupChange, GroupWithCount, MembersAdded, NewGroup};
use crate::store::idempotency::Idempotency;
use crate::store::pagination::{decode_token, filter_fingerprint, finish_page};

use super::accounts::fingerprint;
use super::actor::{Actor, MANAGE_USERS, READ_USERS};
use super::consistency_token;
use super::error::{DomainError, DomainResult, FieldViolation, reason};

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The most user ids one AddGroupMembers / RemoveGroupMembers call takes.
pub const MAX_MEMBERS_PER_CALL: usize = 1000;

/// A group name: trimmed, 1 to 64 ASCII letters, digits and spaces. Inner runs of spaces are
/// kept as given (the contract says so), so `A  B` and `A B` are two names. Returns the name and
/// its key (lower-cased), under which it is unique in the account.
pub fn name(value: &str) -> Result<(String, String), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
        return Err("may contain only ASCII letters, digits and spaces".to_owned());
    }
    if value.len() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok((value.to_owned(), value.to_ascii_lowercase()))
}

/// A description: free text of at most 1024 characters; line breaks and tabs are the only
/// control characters allowed.
pub fn description(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(
            "must not contain control characters other than line breaks and tabs".to_owned(),
        );
    }
    Ok(value.to_owned())
}

/// A page of a list and the token of the next one (empty on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// A page of a group's members, with what each `User` shows of the account.
#[derive(Debug, Clone)]
pub struct MemberPage {
    pub members: Page<(
        crate::store::entities::user::Model,
        crate::store::entities::membership::Model,
    )>,
    pub enforce_mfa: bool,
}

/// A group after a membership change, and the change's consistency token.
#[derive(Debug, Clone)]
pub struct MembersChanged {
    pub group: GroupWithCount,
    pub consistency_token: String,
}

#[derive(Clone)]
pub struct Groups {
    store: Store,
    clock: SharedClock,
}

/// Reading groups: any member of the account (to pick share subjects), services with
/// `users.read` or `users.manage`, operators. Membership is what the access token says: only
/// active members get tokens, and disabling one revokes its sessions.
fn authorize_read(actor: &Actor, account_id: Uuid) -> DomainResult<()> {
    actor.authorize(account_id, READ_USERS)
}

/// Changing groups: administrators (`users.manage`), services with `users.manage`, operators.
fn authorize_manage(actor: &Actor, account_id: Uuid) -> DomainResult<()> {
    actor.authorize(account_id, MANAGE_USERS)
}

/// The keyset position a page token carries: the row's id, then its sort key.
fn encode_after(id: Uuid, key: &str) -> String {
    format!("{id}{key}")
}

fn decode_after(token: &str, fingerprint: [u8; 8]) -> DomainResult<Option<After>> {
    let Some(position) = decode_token(token, fingerprint)? else {
        return Ok(None);
    };
    let id = position
        .get(..36)
        .and_then(|id| Uuid::parse_str(id).ok())
        .zip(position.get(36..));
    match id {
        Some((id, key)) => Ok(Some(After {
            key: key.to_owned(),
            id,
        })),
        None => Err(DomainError::invalid_with(
            reason::INVALID_PAGE_TOKEN,
            "page_token",
            "is not a token of this list; start again without it",
        )),
    }
}

fn group_page(rows: Vec<GroupWithCount>, size: u64, fingerprint: [u8; 8]) -> Page<GroupWithCount> {
    let (items, next_page_token) = finish_page(rows, size, fingerprint, |row| {
        encode_after(row.group.id, &row.group.name_key)
    });
    Page {
        items,
        next_page_token,
    }
}

impl Groups {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// Creates an empty group under the account's cap. `name` is a checked `(name, key)`.
    pub async fn create(
        &self,
        actor: &Actor,
        account_id: Uuid,
        name: (String, String),
        description: String,
        request_id: Option<String>,
    ) -> DomainResult<GroupWithCount> {
        authorize_manage(actor, account_id)?;
        let (name, name_key) = name;
        let idempotency = request_id.map(|request_id| Idempotency {
            scope: format!("CreateGroup/{}", actor.label()),
            request_id,
            fingerprint: fingerprint(&[&account_id.to_string(), &name, &description]),
        });
        self.store
            .create_group(
                NewGroup {
                    account_id,
                    name,
                    name_key,
                    description,
                    idempotency,
                },
                self.clock.now(),
            )
            .await
    }

    pub async fn get(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
    ) -> DomainResult<GroupWithCount> {
        authorize_read(actor, account_id)?;
        self.store
            .find_group(account_id, group_id)
            .await?
            .ok_or_else(|| DomainError::not_found(reason::GROUP_NOT_FOUND, "group"))
    }

    /// The account's groups by name (ignoring case), then id; `name_prefix` is case-insensitive.
    pub async fn list(
        &self,
        actor: &Actor,
        account_id: Uuid,
        name_prefix: &str,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<GroupWithCount>> {
        authorize_read(actor, account_id)?;
        let prefix_key = name_prefix.to_ascii_lowercase();
        let fingerprint = filter_fingerprint(&["ListGroups", &account_id.to_string(), &prefix_key]);
        let after = decode_after(page_token, fingerprint)?;
        // No name holds other characters: such a prefix matches nothing.
        if !prefix_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ')
        {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: String::new(),
            });
        }
        let rows = self
            .store
            .list_groups(account_id, &prefix_key, after.as_ref(), page_size + 1)
            .await?;
        Ok(group_page(rows, page_size, fingerprint))
    }

    /// Renames a group and/or changes its description, if still at `etag` (when given).
    pub async fn update(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        change: GroupChange,
        etag: Option<i64>,
    ) -> DomainResult<GroupWithCount> {
        authorize_manage(actor, account_id)?;
        self.store
            .update_group(account_id, group_id, etag, change, self.clock.now())
            .await
    }

    /// Deletes a group with its memberships; returns the consistency token of the deletion.
    pub async fn delete(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        etag: Option<i64>,
        allow_missing: bool,
    ) -> DomainResult<String> {
        authorize_manage(actor, account_id)?;
        let revision = self
            .store
            .delete_group(account_id, group_id, etag, allow_missing)
            .await?;
        Ok(consistency_token(revision))
    }

    /// Adds users of the account to the group, all or nothing. `user_ids` are in request order:
    /// an id that is not a user of the account is reported at each of its positions.
    pub async fn add_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<MembersChanged> {
        authorize_manage(actor, account_id)?;
        match self
            .store
            .add_group_members(account_id, group_id, user_ids, self.clock.now())
            .await?
        {
            MembersAdded::Done { group, revision } => Ok(MembersChanged {
                group,
                consistency_token: consistency_token(revision),
            }),
            MembersAdded::NotInAccount(strangers) => Err(not_users(user_ids, &strangers)),
        }
    }

    /// Removes users from the group; ids that are not members are skipped.
    pub async fn remove_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        user_ids: &[Uuid],
    ) -> DomainResult<MembersChanged> {
        authorize_manage(actor, account_id)?;
        let (group, revision) = self
            .store
            .remove_group_members(account_id, group_id, user_ids, self.clock.now())
            .await?;
        Ok(MembersChanged {
            group,
            consistency_token: consistency_token(revision),
        })
    }

    /// A group's members by email (ignoring case), then id.
    pub async fn list_members(
        &self,
        actor: &Actor,
        account_id: Uuid,
        group_id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<MemberPage> {
        authorize_read(actor, account_id)?;
        let fingerprint = filter_fingerprint(&[
            "ListGroupMembers",
            &account_id.to_string(),
            &group_id.to_string(),
        ]);
        let after = decode_after(page_token, fingerprint)?;
        if self.store.find_group(account_id, group_id).await?.is_none() {
            return Err(DomainError::not_found(reason::GROUP_NOT_FOUND, "group"));
        }
        let rows = self
            .store
            .list_group_members(account_id, group_id, after.as_ref(), page_size + 1)
            .await?;
        let (items, next_page_token) =
            finish_page(rows.members, page_size, fingerprint, |(person, _)| {
                encode_after(person.id, &person.email_key)
            });
        Ok(MemberPage {
            members: Page {
                items,
                next_page_token,
            },
            enforce_mfa: rows.enforce_mfa,
        })
    }

    /// The groups a user of the account belongs to, by name (ignoring case), then id.
    pub async fn list_user_groups(
        &self,
        actor: &Actor,
        account_id: Uuid,
        user_id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<Page<GroupWithCount>> {
        authorize_read(actor, account_id)?;
        let fingerprint = filter_fingerprint(&[
            "ListUserGroups",
            &account_id.to_string(),
            &user_id.to_string(),
        ]);
        let after = decode_after(page_token, fingerprint)?;
        if self
            .store
            .find_membership(account_id, user_id)
            .await?
            .is_none()
        {
            return Err(DomainError::not_found(reason::USER_NOT_FOUND, "user"));
        }
        let rows = self
            .store
            .list_user_groups(account_id, user_id, after.as_ref(), page_size + 1)
            .await?;
        Ok(group_page(rows, page_size, fingerprint))
    }
}

/// `INVALID_ARGUMENT` with a violation `user_ids[i]` at each position of an id that is not a
/// user of the account.
fn not_users(user_ids: &[Uuid], strangers: &HashSet<Uuid>) -> DomainError {
    DomainError::InvalidArgument {
        reason: reason::INVALID_ARGUMENT,
        violations: user_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| strangers.contains(id))
            .map(|(i, _)| FieldViolation {
                field: format!("user_ids[{i}]"),
                description: "is not a user of this account".to_owned(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_ascii_and_keyed_ignoring_case() {
        assert_eq!(
            name("  Marketing  Team ").unwrap(),
            ("Marketing  Team".to_owned(), "marketing  team".to_owned())
        );
        assert_eq!(name(&"a".repeat(64)).unwrap().0.len(), 64);
        for bad in ["", "   ", "Sales-Team!", "Équipe", "tab\there", "a_b"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(name(&"a".repeat(65)).is_err());
        // Trimming happens before the length check.
        assert!(name(&format!("  {}  ", "a".repeat(64))).is_ok());
    }

    #[test]
    fn descriptions_are_free_text_up_to_1024_characters() {
        assert!(description("").is_ok());
        assert!(description("Line one\nline two, with ünïcode").is_ok());
        assert!(description(&"é".repeat(1024)).is_ok());
        assert!(description(&"é".repeat(1025)).is_err());
        assert!(description("bell\u{0007}").is_err());
    }

    #[test]
    fn page_positions_round_trip_and_reject_garbage() {
        let f = filter_fingerprint(&["ListGroups", "a", ""]);
        let id = Uuid::now_v7();
        let token = crate::store::pagination::encode_token(f, &encode_after(id, "sales team"));
        let after = decode_after(&token, f).unwrap().unwrap();
        assert_eq!((after.id, after.key.as_str()), (id, "sales team"));
        let forged = crate::store::pagination::encode_token(f, "not-a-uuid");
        assert!(matches!(
            decode_after(&forged, f),
            Err(DomainError::InvalidArgument {
                reason: reason::INVALID_PAGE_TOKEN,
                ..
            })
        ));
    }
}
