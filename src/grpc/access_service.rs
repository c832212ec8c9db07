//! `identity.v1.AccessService`: sharing, the DAM's access checks, and the caller's permissions.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::App;
use crate::app::access::{Access, Explanation, ShareCommand, SharedResource};
use crate::domain::access::media_level;
use crate::domain::consistency::ConsistencyTokens;
use crate::domain::error::{DomainError, Violations};
use crate::domain::roles::{Level, MediaAccess, Permission};
use crate::domain::sharing::{
    self as rules, CheckItem, Decision, Grant, GrantReason, MAX_BATCH_ITEMS, MAX_PLACEMENT_IDS,
    Placement, ResourceCheck, ResourceRef, ResourceType, Share, Subject, Target,
};
use crate::domain::validate;
use crate::proto::{self, access_service_server::AccessService};

use super::authn::actor;
use super::convert;

pub struct AccessApi {
    access: Access,
    tokens: ConsistencyTokens,
}

impl AccessApi {
    pub fn new(app: &App) -> Self {
        Self {
            access: app.access.clone(),
            tokens: app.consistency.clone(),
        }
    }

    /// The revision a request's consistency token names (`None` without one).
    fn at_least(&self, account_id: Uuid, token: &str) -> Result<Option<i64>, DomainError> {
        self.tokens.decode(account_id, token, "consistency_token")
    }
}

pub fn level_to_proto(level: Level) -> proto::AccessLevel {
    match level {
        Level::None => proto::AccessLevel::None,
        Level::View => proto::AccessLevel::View,
        Level::Contribute => proto::AccessLevel::Contribute,
        Level::Manage => proto::AccessLevel::Manage,
    }
}

/// A share's level: VIEW, CONTRIBUTE or MANAGE.
fn share_level(value: i32) -> Result<Level, String> {
    match proto::AccessLevel::try_from(value) {
        Ok(proto::AccessLevel::View) => Ok(Level::View),
        Ok(proto::AccessLevel::Contribute) => Ok(Level::Contribute),
        Ok(proto::AccessLevel::Manage) => Ok(Level::Manage),
        _ => Err("must be VIEW, CONTRIBUTE or MANAGE".to_owned()),
    }
}

/// A check's required level: UNSPECIFIED means VIEW; NONE is refused.
fn required_level(value: i32) -> Result<Level, String> {
    match proto::AccessLevel::try_from(value) {
        Ok(proto::AccessLevel::Unspecified) => Ok(Level::View),
        _ => share_level(value),
    }
}

fn resource_type_from_proto(value: i32) -> Result<ResourceType, String> {
    match proto::ResourceType::try_from(value) {
        Ok(proto::ResourceType::File) => Ok(ResourceType::File),
        Ok(proto::ResourceType::Folder) => Ok(ResourceType::Folder),
        Ok(proto::ResourceType::Collection) => Ok(ResourceType::Collection),
        _ => Err("must be FILE, FOLDER or COLLECTION".to_owned()),
    }
}

fn resource_type_to_proto(kind: ResourceType) -> proto::ResourceType {
    match kind {
        ResourceType::File => proto::ResourceType::File,
        ResourceType::Folder => proto::ResourceType::Folder,
        ResourceType::Collection => proto::ResourceType::Collection,
    }
}

/// A field path, built only when a field is refused: `prefix` then the rest.
fn path<'a>(prefix: &'a dyn Fn() -> String, rest: &'a str) -> impl FnOnce() -> String + 'a {
    move || format!("{}{rest}", prefix())
}

/// A DAM id, moved out of the request once checked.
fn owned_id(id: String) -> Result<String, String> {
    rules::check_resource_id(&id).map(|()| id)
}

/// A required resource at `{prefix}{name}`.
fn resource(
    v: &mut Violations,
    prefix: &dyn Fn() -> String,
    name: &str,
    value: Option<proto::ResourceRef>,
) -> Option<ResourceRef> {
    let Some(value) = value else {
        v.add(format!("{}{name}", prefix()), "is required");
        return None;
    };
    let kind = v.check_at(
        || format!("{}{name}.type", prefix()),
        resource_type_from_proto(value.r#type),
    );
    let id = v.check_at(|| format!("{}{name}.id", prefix()), owned_id(value.id));
    Some(ResourceRef {
        kind: kind?,
        id: id?,
    })
}

/// Ancestor folders, collections and owner, their fields under `prefix`.
fn placement(
    v: &mut Violations,
    prefix: &dyn Fn() -> String,
    ancestors: Vec<String>,
    collections: Vec<String>,
    owner: &str,
) -> Option<Placement> {
    let mut ids = |name: &str, list: Vec<String>| -> Option<Vec<String>> {
        if list.len() > MAX_PLACEMENT_IDS {
            v.add(
                format!("{}{name}", prefix()),
                format!("has {} ids; at most {MAX_PLACEMENT_IDS}", list.len()),
            );
            return None;
        }
        let mut ok = true;
        let mut checked = Vec::with_capacity(list.len());
        for (i, id) in list.into_iter().enumerate() {
            match v.check_at(|| format!("{}{name}[{i}]", prefix()), owned_id(id)) {
                Some(id) => checked.push(id),
                None => ok = false,
            }
        }
        ok.then_some(checked)
    };
    let ancestors = ids("ancestor_folder_ids", ancestors);
    let collections = ids("collection_ids", collections);
    let owner = if owner.is_empty() {
        Some(None)
    } else {
        v.check_at(path(prefix, "owner_user_id"), validate::id(owner))
            .map(Some)
    };
    Some(Placement {
        ancestors: ancestors?,
        collections: collections?,
        owner: owner?,
    })
}

fn optional_placement(
    v: &mut Violations,
    value: Option<proto::ResourcePlacement>,
) -> Option<Placement> {
    match value {
        None => Some(Placement::default()),
        Some(p) => placement(
            v,
            &|| "placement.".to_owned(),
            p.ancestor_folder_ids,
            p.collection_ids,
            &p.owner_user_id,
        ),
    }
}

/// A `ResourceCheck` whose fields are under `prefix` (e.g. `resource.`).
fn resource_check(
    v: &mut Violations,
    prefix: &dyn Fn() -> String,
    value: proto::ResourceCheck,
) -> Option<ResourceCheck> {
    let resource = resource(v, prefix, "resource", value.resource);
    let placement = placement(
        v,
        prefix,
        value.ancestor_folder_ids,
        value.collection_ids,
        &value.owner_user_id,
    );
    Some(ResourceCheck {
        resource: resource?,
        placement: placement?,
    })
}

/// What one check names, whichever message it came in.
#[derive(Debug, Clone)]
enum TargetIn {
    Resource(proto::ResourceCheck),
    Permission(String),
}

/// One check, its fields under `prefix` (empty, or `items[i].`).
fn check_item(
    v: &mut Violations,
    prefix: &dyn Fn() -> String,
    user_id: &str,
    target: Option<TargetIn>,
    level: i32,
) -> Option<CheckItem> {
    let user_id = v.check_at(path(prefix, "user_id"), validate::id(user_id));
    let target = match target {
        None => {
            v.add(
                format!("{}target", prefix()),
                "is required: a resource or a permission",
            );
            None
        }
        Some(TargetIn::Resource(check)) => {
            let nested = || format!("{}resource.", prefix());
            let check = resource_check(v, &nested, check);
            let required = v.check_at(path(prefix, "required_level"), required_level(level));
            match (check, required) {
                (Some(check), Some(required)) => Some(Target::Resource { check, required }),
                _ => None,
            }
        }
        Some(TargetIn::Permission(name)) => {
            let unleveled = level == proto::AccessLevel::Unspecified as i32;
            if !unleveled {
                v.add(
                    format!("{}required_level", prefix()),
                    "applies to resource checks only; leave it unset for a permission",
                );
            }
            v.check_at(
                path(prefix, "permission"),
                Permission::parse(&name).ok_or_else(|| {
                    format!("{name:?} is not a permission; see ListMyPermissions for the names")
                }),
            )
            .filter(|_| unleveled)
            .map(Target::Permission)
        }
    };
    Some(CheckItem {
        user_id: user_id?,
        target: target?,
    })
}

fn subject_from_proto(v: &mut Violations, value: Option<&proto::Subject>) -> Option<Subject> {
    match value.and_then(|s| s.kind.as_ref()) {
        Some(proto::subject::Kind::UserId(id)) => v
            .check("subject.user_id", validate::id(id))
            .map(Subject::User),
        Some(proto::subject::Kind::GroupId(id)) => v
            .check("subject.group_id", validate::id(id))
            .map(Subject::Group),
        None => {
            v.add("subject", "is required: a user_id or a group_id");
            None
        }
    }
}

fn subject_to_proto(subject: Subject) -> proto::Subject {
    proto::Subject {
        kind: Some(match subject {
            Subject::User(id) => proto::subject::Kind::UserId(id.to_string()),
            Subject::Group(id) => proto::subject::Kind::GroupId(id.to_string()),
        }),
    }
}

fn resource_to_proto(resource: &ResourceRef) -> proto::ResourceRef {
    proto::ResourceRef {
        r#type: resource_type_to_proto(resource.kind) as i32,
        id: resource.id.clone(),
    }
}

fn share_to_proto(share: &Share) -> proto::Share {
    proto::Share {
        id: share.id.to_string(),
        account_id: share.account_id.to_string(),
        resource: Some(resource_to_proto(&share.resource)),
        subject: Some(subject_to_proto(share.subject)),
        level: level_to_proto(share.level) as i32,
        created_by: share.created_by.clone(),
        create_time: Some(convert::timestamp(share.created_at)),
        update_time: Some(convert::timestamp(share.updated_at)),
    }
}

fn reason_to_proto(reason: GrantReason) -> proto::GrantReason {
    match reason {
        GrantReason::Role => proto::GrantReason::Role,
        GrantReason::Owner => proto::GrantReason::Owner,
        GrantReason::DirectShare => proto::GrantReason::DirectShare,
        GrantReason::GroupShare => proto::GrantReason::GroupShare,
        GrantReason::InheritedFromFolder => proto::GrantReason::InheritedFromFolder,
        GrantReason::Collection => proto::GrantReason::Collection,
    }
}

fn grant_to_proto(grant: &Grant<Share>) -> proto::Grant {
    proto::Grant {
        reason: reason_to_proto(grant.reason) as i32,
        level: level_to_proto(grant.level) as i32,
        share_id: grant
            .share
            .as_ref()
            .map(|s| s.id.to_string())
            .unwrap_or_default(),
        subject: grant.share.as_ref().map(|s| subject_to_proto(s.subject)),
        granted_on: grant.granted_on.as_ref().map(resource_to_proto),
        role: grant
            .role
            .map_or(proto::Role::Unspecified, convert::role_to_proto) as i32,
    }
}

fn decision_to_proto(decision: &Decision) -> proto::CheckAccessResult {
    proto::CheckAccessResult {
        allowed: decision.allowed,
        level: decision
            .level
            .map_or(proto::AccessLevel::Unspecified, level_to_proto) as i32,
    }
}

fn shared_resource_to_proto(shared: &SharedResource) -> proto::SharedResource {
    proto::SharedResource {
        resource: Some(resource_to_proto(&shared.resource)),
        level: level_to_proto(shared.level) as i32,
        shares: shared.shares.iter().map(share_to_proto).collect(),
    }
}

fn explanation_to_proto(explanation: &Explanation, token: String) -> proto::ExplainAccessResponse {
    let (role, status) = match explanation.member {
        Some((role, status)) => (
            convert::role_to_proto(role),
            convert::status_to_proto(status),
        ),
        None => (
            proto::Role::Unspecified,
            proto::MembershipStatus::Unspecified,
        ),
    };
    let active = status == proto::MembershipStatus::Active;
    proto::ExplainAccessResponse {
        level: level_to_proto(explanation.level) as i32,
        grants: explanation.grants.iter().map(grant_to_proto).collect(),
        role: if active {
            role as i32
        } else {
            proto::Role::Unspecified as i32
        },
        status: status as i32,
        consistency_token: token,
        evaluate_time: Some(convert::timestamp(explanation.evaluated_at)),
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn share_resource(
        &self,
        request: Request<proto::ShareResourceRequest>,
    ) -> Result<Response<proto::ShareResourceResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let resource = resource(&mut v, &String::new, "resource", req.resource);
        let subject = subject_from_proto(&mut v, req.subject.as_ref());
        let level = v.check("level", share_level(req.level));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        let placement = optional_placement(&mut v, req.placement);
        let (account_id, resource, subject, level, request_id, placement) =
            v.values((account_id, resource, subject, level, request_id, placement))?;
        let shared = self
            .access
            .share(
                &actor,
                ShareCommand {
                    account_id,
                    resource,
                    subject,
                    level,
                    request_id,
                    placement,
                },
            )
            .await?;
        Ok(Response::new(proto::ShareResourceResponse {
            share: Some(share_to_proto(&shared.share)),
            consistency_token: self.tokens.encode(account_id, shared.revision),
            created: shared.created,
        }))
    }

    async fn revoke_share(
        &self,
        request: Request<proto::RevokeShareRequest>,
    ) -> Result<Response<proto::RevokeShareResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let share_id = v.check("share_id", validate::id(&req.share_id));
        let placement = optional_placement(&mut v, req.placement);
        let (account_id, share_id, placement) = v.values((account_id, share_id, placement))?;
        let revision = self
            .access
            .revoke(&actor, account_id, share_id, req.allow_missing, placement)
            .await?;
        Ok(Response::new(proto::RevokeShareResponse {
            consistency_token: self.tokens.encode(account_id, revision),
        }))
    }

    async fn list_resource_shares(
        &self,
        request: Request<proto::ListResourceSharesRequest>,
    ) -> Result<Response<proto::ListResourceSharesResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let resource = resource(&mut v, &String::new, "resource", req.resource);
        let page_size = convert::page_size(&mut v, req.page_size);
        let placement = optional_placement(&mut v, req.placement);
        let (account_id, resource, page_size, placement) =
            v.values((account_id, resource, page_size, placement))?;
        let check = ResourceCheck {
            resource,
            placement,
        };
        let page = self
            .access
            .resource_shares(&actor, account_id, &check, page_size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListResourceSharesResponse {
            shares: page.items.iter().map(share_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_shared_with_user(
        &self,
        request: Request<proto::ListSharedWithUserRequest>,
    ) -> Result<Response<proto::ListSharedWithUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let user_id = v.check("user_id", validate::id(&req.user_id));
        let kind = v.check(
            "resource_type",
            match req.resource_type {
                0 => Ok(None),
                value => resource_type_from_proto(value).map(Some),
            },
        );
        let page_size = convert::page_size(&mut v, req.page_size);
        let (account_id, user_id, kind, page_size) =
            v.values((account_id, user_id, kind, page_size))?;
        let at_least = self.at_least(account_id, &req.consistency_token)?;
        let page = self
            .access
            .shared_with(
                &actor,
                account_id,
                user_id,
                kind,
                page_size,
                &req.page_token,
                at_least,
            )
            .await?;
        Ok(Response::new(proto::ListSharedWithUserResponse {
            resources: page.items.iter().map(shared_resource_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn check_access(
        &self,
        request: Request<proto::CheckAccessRequest>,
    ) -> Result<Response<proto::CheckAccessResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let target = req.target.map(|target| match target {
            proto::check_access_request::Target::Resource(check) => TargetIn::Resource(check),
            proto::check_access_request::Target::Permission(name) => TargetIn::Permission(name),
        });
        let item = check_item(
            &mut v,
            &String::new,
            &req.user_id,
            target,
            req.required_level,
        );
        let (account_id, item) = v.values((account_id, item))?;
        let at_least = self.at_least(account_id, &req.consistency_token)?;
        let (decisions, revision) = self
            .access
            .check(&actor, account_id, std::slice::from_ref(&item), at_least)
            .await?;
        let result = decisions.first().map(decision_to_proto).unwrap_or_default();
        Ok(Response::new(proto::CheckAccessResponse {
            allowed: result.allowed,
            level: result.level,
            consistency_token: self.tokens.encode(account_id, revision),
        }))
    }

    async fn batch_check_access(
        &self,
        request: Request<proto::BatchCheckAccessRequest>,
    ) -> Result<Response<proto::BatchCheckAccessResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let mut items = Vec::with_capacity(req.items.len());
        if req.items.is_empty() || req.items.len() > MAX_BATCH_ITEMS {
            v.add(
                "items",
                format!(
                    "has {} items; 1 to {MAX_BATCH_ITEMS} are allowed",
                    req.items.len()
                ),
            );
        } else {
            for (i, item) in req.items.into_iter().enumerate() {
                let target = item.target.map(|target| match target {
                    proto::check_access_item::Target::Resource(check) => TargetIn::Resource(check),
                    proto::check_access_item::Target::Permission(name) => {
                        TargetIn::Permission(name)
                    }
                });
                let prefix = || format!("items[{i}].");
                if let Some(item) =
                    check_item(&mut v, &prefix, &item.user_id, target, item.required_level)
                {
                    items.push(item);
                }
            }
        }
        let (account_id,) = v.values((account_id,))?;
        let at_least = self.at_least(account_id, &req.consistency_token)?;
        let (decisions, revision) = self
            .access
            .check(&actor, account_id, &items, at_least)
            .await?;
        Ok(Response::new(proto::BatchCheckAccessResponse {
            results: decisions.iter().map(decision_to_proto).collect(),
            consistency_token: self.tokens.encode(account_id, revision),
        }))
    }

    async fn explain_access(
        &self,
        request: Request<proto::ExplainAccessRequest>,
    ) -> Result<Response<proto::ExplainAccessResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let user_id = v.check("user_id", validate::id(&req.user_id));
        let check = match req.resource {
            Some(check) => resource_check(&mut v, &|| "resource.".to_owned(), check),
            None => {
                v.add("resource", "is required");
                None
            }
        };
        let (account_id, user_id, check) = v.values((account_id, user_id, check))?;
        // Explanations read the database, fresher than any token; a token is still checked.
        self.at_least(account_id, &req.consistency_token)?;
        let explanation = self
            .access
            .explain(&actor, account_id, user_id, &check)
            .await?;
        let token = self.tokens.encode(account_id, explanation.revision);
        Ok(Response::new(explanation_to_proto(&explanation, token)))
    }

    async fn list_my_permissions(
        &self,
        request: Request<proto::ListMyPermissionsRequest>,
    ) -> Result<Response<proto::ListMyPermissionsResponse>, Status> {
        let actor = actor(&request);
        let account_id = validate::id(&request.get_ref().account_id)
            .map_err(|e| DomainError::invalid("account_id", e))?;
        let mine = self.access.my_permissions(&actor, account_id).await?;
        Ok(Response::new(proto::ListMyPermissionsResponse {
            role: convert::role_to_proto(mine.role) as i32,
            permissions: mine
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            media_level: level_to_proto(media_level(mine.media)) as i32,
            media_access_by_share: mine.media == MediaAccess::PerShare,
        }))
    }
}

#[cfg(test)]
mod properties {
    //! One check of a batch, over generated items: no panic, and either a check or violations
    //! under the item's own prefix, never both, never neither.

    use proptest::prelude::*;

    use super::*;
    use crate::domain::properties::text;

    fn id() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            text(40),
        ]
    }

    fn resource_check() -> impl Strategy<Value = proto::ResourceCheck> {
        (
            -1..5i32,
            text(40),
            prop::collection::vec(text(20), 0..4),
            prop::collection::vec(text(20), 0..3),
            prop_oneof![Just(String::new()), id()],
        )
            .prop_map(
                |(kind, id, ancestors, collections, owner)| proto::ResourceCheck {
                    resource: Some(proto::ResourceRef { r#type: kind, id }),
                    ancestor_folder_ids: ancestors,
                    collection_ids: collections,
                    owner_user_id: owner,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
        ))]

        #[test]
        fn check_items(
            user_id in id(),
            target in prop_oneof![
                Just(None),
                resource_check().prop_map(|c| Some(TargetIn::Resource(c))),
                prop_oneof![Just("users.manage".to_owned()), text(20)]
                    .prop_map(|p| Some(TargetIn::Permission(p))),
            ],
            level in -1..6i32,
            index in 0..1000usize,
        ) {
            let mut v = Violations::new();
            let prefix = || format!("items[{index}].");
            let item = check_item(&mut v, &prefix, &user_id, target, level);
            prop_assert_eq!(item.is_some(), v.is_empty());
            if let Err(DomainError::InvalidArgument { violations, .. }) = v.finish() {
                for violation in violations {
                    prop_assert!(violation.field.starts_with(&prefix()), "{:?}", violation.field);
                }
            }
        }
    }
}
