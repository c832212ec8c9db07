//! The Amazon SES transport (API v2, `SendEmail` with simple content: an HTML and a text part).
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity, ECS/EC2
//! roles). The SDK's own retries are off: the outbox retries with its own backoff, per row, so a
//! send is one HTTP call and its duration stays far inside the outbox's claim lease.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_config::{BehaviorVersion, ConfigLoader, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sesv2::{
    Client,
    config::Region,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::{RequestId, send_email::SendEmailError},
    types::{Body, Content, Destination, EmailContent, Message},
};
use tracing::Instrument;

use super::{Mailer, RenderedEmail, SendError};
use crate::config::EmailConfig;
use crate::telemetry::names;

/// How long one `SendEmail` call may take, connection included. The outbox's claim lease must
/// cover a whole batch of these (see `outbox::LEASE`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Stored reasons are cut to this many characters (a provider message can be long).
const MAX_REASON: usize = 500;

/// Sends through SES.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    /// The region the client calls, for its spans.
    region: String,
    from: String,
    reply_to: Vec<String>,
    configuration_set: Option<String>,
}

impl SesMailer {
    /// A mailer with credentials and region from the standard AWS chain, overridden by `config`.
    pub async fn new(config: &EmailConfig) -> Result<Self> {
        Self::with_loader(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// A mailer built from `loader` (for callers that must supply credentials themselves, such as
    /// an emulator in tests), with `config`'s region, endpoint and timeouts applied on top.
    pub async fn with_loader(config: &EmailConfig, mut loader: ConfigLoader) -> Result<Self> {
        let Some(from) = config.from.clone() else {
            bail!("the SES mailer needs IDENTITY_EMAIL_FROM");
        };
        if let Some(region) = &config.ses_region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.ses_endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(SEND_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let Some(region) = sdk.region().map(ToString::to_string) else {
            bail!("the SES mailer needs a region: set IDENTITY_SES_REGION (or AWS_REGION)");
        };
        Ok(Self {
            client: Client::new(&sdk),
            region,
            from,
            reply_to: config.reply_to.clone(),
            configuration_set: config.ses_configuration_set.clone(),
        })
    }

    async fn send_email(&self, email: &RenderedEmail) -> Result<String, SendError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
        };
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        // A client span by the conventions for AWS SDK calls. No address, subject or body: the
        // email's own span (the outbox's) names it by id and kind.
        let span = tracing::info_span!(
            "SESv2/SendEmail",
            otel.kind = "client",
            { names::RPC_SYSTEM } = "aws-api",
            { names::RPC_SERVICE } = "SESv2",
            { names::RPC_METHOD } = "SendEmail",
            { names::CLOUD_REGION } = %self.region,
            { names::AWS_REQUEST_ID } = tracing::field::Empty,
            { names::ERROR_TYPE } = tracing::field::Empty,
            { names::OTEL_STATUS_CODE } = tracing::field::Empty,
        );
        let sent = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .set_reply_to_addresses((!self.reply_to.is_empty()).then(|| self.reply_to.clone()))
            .set_configuration_set_name(self.configuration_set.clone())
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .instrument(span.clone())
            .await;
        let request_id = match &sent {
            Ok(output) => output.request_id(),
            Err(error) => error.request_id(),
        };
        if let Some(request_id) = request_id {
            span.record(names::AWS_REQUEST_ID, request_id);
        }
        if let Err(error) = &sent {
            span.record(names::ERROR_TYPE, error_type(error));
            span.record(names::OTEL_STATUS_CODE, "ERROR");
        }
        let output = sent.map_err(classify)?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }
}

impl Mailer for SesMailer {
    fn send<'a>(
        &'a self,
        email: &'a RenderedEmail,
    ) -> Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>> {
        Box::pin(self.send_email(email))
    }
}

/// A failed call's `error.type`: SES's error code (`MessageRejected`, `TooManyRequestsException`),
/// or the kind of failure when SES did not answer.
fn error_type(error: &SdkError<SendEmailError>) -> String {
    match error {
        SdkError::ServiceError(context) => context.err().code().unwrap_or("_OTHER").to_owned(),
        SdkError::TimeoutError(_) => "timeout".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timeout".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_io() => "connection_error".to_owned(),
        SdkError::DispatchFailure(_) => "dispatch_failure".to_owned(),
        SdkError::ResponseError(_) => "response_error".to_owned(),
        _ => "_OTHER".to_owned(),
    }
}

/// Sorts an SDK error into "retry later" and "never". The reason holds the error code and SES's
/// message, never the email's body.
///
/// Retryable: throttling and sending quotas, 5xx, timeouts, connection failures, and errors of our
/// own configuration that an operator can fix without losing mail (credentials refused, a missing
/// configuration set). Permanent: what SES says about this message or this sender (rejected
/// content or address, unverified MAIL FROM domain, bad request) and a suspended or paused account,
/// which needs a human in the SES console before anything is sent again.
pub fn classify(error: SdkError<SendEmailError>) -> SendError {
    let reason = |prefix: &str, detail: String| {
        let mut text = format!("{prefix}: {detail}");
        if text.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    };
    match error {
        SdkError::ServiceError(context) => {
            let status = Some(context.raw().status().as_u16());
            let error = context.into_err();
            let code = error.code().unwrap_or("Unknown").to_owned();
            let text = reason(&code, error.message().unwrap_or_default().to_owned());
            match &error {
                SendEmailError::MessageRejected(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::BadRequestException(_)
                | SendEmailError::AccountSuspendedException(_)
                | SendEmailError::SendingPausedException(_) => SendError::Permanent(text),
                SendEmailError::TooManyRequestsException(_)
                | SendEmailError::LimitExceededException(_)
                | SendEmailError::NotFoundException(_) => SendError::Retryable(text),
                _ => match (code.as_str(), status) {
                    ("Throttling" | "ThrottlingException" | "TooManyRequests", _) => {
                        SendError::Retryable(text)
                    }
                    (_, Some(status)) if status >= 500 || status == 429 => {
                        SendError::Retryable(text)
                    }
                    // Credentials refused or expired: the service's configuration, not the email.
                    (_, Some(401 | 403)) => SendError::Retryable(text),
                    (_, Some(_)) => SendError::Permanent(text),
                    (_, None) => SendError::Retryable(text),
                },
            }
        }
        SdkError::TimeoutError(_) => {
            SendError::Retryable(reason("timeout", "SES did not answer in time".to_owned()))
        }
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timeout"
            } else if failure.is_io() {
                "connection error"
            } else {
                "dispatch failure"
            };
            let detail = failure
                .as_connector_error()
                .map(|error| DisplayErrorContext(error).to_string())
                .unwrap_or_else(|| format!("{failure:?}"));
            SendError::Retryable(reason(kind, detail))
        }
        other => SendError::Retryable(reason(
            "SES call failed",
            DisplayErrorContext(&other).to_string(),
        )),
    }
}
