//! `identity.v1.AccountService`.

use tonic::{Request, Response, Status};

use crate::app::{App, accounts::Accounts, sso::Sso};
use crate::domain::accounts::{CreateAccount, MAX_GROUPS_CAP, MAX_USERS_CAP, check_limit};
use crate::domain::error::{DomainError, Violations};
use crate::domain::users::default_display_name;
use crate::domain::validate;
use crate::proto::{self, account_service_server::AccountService};

use super::authn::actor;
use super::{convert, sso};

pub struct AccountApi {
    accounts: Accounts,
    sso: Sso,
}

impl AccountApi {
    pub fn new(app: &App) -> Self {
        Self {
            accounts: app.accounts.clone(),
            sso: app.sso.clone(),
        }
    }
}

impl TryFrom<proto::CreateAccountRequest> for CreateAccount {
    type Error = DomainError;

    fn try_from(req: proto::CreateAccountRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let name = v.check("name", validate::name(&req.name));
        let email = v.check(
            "administrator_email",
            validate::email(&req.administrator_email),
        );
        let display_name = if req.administrator_display_name.trim().is_empty() {
            // A new person without a name is called by the local part of the address.
            email.as_ref().map(default_display_name)
        } else {
            v.check(
                "administrator_display_name",
                validate::name(&req.administrator_display_name),
            )
        };
        let limits = req.limits.unwrap_or_default();
        if limits.max_users != 0 {
            check_limit(
                &mut v,
                "limits.max_users",
                limits.max_users,
                1,
                MAX_USERS_CAP,
            );
        }
        if limits.max_groups != 0 {
            check_limit(
                &mut v,
                "limits.max_groups",
                limits.max_groups,
                0,
                MAX_GROUPS_CAP,
            );
        }
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        let (name, admin_email, admin_display_name, request_id) =
            v.values((name, email, display_name, request_id))?;
        Ok(CreateAccount {
            name,
            admin_email,
            admin_display_name,
            max_users: (limits.max_users != 0).then_some(limits.max_users),
            max_groups: (limits.max_groups != 0).then_some(limits.max_groups),
            request_id,
        })
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::CreateAccountResponse>, Status> {
        let actor = actor(&request);
        let input = CreateAccount::try_from(request.into_inner())?;
        let created = self.accounts.create(&actor, input).await?;
        Ok(Response::new(proto::CreateAccountResponse {
            account: Some(convert::account(&created.account)),
            administrator: Some(convert::member(&created.administrator)),
        }))
    }

    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::GetAccountResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let account_id =
            validate::id(&req.account_id).map_err(|e| DomainError::invalid("account_id", e))?;
        let account = self.accounts.get(&actor, account_id).await?;
        Ok(Response::new(proto::GetAccountResponse {
            account: Some(convert::account(&account)),
        }))
    }

    async fn update_account_settings(
        &self,
        request: Request<proto::UpdateAccountSettingsRequest>,
    ) -> Result<Response<proto::UpdateAccountSettingsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let paths = convert::mask_paths(&mut v, req.update_mask.as_ref(), &["enforce_mfa"]);
        let etag = v.check("etag", validate::etag(&req.etag));
        if req.settings.is_none() && !paths.is_empty() {
            v.add("settings", "is required with the update_mask");
        }
        let (account_id, etag) = v.values((account_id, etag))?;
        let settings = req.settings.unwrap_or_default();
        let enforce_mfa = paths
            .iter()
            .any(|p| p == "enforce_mfa")
            .then_some(settings.enforce_mfa);
        let account = self
            .accounts
            .update_settings(&actor, account_id, enforce_mfa, etag)
            .await?;
        Ok(Response::new(proto::UpdateAccountSettingsResponse {
            account: Some(convert::account(&account)),
        }))
    }

    async fn set_account_limits(
        &self,
        request: Request<proto::SetAccountLimitsRequest>,
    ) -> Result<Response<proto::SetAccountLimitsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        if let Some(max_users) = req.max_users {
            check_limit(&mut v, "max_users", max_users, 1, MAX_USERS_CAP);
        }
        if let Some(max_groups) = req.max_groups {
            check_limit(&mut v, "max_groups", max_groups, 0, MAX_GROUPS_CAP);
        }
        if req.max_users.is_none() && req.max_groups.is_none() {
            v.add("max_users", "set max_users, max_groups or both");
        }
        let etag = v.check("etag", validate::etag(&req.etag));
        let (account_id, etag) = v.values((account_id, etag))?;
        let account = self
            .accounts
            .set_limits(&actor, account_id, req.max_users, req.max_groups, etag)
            .await?;
        Ok(Response::new(proto::SetAccountLimitsResponse {
            account: Some(convert::account(&account)),
        }))
    }

    async fn get_sso_settings(
        &self,
        request: Request<proto::GetSsoSettingsRequest>,
    ) -> Result<Response<proto::GetSsoSettingsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let account_id =
            validate::id(&req.account_id).map_err(|e| DomainError::invalid("account_id", e))?;
        let view = self.sso.get(&actor, account_id).await?;
        Ok(Response::new(proto::GetSsoSettingsResponse {
            sso_settings: Some(sso::settings(&view)),
        }))
    }

    async fn update_sso_settings(
        &self,
        request: Request<proto::UpdateSsoSettingsRequest>,
    ) -> Result<Response<proto::UpdateSsoSettingsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let paths = convert::mask_paths(&mut v, req.update_mask.as_ref(), sso::PATHS);
        let etag = v.check("etag", validate::etag(&req.etag));
        if req.sso_settings.is_none() && !paths.is_empty() {
            v.add("sso_settings", "is required with the update_mask");
        }
        let change = sso::change(&mut v, &paths, req.sso_settings.unwrap_or_default());
        let (account_id, etag) = v.values((account_id, etag))?;
        let view = self.sso.update(&actor, account_id, change, etag).await?;
        Ok(Response::new(proto::UpdateSsoSettingsResponse {
            sso_settings: Some(sso::settings(&view)),
        }))
    }
}
