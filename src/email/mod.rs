//! Email: the transactional outbox (queued in the same transaction as the change that caused
//! it), the templates, the transports (Amazon SES, and a console transport for development), and
//! the worker that delivers due emails.

pub mod outbox;
pub mod ses;
pub mod templates;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{EmailConfig, MailerKind};

/// The transport `config` names: the one place a mailer is chosen.
pub async fn mailer_from_config(config: &EmailConfig) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match config.mailer {
        MailerKind::Console => Arc::new(ConsoleMailer),
        MailerKind::Ses => Arc::new(ses::SesMailer::new(config).await?),
    })
}

/// An email ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why a send failed: retried later, or never (a bad address, a rejected message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("temporary failure: {0}")]
    Retryable(String),
    #[error("rejected: {0}")]
    Permanent(String),
}

/// A transport. Returns the provider's message id. Implementations never log the body, links or
/// codes (the console transport, meant for a developer's terminal, is the one exception).
pub trait Mailer: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        email: &'a RenderedEmail,
    ) -> Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>>;
}

/// Prints every email to the log (development and tests). Links and codes are printed: this
/// transport exists so a developer can follow them; production uses SES.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleMailer;

/// One email as the console transport prints it: a record of its own between two marker lines
/// that name it, headers first, and nothing after the end marker (no fields trail the body).
fn console_record(id: &str, email: &RenderedEmail) -> String {
    format!(
        "email (console transport)\n===== BEGIN EMAIL {id} =====\nTo: {}\nSubject: {}\n\n{}\n===== END EMAIL {id} =====",
        email.to,
        email.subject,
        email.text.trim_end()
    )
}

impl Mailer for ConsoleMailer {
    fn send<'a>(
        &'a self,
        email: &'a RenderedEmail,
    ) -> Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>> {
        Box::pin(async move {
            let id = format!("console-{}", uuid::Uuid::now_v7());
            tracing::info!("{}", console_record(&id, email));
            Ok(id)
        })
    }
}
