//! The one mapping from domain errors to gRPC statuses, with `google.rpc.ErrorInfo` (stable
//! reason), `BadRequest` field violations and `RetryInfo`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::error::{DomainError, reason};

/// How long a caller told UNAVAILABLE waits before retrying (RetryInfo); back off from there.
const UNAVAILABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "identity";

/// A status with its `ErrorInfo`.
pub(super) fn status(code: Code, reason: &str, message: String) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new()),
    )
}

impl From<DomainError> for Status {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::InvalidArgument { reason, violations } => {
                let message = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut details = ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::<String, String>::new(),
                );
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            DomainError::NotFound { reason, message } => status(Code::NotFound, reason, message),
            DomainError::AlreadyExists { reason, message } => {
                status(Code::AlreadyExists, reason, message)
            }
            DomainError::FailedPrecondition { reason, message } => {
                status(Code::FailedPrecondition, reason, message)
            }
            DomainError::Aborted { reason, message } => status(Code::Aborted, reason, message),
            DomainError::Unauthenticated { reason, message } => {
                status(Code::Unauthenticated, reason, message)
            }
            DomainError::PermissionDenied { reason, message } => {
                status(Code::PermissionDenied, reason, message)
            }
            DomainError::ResourceExhausted {
                reason,
                message,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::<String, String>::new(),
                );
                if retry_after.is_some() {
                    details.set_retry_info(retry_after);
                }
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            DomainError::Unavailable { reason, message } => {
                let mut details = ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::<String, String>::new(),
                );
                details.set_retry_info(Some(UNAVAILABLE_RETRY));
                Status::with_error_details(Code::Unavailable, message, details)
            }
            DomainError::Unimplemented { message } => {
                status(Code::Unimplemented, reason::NOT_IMPLEMENTED, message)
            }
            DomainError::WithMetadata { error, metadata } => {
                let status = Status::from(*error);
                let mut details = status.get_error_details();
                let (reason, mut entries) = details
                    .error_info()
                    .map(|info| (info.reason.clone(), info.metadata.clone()))
                    .unwrap_or_default();
                entries.extend(metadata.into_iter().map(|(k, v)| (k.to_owned(), v)));
                details.set_error_info(reason, ERROR_DOMAIN, entries);
                Status::with_error_details(status.code(), status.message(), details)
            }
            DomainError::Internal(source) => {
                // The cause goes to the log (with the request's trace id), never to the caller.
                tracing::error!(error = format!("{source:#}"), "internal error");
                status(
                    Code::Internal,
                    reason::INTERNAL,
                    "internal error".to_owned(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_become_bad_request_details() {
        let status = Status::from(DomainError::InvalidArgument {
            reason: reason::INVALID_ARGUMENT,
            violations: vec![
                crate::domain::error::FieldViolation {
                    field: "name".into(),
                    description: "is required".into(),
                },
                crate::domain::error::FieldViolation {
                    field: "email".into(),
                    description: "must be an email address".into(),
                },
            ],
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "email"]);
    }

    #[test]
    fn internal_errors_reveal_nothing() {
        let status = Status::from(DomainError::internal(anyhow::anyhow!(
            "connection to postgres://user:secret@db failed"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn metadata_is_added_to_the_error_info() {
        let status = Status::from(
            DomainError::ResourceExhausted {
                reason: "GROUP_LIMIT_REACHED",
                message: "at most 5 groups".into(),
                retry_after: None,
            }
            .with_metadata("max_groups", "5"),
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "at most 5 groups");
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "GROUP_LIMIT_REACHED");
        assert_eq!(
            info.metadata.get("max_groups").map(String::as_str),
            Some("5")
        );
    }

    #[test]
    fn throttling_carries_retry_info() {
        let status = Status::from(DomainError::ResourceExhausted {
            reason: "LOGIN_THROTTLED",
            message: "too many attempts".into(),
            retry_after: Some(std::time::Duration::from_secs(30)),
        });
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(30))
        );
    }
}
