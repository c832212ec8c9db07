//! `identity.v1.AccessService`: the caller's permissions now; sharing and checks answer
//! `UNIMPLEMENTED` until they are served.

use tonic::{Request, Response, Status};

use crate::app::{App, access::Access};
use crate::domain::access::media_level;
use crate::domain::error::DomainError;
use crate::domain::roles::{Level, MediaAccess};
use crate::domain::validate;
use crate::proto::{self, access_service_server::AccessService};

use super::authn::actor;
use super::convert;

pub struct AccessApi {
    access: Access,
}

impl AccessApi {
    pub fn new(app: &App) -> Self {
        Self {
            access: app.access.clone(),
        }
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

#[tonic::async_trait]
impl AccessService for AccessApi {
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

    crate::unbuilt_rpcs! { "AccessService", "sharing and access checks":
        share_resource(ShareResource, ShareResourceRequest, ShareResourceResponse);
        revoke_share(RevokeShare, RevokeShareRequest, RevokeShareResponse);
        list_resource_shares(ListResourceShares, ListResourceSharesRequest, ListResourceSharesResponse);
        list_shared_with_user(ListSharedWithUser, ListSharedWithUserRequest, ListSharedWithUserResponse);
        check_access(CheckAccess, CheckAccessRequest, CheckAccessResponse);
        batch_check_access(BatchCheckAccess, BatchCheckAccessRequest, BatchCheckAccessResponse);
        explain_access(ExplainAccess, ExplainAccessRequest, ExplainAccessResponse);
    }
}
