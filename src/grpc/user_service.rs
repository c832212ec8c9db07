//! `identity.v1.UserService`.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{App, users::Users};
use crate::domain::actor::Actor;
use crate::domain::consistency::ConsistencyTokens;
use crate::domain::error::{DomainError, Violations};
use crate::domain::users::{CreateUser, MemberChange, MemberFilter, UserEtag};
use crate::domain::validate;
use crate::proto::{self, user_service_server::UserService};

use super::authn::actor;
use super::convert;

pub struct UserApi {
    tokens: ConsistencyTokens,
    users: Users,
}

impl UserApi {
    pub fn new(app: &App) -> Self {
        Self {
            tokens: app.consistency.clone(),
            users: app.users.clone(),
        }
    }
}

/// `account_id` and `user_id`, both required UUIDs.
fn ids(v: &mut Violations, account_id: &str, user_id: &str) -> (Option<Uuid>, Option<Uuid>) {
    (
        v.check("account_id", validate::id(account_id)),
        v.check("user_id", validate::id(user_id)),
    )
}

impl TryFrom<proto::CreateUserRequest> for CreateUser {
    type Error = DomainError;

    fn try_from(req: proto::CreateUserRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let email = v.check("email", validate::email(&req.email));
        let display_name = if req.display_name.trim().is_empty() {
            Some(None)
        } else {
            v.check("display_name", validate::name(&req.display_name).map(Some))
        };
        let role = v.check("role", convert::role_from_proto(req.role));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        let (account_id, email, display_name, role, request_id) =
            v.values((account_id, email, display_name, role, request_id))?;
        Ok(CreateUser {
            account_id,
            email,
            display_name,
            role,
            request_id,
        })
    }
}

/// `ListUsers`, checked: the account, the filter and the page size.
struct ListUsers {
    account_id: Uuid,
    filter: MemberFilter,
    page_size: u64,
}

impl TryFrom<&proto::ListUsersRequest> for ListUsers {
    type Error = DomainError;

    fn try_from(req: &proto::ListUsersRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let role = if req.role == proto::Role::Unspecified as i32 {
            Some(None)
        } else {
            v.check("role", convert::role_from_proto(req.role).map(Some))
        };
        let status = v.check("status", convert::status_filter(req.status));
        if req.email_prefix.chars().count() > validate::MAX_EMAIL_LEN {
            v.add(
                "email_prefix",
                format!("must be at most {} characters", validate::MAX_EMAIL_LEN),
            );
        } else if req.email_prefix.chars().any(char::is_control) {
            v.add("email_prefix", "must not contain control characters");
        }
        let group_id = if req.group_id.is_empty() {
            Some(None)
        } else {
            v.check("group_id", validate::id(&req.group_id).map(Some))
        };
        let page_size = convert::page_size(&mut v, req.page_size);
        let (account_id, role, status, group_id, page_size) =
            v.values((account_id, role, status, group_id, page_size))?;
        let prefix = req.email_prefix.trim().to_lowercase();
        Ok(ListUsers {
            account_id,
            filter: MemberFilter {
                role,
                status,
                email_prefix: (!prefix.is_empty()).then_some(prefix),
                group_id,
            },
            page_size,
        })
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let actor = actor(&request);
        let input = CreateUser::try_from(request.into_inner())?;
        let member = self.users.create(&actor, input).await?;
        Ok(Response::new(proto::CreateUserResponse {
            user: Some(convert::member(&member)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let mut v = Violations::new();
        let (account_id, user_id) = ids(&mut v, &req.account_id, &req.user_id);
        let (account_id, user_id) = v.values((account_id, user_id))?;
        let member = self.users.get(&actor, account_id, user_id).await?;
        Ok(Response::new(proto::GetUserResponse {
            user: Some(convert::member(&member)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let list = ListUsers::try_from(req)?;
        let page = self
            .users
            .list(
                &actor,
                list.account_id,
                list.filter,
                list.page_size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: page.items.iter().map(convert::member).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::UpdateUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let user = req.user.unwrap_or_default();
        let user_id = v.check("user.id", validate::id(&user.id));
        let paths =
            convert::mask_paths(&mut v, req.update_mask.as_ref(), &["display_name", "role"]);
        let mut change = MemberChange::default();
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    change.display_name =
                        v.check("user.display_name", validate::name(&user.display_name))
                }
                "role" => change.role = v.check("user.role", convert::role_from_proto(user.role)),
                _ => {}
            }
        }
        let etag = v.check("etag", UserEtag::parse(&req.etag));
        let (account_id, user_id, etag) = v.values((account_id, user_id, etag))?;
        let (member, revision) = self
            .users
            .update(&actor, account_id, user_id, change, etag)
            .await?;
        Ok(Response::new(proto::UpdateUserResponse {
            user: Some(convert::member(&member)),
            consistency_token: revision
                .map(|r| self.tokens.encode(account_id, r))
                .unwrap_or_default(),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let mut v = Violations::new();
        let (account_id, user_id) = ids(&mut v, &req.account_id, &req.user_id);
        let etag = v.check("etag", UserEtag::parse(&req.etag));
        let (account_id, user_id, etag) = v.values((account_id, user_id, etag))?;
        let revision = self
            .users
            .delete(&actor, account_id, user_id, etag, req.allow_missing)
            .await?;
        Ok(Response::new(proto::DeleteUserResponse {
            consistency_token: revision
                .map(|r| self.tokens.encode(account_id, r))
                .unwrap_or_default(),
        }))
    }

    async fn resend_invitation(
        &self,
        request: Request<proto::ResendInvitationRequest>,
    ) -> Result<Response<proto::ResendInvitationResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let mut v = Violations::new();
        let (account_id, user_id) = ids(&mut v, &req.account_id, &req.user_id);
        let (account_id, user_id) = v.values((account_id, user_id))?;
        let member = self
            .users
            .resend_invitation(&actor, account_id, user_id)
            .await?;
        Ok(Response::new(proto::ResendInvitationResponse {
            user: Some(convert::member(&member)),
        }))
    }

    async fn disable_user(
        &self,
        request: Request<proto::DisableUserRequest>,
    ) -> Result<Response<proto::DisableUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let (user, consistency_token) = self
            .set_disabled(&actor, &req.account_id, &req.user_id, &req.etag, true)
            .await?;
        Ok(Response::new(proto::DisableUserResponse {
            user: Some(user),
            consistency_token,
        }))
    }

    async fn enable_user(
        &self,
        request: Request<proto::EnableUserRequest>,
    ) -> Result<Response<proto::EnableUserResponse>, Status> {
        let actor = actor(&request);
        let req = request.get_ref();
        let (user, consistency_token) = self
            .set_disabled(&actor, &req.account_id, &req.user_id, &req.etag, false)
            .await?;
        Ok(Response::new(proto::EnableUserResponse {
            user: Some(user),
            consistency_token,
        }))
    }

    async fn get_my_profile(
        &self,
        request: Request<proto::GetMyProfileRequest>,
    ) -> Result<Response<proto::GetMyProfileResponse>, Status> {
        let member = self.users.my_profile(&actor(&request)).await?;
        Ok(Response::new(proto::GetMyProfileResponse {
            user: Some(convert::member(&member)),
        }))
    }

    async fn update_my_profile(
        &self,
        request: Request<proto::UpdateMyProfileRequest>,
    ) -> Result<Response<proto::UpdateMyProfileResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let user = req.user.unwrap_or_default();
        let paths = convert::mask_paths(&mut v, req.update_mask.as_ref(), &["display_name"]);
        let display_name = if paths.iter().any(|p| p == "display_name") {
            v.check("user.display_name", validate::name(&user.display_name))
        } else {
            None
        };
        let etag = v.check("etag", UserEtag::parse(&req.etag));
        let (etag,) = v.values((etag,))?;
        let member = self
            .users
            .update_my_profile(&actor, display_name, etag)
            .await?;
        Ok(Response::new(proto::UpdateMyProfileResponse {
            user: Some(convert::member(&member)),
        }))
    }
}

impl UserApi {
    async fn set_disabled(
        &self,
        actor: &Actor,
        account_id: &str,
        user_id: &str,
        etag: &str,
        disable: bool,
    ) -> Result<(proto::User, String), Status> {
        let mut v = Violations::new();
        let (account_id, user_id) = ids(&mut v, account_id, user_id);
        let etag = v.check("etag", UserEtag::parse(etag));
        let (account_id, user_id, etag) = v.values((account_id, user_id, etag))?;
        let (member, revision) = self
            .users
            .set_disabled(actor, account_id, user_id, disable, etag)
            .await?;
        Ok((
            convert::member(&member),
            self.tokens.encode(account_id, revision),
        ))
    }
}
