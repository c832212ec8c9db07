//! `identity.v1.AuthService`. Requests are checked in `requests`.

mod requests;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::app::{App, auth::Auth};
use crate::auth::authenticator::{Authenticator, Refusal, VerifiedToken, session_error};
use crate::auth::keys::{KeySet, TokenError};
use crate::domain::actor::Callers;
use crate::domain::auth::{Challenge, Client, IssuedSession, LoginOutcome, Selection};
use crate::domain::error::{DomainError, Violations, reason};
use crate::domain::validate;
use crate::proto::{self, auth_service_server::AuthService};

use super::authn::actor;
use super::convert::{self, timestamp};
use requests::{
    Acceptance, AccountChoice, CodeEntry, GoogleLogin, PasswordChange, PasswordLogin, Reset,
    SsoResponse, bounded_password, email_key, only_token, required,
};

pub struct AuthApi {
    auth: Auth,
    authenticator: Arc<Authenticator>,
    keys: Arc<KeySet>,
}

impl AuthApi {
    pub fn new(app: &App) -> Self {
        Self {
            auth: app.auth.clone(),
            authenticator: app.authenticator.clone(),
            keys: app.keys.clone(),
        }
    }
}

/// A forwarded access token was refused: the reasons name the token, not the caller.
fn forwarded_token_refused(refusal: Refusal) -> DomainError {
    match refusal {
        Refusal::Token(err @ TokenError::Expired) => {
            DomainError::unauthenticated(reason::ACCESS_TOKEN_EXPIRED, err.to_string())
        }
        Refusal::Token(err @ TokenError::Invalid) => {
            DomainError::unauthenticated(reason::ACCESS_TOKEN_INVALID, err.to_string())
        }
        Refusal::Session(refusal) => {
            session_error(refusal).with_metadata("subject", "access_token")
        }
    }
}

/// Where the call came from, for the session record.
/// The client of the request being handled, as the authentication layer resolved it (the
/// trusted proxy's address header when configured, else the peer; the User-Agent).
fn client() -> Client {
    let origin = crate::app::audit::origin();
    let some = |s: String| (!s.is_empty()).then_some(s);
    Client {
        user_agent: some(origin.user_agent),
        ip_address: some(origin.ip_address),
    }
}

fn tokens(issued: IssuedSession) -> proto::SessionTokens {
    proto::SessionTokens {
        access_token: issued.access_token,
        access_token_expire_time: Some(timestamp(issued.access_expires_at)),
        refresh_token: issued.refresh_token,
        refresh_token_expire_time: Some(timestamp(issued.session.expires_at)),
        session_id: issued.session.id.to_string(),
        account_id: issued.session.account_id.to_string(),
        user_id: issued.session.user_id.to_string(),
        role: convert::role_to_proto(issued.role) as i32,
    }
}

fn challenge(c: Challenge) -> proto::MfaChallenge {
    proto::MfaChallenge {
        challenge_id: c.id,
        expire_time: Some(timestamp(c.code_expires_at)),
        masked_email: c.masked_email,
        resend_available_time: Some(timestamp(c.resend_at)),
        resends_remaining: c.resends_left,
        attempts_remaining: c.attempts_left,
    }
}

fn selection(s: Selection) -> proto::AccountSelection {
    proto::AccountSelection {
        selection_token: s.token,
        expire_time: Some(timestamp(s.expires_at)),
        accounts: s
            .accounts
            .iter()
            .map(|a| proto::AccountChoice {
                account_id: a.account.id.to_string(),
                account_name: a.account.name.clone(),
                role: convert::role_to_proto(a.membership.role) as i32,
                status: convert::status_to_proto(a.membership.status) as i32,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        request: Request<proto::LoginRequest>,
    ) -> Result<Response<proto::LoginResponse>, Status> {
        let client = client();
        let login = PasswordLogin::try_from(request.into_inner())?;
        let outcome = self
            .auth
            .login(
                login.email_key.as_deref(),
                login.password,
                login.account_id,
                client,
            )
            .await?;
        use proto::login_response::Outcome;
        Ok(Response::new(proto::LoginResponse {
            outcome: Some(match outcome {
                LoginOutcome::Tokens(t) => Outcome::Tokens(tokens(t)),
                LoginOutcome::Challenge(c) => Outcome::MfaChallenge(challenge(c)),
                LoginOutcome::Selection(s) => Outcome::AccountSelection(selection(s)),
            }),
        }))
    }

    async fn login_with_google(
        &self,
        request: Request<proto::LoginWithGoogleRequest>,
    ) -> Result<Response<proto::LoginWithGoogleResponse>, Status> {
        let client = client();
        let login = GoogleLogin::try_from(request.into_inner())?;
        let outcome = self
            .auth
            .login_with_google(login.credential, login.account_id, client)
            .await?;
        use proto::login_with_google_response::Outcome;
        Ok(Response::new(proto::LoginWithGoogleResponse {
            outcome: Some(match outcome {
                LoginOutcome::Tokens(t) => Outcome::Tokens(tokens(t)),
                LoginOutcome::Selection(s) => Outcome::AccountSelection(selection(s)),
                LoginOutcome::Challenge(_) => {
                    return Err(DomainError::internal(anyhow::anyhow!(
                        "a Google login asked for the email code"
                    ))
                    .into());
                }
            }),
        }))
    }

    async fn verify_mfa_challenge(
        &self,
        request: Request<proto::VerifyMfaChallengeRequest>,
    ) -> Result<Response<proto::VerifyMfaChallengeResponse>, Status> {
        let client = client();
        let entry = CodeEntry::try_from(request.into_inner())?;
        let outcome = self
            .auth
            .verify_challenge(&entry.challenge_id, &entry.code, client)
            .await?;
        use proto::verify_mfa_challenge_response::Outcome;
        Ok(Response::new(proto::VerifyMfaChallengeResponse {
            outcome: Some(match outcome {
                LoginOutcome::Tokens(t) => Outcome::Tokens(tokens(t)),
                LoginOutcome::Selection(s) => Outcome::AccountSelection(selection(s)),
                LoginOutcome::Challenge(_) => {
                    return Err(DomainError::internal(anyhow::anyhow!(
                        "a passed code asked for another"
                    ))
                    .into());
                }
            }),
        }))
    }

    async fn resend_mfa_code(
        &self,
        request: Request<proto::ResendMfaCodeRequest>,
    ) -> Result<Response<proto::ResendMfaCodeResponse>, Status> {
        let challenge_id = only_token("challenge_id", request.into_inner().challenge_id)?;
        let c = self.auth.resend_code(&challenge_id).await?;
        Ok(Response::new(proto::ResendMfaCodeResponse {
            mfa_challenge: Some(challenge(c)),
        }))
    }

    async fn select_account(
        &self,
        request: Request<proto::SelectAccountRequest>,
    ) -> Result<Response<proto::SelectAccountResponse>, Status> {
        let client = client();
        let choice = AccountChoice::try_from(request.into_inner())?;
        let issued = self
            .auth
            .select_account(&choice.selection_token, choice.account_id, client)
            .await?;
        Ok(Response::new(proto::SelectAccountResponse {
            tokens: Some(tokens(issued)),
        }))
    }

    async fn get_invitation(
        &self,
        request: Request<proto::GetInvitationRequest>,
    ) -> Result<Response<proto::GetInvitationResponse>, Status> {
        let token = only_token("invitation_token", request.into_inner().invitation_token)?;
        let view = self.auth.invitation(&token).await?;
        let user = convert::member(&view.member);
        Ok(Response::new(proto::GetInvitationResponse {
            email: user.email,
            account_id: user.account_id,
            account_name: view.account_name,
            role: user.role,
            has_password: user.has_password,
            display_name: user.display_name,
            expire_time: Some(timestamp(view.expires_at)),
        }))
    }

    async fn accept_invitation(
        &self,
        request: Request<proto::AcceptInvitationRequest>,
    ) -> Result<Response<proto::AcceptInvitationResponse>, Status> {
        let client = client();
        let acceptance = Acceptance::try_from(request.into_inner())?;
        let (member, issued) = self
            .auth
            .accept_invitation(
                &acceptance.invitation_token,
                acceptance.password,
                acceptance.display_name,
                client,
            )
            .await?;
        Ok(Response::new(proto::AcceptInvitationResponse {
            user: Some(convert::member(&member)),
            tokens: Some(tokens(issued)),
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<proto::RequestPasswordResetRequest>,
    ) -> Result<Response<proto::RequestPasswordResetResponse>, Status> {
        let mut v = Violations::new();
        let email_key = email_key(&mut v, &request.get_ref().email);
        let (email_key,) = v.values((email_key,))?;
        // An address no person can have gets the same answer as an unknown one.
        if let Some(email_key) = email_key {
            self.auth.request_password_reset(email_key);
        }
        Ok(Response::new(proto::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<proto::ResetPasswordRequest>,
    ) -> Result<Response<proto::ResetPasswordResponse>, Status> {
        let reset = Reset::try_from(request.into_inner())?;
        self.auth
            .reset_password(&reset.reset_token, reset.new_password)
            .await?;
        Ok(Response::new(proto::ResetPasswordResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::ChangePasswordResponse>, Status> {
        let actor = actor(&request);
        let change = PasswordChange::try_from(request.into_inner())?;
        let revoked = self
            .auth
            .change_password(&actor, change.current, change.new_password)
            .await?;
        Ok(Response::new(proto::ChangePasswordResponse {
            revoked_session_count: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }

    async fn refresh_session(
        &self,
        request: Request<proto::RefreshSessionRequest>,
    ) -> Result<Response<proto::RefreshSessionResponse>, Status> {
        let token = only_token("refresh_token", request.into_inner().refresh_token)?;
        let issued = self.auth.refresh(&token).await?;
        Ok(Response::new(proto::RefreshSessionResponse {
            tokens: Some(tokens(issued)),
        }))
    }

    async fn logout(
        &self,
        request: Request<proto::LogoutRequest>,
    ) -> Result<Response<proto::LogoutResponse>, Status> {
        self.auth.logout(&actor(&request)).await?;
        Ok(Response::new(proto::LogoutResponse {}))
    }

    async fn list_my_sessions(
        &self,
        request: Request<proto::ListMySessionsRequest>,
    ) -> Result<Response<proto::ListMySessionsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let size = convert::page_size(&mut v, req.page_size);
        let (size,) = v.values((size,))?;
        let (page, current) = self
            .auth
            .list_sessions(&actor, size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListMySessionsResponse {
            sessions: page
                .items
                .into_iter()
                .map(|(s, account_name)| proto::Session {
                    id: s.id.to_string(),
                    user_id: s.user_id.to_string(),
                    account_id: s.account_id.to_string(),
                    account_name,
                    create_time: Some(timestamp(s.created_at)),
                    last_use_time: Some(timestamp(s.last_used_at)),
                    expire_time: Some(timestamp(s.expires_at)),
                    user_agent: s.user_agent.unwrap_or_default(),
                    ip_address: s.ip_address.unwrap_or_default(),
                    amr: s.amr,
                    current: s.id == current,
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        let actor = actor(&request);
        let mut v = Violations::new();
        let session_id = v.check("session_id", validate::id(&request.get_ref().session_id));
        let (session_id,) = v.values((session_id,))?;
        self.auth.revoke_own_session(&actor, session_id).await?;
        Ok(Response::new(proto::RevokeSessionResponse {}))
    }

    async fn enable_mfa(
        &self,
        request: Request<proto::EnableMfaRequest>,
    ) -> Result<Response<proto::EnableMfaResponse>, Status> {
        let member = self.auth.set_mfa(&actor(&request), true, None).await?;
        Ok(Response::new(proto::EnableMfaResponse {
            user: Some(convert::member(&member)),
        }))
    }

    async fn disable_mfa(
        &self,
        request: Request<proto::DisableMfaRequest>,
    ) -> Result<Response<proto::DisableMfaResponse>, Status> {
        let actor = actor(&request);
        let mut v = Violations::new();
        let current = Zeroizing::new(request.into_inner().current_password);
        let current = bounded_password(&mut v, "current_password", current);
        let (current,) = v.values((current,))?;
        let member = self.auth.set_mfa(&actor, false, Some(current)).await?;
        Ok(Response::new(proto::DisableMfaResponse {
            user: Some(convert::member(&member)),
        }))
    }

    /// Services validate the tokens people forward, with the same check the authentication layer
    /// makes of a caller's own token. Only services may ask (the layer's gate, `callers`).
    async fn validate_token(
        &self,
        request: Request<proto::ValidateTokenRequest>,
    ) -> Result<Response<proto::ValidateTokenResponse>, Status> {
        actor(&request).admitted_by(Callers::AnyService)?;
        let mut v = Violations::new();
        let token = v.check("access_token", required(request.into_inner().access_token));
        let (token,) = v.values((token,))?;
        let VerifiedToken { claims, role } = self
            .authenticator
            .check_access_token(&token)
            .await?
            .map_err(forwarded_token_refused)?;
        let time = |secs: i64| prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        };
        Ok(Response::new(proto::ValidateTokenResponse {
            user_id: claims.sub.to_string(),
            account_id: claims.acc.to_string(),
            role: convert::role_to_proto(role) as i32,
            session_id: claims.sid.to_string(),
            amr: claims.amr,
            issue_time: Some(time(claims.iat)),
            expire_time: Some(time(claims.exp)),
            email: claims.email,
        }))
    }

    async fn get_jwks(
        &self,
        _request: Request<proto::GetJwksRequest>,
    ) -> Result<Response<proto::GetJwksResponse>, Status> {
        let jwks = self.keys.jwks();
        let keys = jwks
            .iter()
            .map(|jwk| {
                let value = serde_json::to_value(jwk).unwrap_or_default();
                let field = |name: &str| {
                    value
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                proto::JsonWebKey {
                    kty: field("kty"),
                    crv: field("crv"),
                    x: field("x"),
                    y: field("y"),
                    kid: field("kid"),
                    alg: field("alg"),
                    r#use: field("use"),
                }
            })
            .collect();
        let jwks_json = serde_json::to_string(&serde_json::json!({ "keys": jwks }))
            .map_err(DomainError::internal)?;
        Ok(Response::new(proto::GetJwksResponse { keys, jwks_json }))
    }

    async fn start_sso_login(
        &self,
        request: Request<proto::StartSsoLoginRequest>,
    ) -> Result<Response<proto::StartSsoLoginResponse>, Status> {
        let req = request.into_inner();
        let account_id =
            validate::id(&req.account_id).map_err(|e| DomainError::invalid("account_id", e))?;
        let started = self.auth.start_sso_login(account_id).await?;
        Ok(Response::new(proto::StartSsoLoginResponse {
            redirect_url: started.redirect_url,
            relay_state: started.relay_state,
            expire_time: Some(timestamp(started.expires_at)),
        }))
    }

    async fn login_with_sso(
        &self,
        request: Request<proto::LoginWithSsoRequest>,
    ) -> Result<Response<proto::LoginWithSsoResponse>, Status> {
        let client = client();
        let login = SsoResponse::try_from(request.into_inner())?;
        let done = self
            .auth
            .login_with_sso(
                login.account_id,
                &login.saml_response,
                &login.relay_state,
                client,
            )
            .await?;
        Ok(Response::new(proto::LoginWithSsoResponse {
            tokens: Some(tokens(done.session)),
            user_provisioned: done.provisioned,
        }))
    }
}
