//! AuthService's requests, checked: each converts with `TryFrom` into what its use case takes,
//! reporting every bad field at once.

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::auth::password::{self, Password};
use crate::domain::auth::GoogleCredential;
use crate::domain::error::{DomainError, Violations};
use crate::domain::validate;
use crate::proto;

/// A password field: required, at most 128 characters (checked before any hashing).
fn password_field(v: &mut Violations, field: &str, value: String) -> Option<Password> {
    let value = Zeroizing::new(value);
    if value.is_empty() {
        v.add(field, "is required");
        return None;
    }
    bounded_password(v, field, value)
}

/// A password field that may be empty, at most 128 characters.
pub(super) fn bounded_password(
    v: &mut Violations,
    field: &str,
    value: Password,
) -> Option<Password> {
    if value.chars().count() > password::MAX_LEN {
        v.add(
            field,
            format!("must be at most {} characters", password::MAX_LEN),
        );
        return None;
    }
    Some(value)
}

/// A secret token field (invitation, reset, challenge, selection, refresh): required, bounded.
fn token_field(v: &mut Violations, field: &str, value: String) -> Option<String> {
    if value.is_empty() {
        v.add(field, "is required");
        None
    } else if value.len() > 256 {
        v.add(field, "is not a valid token");
        None
    } else {
        Some(value)
    }
}

/// A field that must not be empty.
pub(super) fn required(value: String) -> Result<String, String> {
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    Ok(value)
}

/// A request whose one field is a secret token.
pub(super) fn only_token(field: &str, value: String) -> Result<String, DomainError> {
    let mut v = Violations::new();
    let token = token_field(&mut v, field, value);
    let (token,) = v.values((token,))?;
    Ok(token)
}

/// An email to log in with, as its lower-cased key: required, bounded; `None` inside when no
/// stored address can have it (`validate::email_lookup`).
pub(super) fn email_key(v: &mut Violations, value: &str) -> Option<Option<String>> {
    v.check("email", validate::email_lookup(value))
}

/// An account to log in to, when one is named.
fn optional_account(v: &mut Violations, value: &str) -> Option<Option<Uuid>> {
    if value.is_empty() {
        Some(None)
    } else {
        v.check("account_id", validate::id(value).map(Some))
    }
}

/// `Login`, checked.
pub(super) struct PasswordLogin {
    /// `None`: an address no person can have.
    pub(super) email_key: Option<String>,
    pub(super) password: Password,
    pub(super) account_id: Option<Uuid>,
}

impl TryFrom<proto::LoginRequest> for PasswordLogin {
    type Error = DomainError;

    fn try_from(req: proto::LoginRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let email_key = email_key(&mut v, &req.email);
        let password = password_field(&mut v, "password", req.password);
        let account_id = optional_account(&mut v, &req.account_id);
        let (email_key, password, account_id) = v.values((email_key, password, account_id))?;
        Ok(Self {
            email_key,
            password,
            account_id,
        })
    }
}

/// `LoginWithGoogle`, checked.
pub(super) struct GoogleLogin {
    pub(super) credential: GoogleCredential,
    pub(super) account_id: Option<Uuid>,
}

impl TryFrom<proto::LoginWithGoogleRequest> for GoogleLogin {
    type Error = DomainError;

    fn try_from(req: proto::LoginWithGoogleRequest) -> Result<Self, DomainError> {
        use proto::login_with_google_request::Credential;
        let mut v = Violations::new();
        let account_id = optional_account(&mut v, &req.account_id);
        let nonce_ok = |nonce: &str| !nonce.is_empty() && nonce.len() <= 256;
        let credential = match req.credential {
            Some(Credential::AuthorizationCode(code)) => {
                let checked = token_field(&mut v, "authorization_code.code", code.code);
                if !(43..=128).contains(&code.code_verifier.len()) {
                    v.add(
                        "authorization_code.code_verifier",
                        "must be 43 to 128 characters (PKCE)",
                    );
                }
                if code.redirect_uri.is_empty() {
                    v.add("authorization_code.redirect_uri", "is required");
                }
                if !nonce_ok(&code.nonce) {
                    v.add("authorization_code.nonce", "is required");
                }
                checked.map(|checked| GoogleCredential::Code {
                    code: checked,
                    code_verifier: code.code_verifier,
                    redirect_uri: code.redirect_uri,
                    nonce: code.nonce,
                })
            }
            Some(Credential::IdToken(token)) => {
                if token.id_token.is_empty() || token.id_token.len() > 16 * 1024 {
                    v.add("id_token.id_token", "is required (a JWT of at most 16 KiB)");
                }
                if !nonce_ok(&token.nonce) {
                    v.add("id_token.nonce", "is required");
                }
                Some(GoogleCredential::IdToken {
                    id_token: token.id_token,
                    nonce: token.nonce,
                })
            }
            None => {
                v.add(
                    "credential",
                    "an authorization_code or an id_token is required",
                );
                None
            }
        };
        let (credential, account_id) = v.values((credential, account_id))?;
        Ok(Self {
            credential,
            account_id,
        })
    }
}

/// `VerifyMfaChallenge`, checked.
pub(super) struct CodeEntry {
    pub(super) challenge_id: String,
    pub(super) code: String,
}

impl TryFrom<proto::VerifyMfaChallengeRequest> for CodeEntry {
    type Error = DomainError;

    fn try_from(req: proto::VerifyMfaChallengeRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let challenge_id = token_field(&mut v, "challenge_id", req.challenge_id);
        let code = if req.code.len() == 6 && req.code.bytes().all(|b| b.is_ascii_digit()) {
            Some(req.code)
        } else {
            v.add("code", "must be the 6 digits from the email");
            None
        };
        let (challenge_id, code) = v.values((challenge_id, code))?;
        Ok(Self { challenge_id, code })
    }
}

/// `SelectAccount`, checked.
pub(super) struct AccountChoice {
    pub(super) selection_token: String,
    pub(super) account_id: Uuid,
}

impl TryFrom<proto::SelectAccountRequest> for AccountChoice {
    type Error = DomainError;

    fn try_from(req: proto::SelectAccountRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let selection_token = token_field(&mut v, "selection_token", req.selection_token);
        let account_id = v.check("account_id", validate::id(&req.account_id));
        let (selection_token, account_id) = v.values((selection_token, account_id))?;
        Ok(Self {
            selection_token,
            account_id,
        })
    }
}

/// `AcceptInvitation`, checked.
pub(super) struct Acceptance {
    pub(super) invitation_token: String,
    pub(super) password: Password,
    pub(super) display_name: Option<String>,
}

impl TryFrom<proto::AcceptInvitationRequest> for Acceptance {
    type Error = DomainError;

    fn try_from(req: proto::AcceptInvitationRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let invitation_token = token_field(&mut v, "invitation_token", req.invitation_token);
        let password = password_field(&mut v, "password", req.password);
        let display_name = if req.display_name.trim().is_empty() {
            Some(None)
        } else {
            v.check("display_name", validate::name(&req.display_name).map(Some))
        };
        let (invitation_token, password, display_name) =
            v.values((invitation_token, password, display_name))?;
        Ok(Self {
            invitation_token,
            password,
            display_name,
        })
    }
}

/// `ResetPassword`, checked.
pub(super) struct Reset {
    pub(super) reset_token: String,
    pub(super) new_password: Password,
}

impl TryFrom<proto::ResetPasswordRequest> for Reset {
    type Error = DomainError;

    fn try_from(req: proto::ResetPasswordRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let reset_token = token_field(&mut v, "reset_token", req.reset_token);
        let new_password = password_field(&mut v, "new_password", req.new_password);
        let (reset_token, new_password) = v.values((reset_token, new_password))?;
        Ok(Self {
            reset_token,
            new_password,
        })
    }
}

/// `ChangePassword`, checked.
pub(super) struct PasswordChange {
    pub(super) current: Password,
    pub(super) new_password: Password,
}

impl TryFrom<proto::ChangePasswordRequest> for PasswordChange {
    type Error = DomainError;

    fn try_from(req: proto::ChangePasswordRequest) -> Result<Self, DomainError> {
        let mut v = Violations::new();
        let current = password_field(&mut v, "current_password", req.current_password);
        let new_password = password_field(&mut v, "new_password", req.new_password);
        let (current, new_password) = v.values((current, new_password))?;
        Ok(Self {
            current,
            new_password,
        })
    }
}

/// `LoginWithSso`, checked: the size limits of the binding before anything is decoded.
pub(super) struct SsoResponse {
    pub(super) account_id: Uuid,
    pub(super) saml_response: String,
    pub(super) relay_state: String,
}

impl TryFrom<proto::LoginWithSsoRequest> for SsoResponse {
    type Error = DomainError;

    fn try_from(req: proto::LoginWithSsoRequest) -> Result<Self, DomainError> {
        use crate::domain::sso::{MAX_RELAY_STATE_BYTES, MAX_RESPONSE_BYTES};
        let mut v = Violations::new();
        let account_id = v.check("account_id", validate::id(&req.account_id));
        if req.saml_response.trim().is_empty() {
            v.add("saml_response", "is required");
        } else if req.saml_response.len() > MAX_RESPONSE_BYTES {
            v.add(
                "saml_response",
                format!("must be at most {} KiB", MAX_RESPONSE_BYTES / 1024),
            );
        }
        if req.relay_state.len() > MAX_RELAY_STATE_BYTES {
            v.add(
                "relay_state",
                format!("must be at most {MAX_RELAY_STATE_BYTES} bytes"),
            );
        }
        let (account_id,) = v.values((account_id,))?;
        Ok(Self {
            account_id,
            saml_response: req.saml_response,
            relay_state: req.relay_state,
        })
    }
}
