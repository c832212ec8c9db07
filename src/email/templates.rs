//! What each kind of email says. The data is stored in the outbox as JSON; `secret` fields (links
//! with tokens, codes) are wiped from the row once the email is delivered (or given up on).
//!
//! The bodies are Askama templates (`src/email/templates/`), compiled into the binary: a template
//! that names a missing field or variant fails the build, not a delivery at 3 a.m.

use askama::Template;
use serde::{Deserialize, Serialize};

use super::RenderedEmail;

/// The emails this service sends, with their data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Email {
    /// A new person: set a password through the link.
    Invitation {
        account_name: String,
        inviter: String,
        link: String,
        expires_in_days: i64,
    },
    /// A person who already has a password was added to another account.
    AddedToAccount {
        account_name: String,
        inviter: String,
        link: String,
        expires_in_days: i64,
    },
    /// The one-time code of a login (email MFA).
    MfaCode {
        code: String,
        expires_in_minutes: i64,
    },
    /// A password reset link.
    PasswordReset {
        link: String,
        expires_in_minutes: i64,
    },
    /// The password was changed (or reset): a notice, so a person who did not do it can react.
    PasswordChanged,
}

impl Email {
    pub fn kind(&self) -> &'static str {
        match self {
            Email::Invitation { .. } => "invitation",
            Email::AddedToAccount { .. } => "added_to_account",
            Email::MfaCode { .. } => "mfa_code",
            Email::PasswordReset { .. } => "password_reset",
            Email::PasswordChanged => "password_changed",
        }
    }

    /// The same email with its secrets removed: what stays in the outbox after delivery.
    pub fn scrubbed(&self) -> Email {
        const GONE: &str = "[delivered]";
        let mut copy = self.clone();
        match &mut copy {
            Email::Invitation { link, .. }
            | Email::AddedToAccount { link, .. }
            | Email::PasswordReset { link, .. } => *link = GONE.to_owned(),
            Email::MfaCode { code, .. } => *code = GONE.to_owned(),
            Email::PasswordChanged => {}
        }
        copy
    }

    /// The subject line (plain text: SES encodes it, nothing is escaped).
    fn subject(&self) -> String {
        match self {
            Email::Invitation {
                account_name,
                inviter,
                ..
            } => format!("{inviter} invited you to {account_name}"),
            Email::AddedToAccount {
                account_name,
                inviter,
                ..
            } => format!("{inviter} added you to {account_name}"),
            Email::MfaCode { code, .. } => format!("Your login code: {code}"),
            Email::PasswordReset { .. } => "Reset your password".to_owned(),
            Email::PasswordChanged => "Your password was changed".to_owned(),
        }
    }

    /// The email to `to`: subject, HTML part (every value escaped) and text part, from the
    /// templates in `src/email/templates/`. Fails only if a template cannot be written, which the
    /// outbox records as a permanent failure.
    pub fn render(&self, to: &str) -> Result<RenderedEmail, RenderError> {
        let subject = self.subject();
        let html = HtmlBody {
            email: self,
            subject: &subject,
        }
        .render()
        .map_err(|e| RenderError(e.to_string()))?;
        let text = TextBody { email: self }
            .render()
            .map_err(|e| RenderError(e.to_string()))?;
        Ok(RenderedEmail {
            to: to.to_owned(),
            subject,
            text,
            html,
        })
    }
}

/// A template could not be rendered (a bug, never the recipient's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error: {0}")]
pub struct RenderError(String);

/// The HTML part: `.html` templates escape every value.
#[derive(Template)]
#[template(path = "body.html", config = "src/email/askama.toml")]
struct HtmlBody<'a> {
    email: &'a Email,
    subject: &'a str,
}

/// The text part: plain text, nothing escaped (a reader sees the characters as written).
#[derive(Template)]
#[template(path = "body.txt", config = "src/email/askama.toml")]
struct TextBody<'a> {
    email: &'a Email,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(email: &Email) -> RenderedEmail {
        email
            .render("new@acme.test")
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn invitations_carry_the_link_until_scrubbed() {
        let email = Email::Invitation {
            account_name: "Acme <Media>".into(),
            inviter: "Ada & Co".into(),
            link: "https://app.example.com/invitations/accept?token=SECRET&x=1".into(),
            expires_in_days: 7,
        };
        let rendered = render(&email);
        assert_eq!(rendered.to, "new@acme.test");
        assert_eq!(rendered.subject, "Ada & Co invited you to Acme <Media>");
        // The text part is plain text: nothing escaped, the link on a line of its own.
        assert!(
            rendered
                .text
                .starts_with("Ada & Co invited you to the Acme <Media> account.")
        );
        assert!(
            rendered
                .text
                .lines()
                .any(|line| line == "https://app.example.com/invitations/accept?token=SECRET&x=1"),
            "{}",
            rendered.text
        );
        // The HTML part escapes every value, the link included.
        assert!(
            rendered.html.contains("Acme &#60;Media&#62;")
                || rendered.html.contains("Acme &lt;Media&gt;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<Media>"));
        assert!(
            rendered.html.contains("token=SECRET&#38;x=1")
                || rendered.html.contains("token=SECRET&amp;x=1"),
            "{}",
            rendered.html
        );
        let kept = serde_json::to_string(&email.scrubbed()).unwrap_or_default();
        assert!(!kept.contains("SECRET"));
    }

    #[test]
    fn every_kind_renders_both_parts() {
        let link = "https://app.example.com/x?token=T0KEN".to_owned();
        let emails = [
            Email::Invitation {
                account_name: "Acme".into(),
                inviter: "Ada".into(),
                link: link.clone(),
                expires_in_days: 7,
            },
            Email::AddedToAccount {
                account_name: "Acme".into(),
                inviter: "Ada".into(),
                link: link.clone(),
                expires_in_days: 7,
            },
            Email::MfaCode {
                code: "123456".into(),
                expires_in_minutes: 10,
            },
            Email::PasswordReset {
                link: link.clone(),
                expires_in_minutes: 30,
            },
            Email::PasswordChanged,
        ];
        for email in &emails {
            let rendered = render(email);
            assert!(!rendered.subject.is_empty());
            assert!(
                rendered.html.starts_with("<!DOCTYPE html>"),
                "{}",
                rendered.html
            );
            assert!(!rendered.text.contains('<'), "{}", rendered.text);
            assert!(!rendered.text.trim().is_empty());
            match email {
                Email::MfaCode { .. } => {
                    assert!(rendered.text.contains("123456"));
                    assert!(rendered.html.contains("123456"));
                }
                Email::PasswordChanged => assert!(!rendered.text.contains("T0KEN")),
                _ => {
                    assert!(rendered.text.contains(&link), "{}", rendered.text);
                    assert!(
                        rendered
                            .html
                            .contains("href=\"https://app.example.com/x?token=T0KEN\""),
                        "{}",
                        rendered.html
                    );
                }
            }
        }
    }
}
