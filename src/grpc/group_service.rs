//! `identity.v1.GroupService`.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{App, groups::Groups};
use crate::domain::consistency::ConsistencyTokens;
use crate::domain::error::{DomainError, Violations};
use crate::domain::groups::{self, CreateGroup, GroupChange, MAX_MEMBERS_PER_CALL};
use crate::domain::validate;
use crate::proto::{self, group_service_server::GroupService};

use super::authn::actor;
use super::convert;

pub struct GroupApi {
    tokens: ConsistencyTokens,
    groups: Groups,
}

impl GroupApi {
    pub fn new(app: &App) -> Self {
        Self {
            tokens: app.consistency.clone(),
            groups: app.groups.clone(),
        }
    }
}

use convert::group;

impl TryFrom<proto::CreateGroupRequest> for CreateGroup {
    type Error = DomainError;

    fn try_from(req: proto::CreateGroupRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let name = v.check("name", groups::name(&req.name));
        let description = v.check("description", groups::description(&req.description));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        let (account_id, name, description, request_id) =
            v.values((account_id, name, description, request_id))?;
        Ok(CreateGroup {
            account_id,
            name,
            description,
            request_id,
        })
    }
}

/// The 1 to 1000 person ids of a membership change, in request order. Each malformed id is a
/// violation `user_ids[i]`; duplicates are kept here and ignored by the store.
fn user_ids(v: &mut Violations, ids: &[String]) -> Vec<Uuid> {
    if ids.is_empty() {
        v.add("user_ids", "is required: 1 to 1000 user ids");
        return Vec::new();
    }
    if ids.len() > MAX_MEMBERS_PER_CALL {
        v.add(
            "user_ids",
            format!(
                "has {} ids; at most {MAX_MEMBERS_PER_CALL} per call",
                ids.len()
            ),
        );
        return Vec::new();
    }
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| v.check(&format!("user_ids[{i}]"), validate::id(id)))
        .collect()
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    async fn create_group(
        &self,
        request: Request<proto::CreateGroupRequest>,
    ) -> Result<Response<proto::CreateGroupResponse>, Status> {
        let actor = actor(&request);
        let input = CreateGroup::try_from(request.into_inner())?;
        let created = self.groups.create(&actor, input).await?;
        Ok(Response::new(proto::CreateGroupResponse {
            group: Some(group(&created)),
        }))
    }

    async fn get_group(
        &self,
        request: Request<proto::GetGroupRequest>,
    ) -> Result<Response<proto::GetGroupResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let group_id = v.check("group_id", validate::id(&req.group_id));
        let (account_id, group_id) = v.values((account_id, group_id))?;
        let found = self.groups.get(&actor, account_id, group_id).await?;
        Ok(Response::new(proto::GetGroupResponse {
            group: Some(group(&found)),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let size = convert::page_size(&mut v, req.page_size);
        let (account_id, size) = v.values((account_id, size))?;
        let page = self
            .groups
            .list(&actor, account_id, &req.name_prefix, size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListGroupsResponse {
            groups: page.items.iter().map(group).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_group(
        &self,
        request: Request<proto::UpdateGroupRequest>,
    ) -> Result<Response<proto::UpdateGroupResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let paths = convert::mask_paths(&mut v, req.update_mask.as_ref(), &["name", "description"]);
        let etag = v.check("etag", validate::etag(&req.etag));
        let group_id = match &req.group {
            Some(input) => v.check("group.id", validate::id(&input.id)),
            None => {
                v.add("group", "is required");
                None
            }
        };
        let input = req.group.unwrap_or_default();
        let masked = |path: &str| paths.iter().any(|p| p == path);
        let change = GroupChange {
            name: if masked("name") {
                v.check("group.name", groups::name(&input.name))
            } else {
                None
            },
            description: if masked("description") {
                v.check("group.description", groups::description(&input.description))
            } else {
                None
            },
        };
        let (account_id, group_id, etag) = v.values((account_id, group_id, etag))?;
        let updated = self
            .groups
            .update(&actor, account_id, group_id, change, etag)
            .await?;
        Ok(Response::new(proto::UpdateGroupResponse {
            group: Some(group(&updated)),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<proto::DeleteGroupRequest>,
    ) -> Result<Response<proto::DeleteGroupResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let group_id = v.check("group_id", validate::id(&req.group_id));
        let etag = v.check("etag", validate::etag(&req.etag));
        let (account_id, group_id, etag) = v.values((account_id, group_id, etag))?;
        let revision = self
            .groups
            .delete(&actor, account_id, group_id, etag, req.allow_missing)
            .await?;
        Ok(Response::new(proto::DeleteGroupResponse {
            consistency_token: self.tokens.encode(account_id, revision),
        }))
    }

    async fn add_group_members(
        &self,
        request: Request<proto::AddGroupMembersRequest>,
    ) -> Result<Response<proto::AddGroupMembersResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let (account_id, group_id, user_ids) =
            membership_change(&req.account_id, &req.group_id, &req.user_ids)?;
        let changed = self
            .groups
            .add_members(&actor, account_id, group_id, &user_ids)
            .await?;
        Ok(Response::new(proto::AddGroupMembersResponse {
            group: Some(group(&changed.group)),
            consistency_token: self.tokens.encode(account_id, changed.revision),
        }))
    }

    async fn remove_group_members(
        &self,
        request: Request<proto::RemoveGroupMembersRequest>,
    ) -> Result<Response<proto::RemoveGroupMembersResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let (account_id, group_id, user_ids) =
            membership_change(&req.account_id, &req.group_id, &req.user_ids)?;
        let changed = self
            .groups
            .remove_members(&actor, account_id, group_id, &user_ids)
            .await?;
        Ok(Response::new(proto::RemoveGroupMembersResponse {
            group: Some(group(&changed.group)),
            consistency_token: self.tokens.encode(account_id, changed.revision),
        }))
    }

    async fn list_group_members(
        &self,
        request: Request<proto::ListGroupMembersRequest>,
    ) -> Result<Response<proto::ListGroupMembersResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let group_id = v.check("group_id", validate::id(&req.group_id));
        let size = convert::page_size(&mut v, req.page_size);
        let (account_id, group_id, size) = v.values((account_id, group_id, size))?;
        let page = self
            .groups
            .list_members(&actor, account_id, group_id, size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListGroupMembersResponse {
            users: page.items.iter().map(convert::member).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_user_groups(
        &self,
        request: Request<proto::ListUserGroupsRequest>,
    ) -> Result<Response<proto::ListUserGroupsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let user_id = v.check("user_id", validate::id(&req.user_id));
        let size = convert::page_size(&mut v, req.page_size);
        let (account_id, user_id, size) = v.values((account_id, user_id, size))?;
        let page = self
            .groups
            .list_user_groups(&actor, account_id, user_id, size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListUserGroupsResponse {
            groups: page.items.iter().map(group).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

/// The ids of Add/RemoveGroupMembers, every bad one reported at once.
fn membership_change(
    account_id: &str,
    group_id: &str,
    ids: &[String],
) -> Result<(Uuid, Uuid, Vec<Uuid>), Status> {
    let mut v = Violations::new();
    let account_id = v.check("account_id", validate::id(account_id));
    let group_id = v.check("group_id", validate::id(group_id));
    let user_ids = user_ids(&mut v, ids);
    let (account_id, group_id) = v.values((account_id, group_id))?;
    Ok((account_id, group_id, user_ids))
}
