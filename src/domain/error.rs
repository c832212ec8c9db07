//! The one error type of the domain. Every variant carries its meaning; the transport maps it to a
//! gRPC status in exactly one place (`grpc::status`).

use std::time::Duration;

/// Every stable `google.rpc.ErrorInfo.reason` value of the service, in one place. Clients switch
/// on these, so they never change; the protos' comments name them per RPC.
pub mod reason {
    // Any RPC.
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    pub const ETAG_MISMATCH: &str = "ETAG_MISMATCH";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";
    pub const NOT_IMPLEMENTED: &str = "NOT_IMPLEMENTED";

    // The caller's credentials and rights.
    pub const CREDENTIALS_MISSING: &str = "CREDENTIALS_MISSING";
    pub const CREDENTIALS_INVALID: &str = "CREDENTIALS_INVALID";
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub const SESSION_REVOKED: &str = "SESSION_REVOKED";
    /// The token's session is live, but its person is not an ACTIVE member of the account.
    pub const MEMBERSHIP_NOT_ACTIVE: &str = "MEMBERSHIP_NOT_ACTIVE";
    pub const PERMISSION_MISSING: &str = "PERMISSION_MISSING";
    pub const SCOPE_MISSING: &str = "SCOPE_MISSING";
    /// The request's bytes are not a message of the RPC.
    pub const MESSAGE_UNDECODABLE: &str = "MESSAGE_UNDECODABLE";
    /// The request is larger than the configured limit.
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    pub const ACCOUNT_MISMATCH: &str = "ACCOUNT_MISMATCH";

    // Accounts, users and groups.
    pub const ACCOUNT_NOT_FOUND: &str = "ACCOUNT_NOT_FOUND";
    pub const USER_NOT_FOUND: &str = "USER_NOT_FOUND";
    pub const USER_ALREADY_MEMBER: &str = "USER_ALREADY_MEMBER";
    pub const USER_LIMIT_REACHED: &str = "USER_LIMIT_REACHED";
    pub const LAST_ADMINISTRATOR: &str = "LAST_ADMINISTRATOR";
    pub const USER_NOT_INVITED: &str = "USER_NOT_INVITED";
    pub const INVITATION_RESEND_TOO_SOON: &str = "INVITATION_RESEND_TOO_SOON";
    pub const GROUP_NOT_FOUND: &str = "GROUP_NOT_FOUND";
    pub const GROUP_NAME_TAKEN: &str = "GROUP_NAME_TAKEN";
    pub const GROUP_LIMIT_REACHED: &str = "GROUP_LIMIT_REACHED";

    // Sharing and access checks.
    pub const SHARE_NOT_FOUND: &str = "SHARE_NOT_FOUND";
    pub const ROOT_NOT_SHAREABLE: &str = "ROOT_NOT_SHAREABLE";
    pub const CONSISTENCY_TOKEN_INVALID: &str = "CONSISTENCY_TOKEN_INVALID";

    // Login, sessions and tokens.
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    pub const LOGIN_THROTTLED: &str = "LOGIN_THROTTLED";
    pub const MFA_CODE_INVALID: &str = "MFA_CODE_INVALID";
    pub const MFA_CHALLENGE_EXPIRED: &str = "MFA_CHALLENGE_EXPIRED";
    pub const MFA_RESEND_TOO_SOON: &str = "MFA_RESEND_TOO_SOON";
    pub const MFA_RESEND_LIMIT_REACHED: &str = "MFA_RESEND_LIMIT_REACHED";
    pub const MFA_REQUIRED: &str = "MFA_REQUIRED";
    pub const MFA_ENFORCED: &str = "MFA_ENFORCED";
    pub const ACCOUNT_SELECTION_EXPIRED: &str = "ACCOUNT_SELECTION_EXPIRED";
    pub const INVITATION_EXPIRED: &str = "INVITATION_EXPIRED";
    pub const INVITATION_INVALID: &str = "INVITATION_INVALID";
    pub const RESET_TOKEN_EXPIRED: &str = "RESET_TOKEN_EXPIRED";
    pub const RESET_TOKEN_INVALID: &str = "RESET_TOKEN_INVALID";
    pub const REFRESH_TOKEN_INVALID: &str = "REFRESH_TOKEN_INVALID";
    pub const REFRESH_TOKEN_REUSED: &str = "REFRESH_TOKEN_REUSED";
    pub const SESSION_NOT_FOUND: &str = "SESSION_NOT_FOUND";
    pub const CURRENT_PASSWORD_INCORRECT: &str = "CURRENT_PASSWORD_INCORRECT";
    pub const NO_PASSWORD: &str = "NO_PASSWORD";
    pub const NO_MATCHING_USER: &str = "NO_MATCHING_USER";
    pub const ACCESS_TOKEN_INVALID: &str = "ACCESS_TOKEN_INVALID";
    pub const ACCESS_TOKEN_EXPIRED: &str = "ACCESS_TOKEN_EXPIRED";

    // Google login.
    pub const GOOGLE_LOGIN_NOT_CONFIGURED: &str = "GOOGLE_LOGIN_NOT_CONFIGURED";
    pub const GOOGLE_CREDENTIAL_INVALID: &str = "GOOGLE_CREDENTIAL_INVALID";
    pub const GOOGLE_EMAIL_NOT_VERIFIED: &str = "GOOGLE_EMAIL_NOT_VERIFIED";
    pub const GOOGLE_UNAVAILABLE: &str = "GOOGLE_UNAVAILABLE";

    // SAML single sign-on.
    pub const SSO_NOT_ENABLED: &str = "SSO_NOT_ENABLED";
    pub const SSO_CONFIGURATION_INCOMPLETE: &str = "SSO_CONFIGURATION_INCOMPLETE";
    pub const SAML_RESPONSE_INVALID: &str = "SAML_RESPONSE_INVALID";
}

/// One bad field of a request: the path of the field (`settings.enforce_mfa`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Collects every bad field of a request, so the caller learns all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value of a check that passed, records the violation of one that failed.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// `check`, naming the field only when the check failed (`field` builds the path): the
    /// hot path of a large batch allocates no paths.
    pub fn check_at<T>(
        &mut self,
        field: impl FnOnce() -> String,
        result: Result<T, String>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field(), description);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else the `InvalidArgument` error listing every field.
    pub fn finish(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::InvalidArgument {
                reason: reason::INVALID_ARGUMENT,
                violations: self.0,
            })
        }
    }
}

impl Violations {
    /// `finish`, then the values of the checks that passed: `fields` is a tuple of what `check`
    /// returned, e.g. `v.values((account_id, email))?` gives `(Uuid, Email)`. When nothing was
    /// recorded every check passed, so every field has its value.
    pub fn values<T: Checked>(self, fields: T) -> Result<T::Values, DomainError> {
        self.finish()?;
        fields
            .values()
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("a checked field has no value")))
    }
}

/// A tuple of `Option`s that `Violations::check` returned.
pub trait Checked {
    type Values;
    fn values(self) -> Option<Self::Values>;
}

macro_rules! checked_tuple {
    ($($name:ident),+) => {
        impl<$($name),+> Checked for ($(Option<$name>,)+) {
            type Values = ($($name,)+);
            #[allow(non_snake_case)]
            fn values(self) -> Option<Self::Values> {
                let ($($name,)+) = self;
                Some(($($name?,)+))
            }
        }
    };
}

checked_tuple!(A);
checked_tuple!(A, B);
checked_tuple!(A, B, C);
checked_tuple!(A, B, C, D);
checked_tuple!(A, B, C, D, E);
checked_tuple!(A, B, C, D, E, F);

/// What went wrong, by meaning. Messages are safe to show to the caller: they never contain
/// secrets or internal details (those stay in `Internal`'s source, which is only logged).
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("invalid argument")]
    InvalidArgument {
        reason: &'static str,
        violations: Vec<FieldViolation>,
    },
    #[error("{message}")]
    NotFound {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A dependency did not answer; `reason` names it (`UNAVAILABLE` for the database).
    #[error("{message}")]
    Unavailable {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Unimplemented { message: String },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// `error` with `google.rpc.ErrorInfo.metadata` entries, where an RPC's contract names them
    /// (e.g. `max_groups` on GROUP_LIMIT_REACHED).
    #[error("{error}")]
    WithMetadata {
        error: Box<DomainError>,
        metadata: Vec<(&'static str, String)>,
    },
}

impl DomainError {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid_with(reason::INVALID_ARGUMENT, field, description)
    }

    /// One bad field, with a reason more specific than `INVALID_ARGUMENT`.
    pub fn invalid_with(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::InvalidArgument {
            reason,
            violations: vec![FieldViolation {
                field: field.into(),
                description: description.into(),
            }],
        }
    }

    /// `reason` is the resource's `<RESOURCE>_NOT_FOUND`.
    pub fn not_found(reason: &'static str, what: &str) -> Self {
        Self::NotFound {
            reason,
            message: format!("{what} not found"),
        }
    }

    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            reason,
            message: message.into(),
        }
    }

    pub fn etag_mismatch(what: &str) -> Self {
        Self::Aborted {
            reason: reason::ETAG_MISMATCH,
            message: format!("the {what} was changed by someone else; read it again and retry"),
        }
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::Internal(source.into())
    }

    /// Adds an `ErrorInfo.metadata` entry to this error.
    pub fn with_metadata(self, key: &'static str, value: impl Into<String>) -> Self {
        match self {
            Self::WithMetadata {
                error,
                mut metadata,
            } => {
                metadata.push((key, value.into()));
                Self::WithMetadata { error, metadata }
            }
            error => Self::WithMetadata {
                error: Box::new(error),
                metadata: vec![(key, value.into())],
            },
        }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
