//! `identity.v1.AuthService`: token validation and the key set now; the login flows answer
//! `UNIMPLEMENTED` until they are served.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::keys::{KeySet, TokenError};
use crate::clock::SharedClock;
use crate::domain::actor::Actor;
use crate::domain::error::{DomainError, reason};
use crate::domain::roles::Role;
use crate::proto::{self, auth_service_server::AuthService};
use crate::server::App;

use super::authn::actor;
use super::convert;

pub struct AuthApi {
    keys: Arc<KeySet>,
    clock: SharedClock,
}

impl AuthApi {
    pub fn new(app: &App) -> Self {
        Self {
            keys: app.keys.clone(),
            clock: app.clock.clone(),
        }
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    /// Any authenticated caller may validate a token: services check the tokens people forward.
    async fn validate_token(
        &self,
        request: Request<proto::ValidateTokenRequest>,
    ) -> Result<Response<proto::ValidateTokenResponse>, Status> {
        if matches!(actor(&request), Actor::Anonymous) {
            return Err(DomainError::unauthenticated(
                reason::CREDENTIALS_MISSING,
                "credentials are required",
            )
            .into());
        }
        let token = request.into_inner().access_token;
        if token.is_empty() {
            return Err(DomainError::invalid("access_token", "is required").into());
        }
        let claims = self
            .keys
            .verify(&token, self.clock.now())
            .map_err(|err| match err {
                TokenError::Expired => {
                    DomainError::unauthenticated(reason::ACCESS_TOKEN_EXPIRED, err.to_string())
                }
                TokenError::Invalid => {
                    DomainError::unauthenticated(reason::ACCESS_TOKEN_INVALID, err.to_string())
                }
            })?;
        let role = Role::parse(&claims.role).ok_or_else(|| {
            DomainError::unauthenticated(
                reason::ACCESS_TOKEN_INVALID,
                TokenError::Invalid.to_string(),
            )
        })?;
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

    crate::unbuilt_rpcs! { "AuthService", "password, email-code and Google login with sessions":
        login(Login, LoginRequest, LoginResponse);
        verify_mfa_challenge(VerifyMfaChallenge, VerifyMfaChallengeRequest, VerifyMfaChallengeResponse);
        resend_mfa_code(ResendMfaCode, ResendMfaCodeRequest, ResendMfaCodeResponse);
        login_with_google(LoginWithGoogle, LoginWithGoogleRequest, LoginWithGoogleResponse);
        select_account(SelectAccount, SelectAccountRequest, SelectAccountResponse);
        get_invitation(GetInvitation, GetInvitationRequest, GetInvitationResponse);
        accept_invitation(AcceptInvitation, AcceptInvitationRequest, AcceptInvitationResponse);
        request_password_reset(RequestPasswordReset, RequestPasswordResetRequest, RequestPasswordResetResponse);
        reset_password(ResetPassword, ResetPasswordRequest, ResetPasswordResponse);
        change_password(ChangePassword, ChangePasswordRequest, ChangePasswordResponse);
        refresh_session(RefreshSession, RefreshSessionRequest, RefreshSessionResponse);
        logout(Logout, LogoutRequest, LogoutResponse);
        list_my_sessions(ListMySessions, ListMySessionsRequest, ListMySessionsResponse);
        revoke_session(RevokeSession, RevokeSessionRequest, RevokeSessionResponse);
        enable_mfa(EnableMfa, EnableMfaRequest, EnableMfaResponse);
        disable_mfa(DisableMfa, DisableMfaRequest, DisableMfaResponse);
    }

    crate::unbuilt_rpcs! { "AuthService", "SAML single sign-on":
        start_sso_login(StartSsoLogin, StartSsoLoginRequest, StartSsoLoginResponse);
        login_with_sso(LoginWithSso, LoginWithSsoRequest, LoginWithSsoResponse);
    }
}
