//! What each kind of email says. The data (`domain::email::Email`) is stored in the outbox as
//! JSON; its secret fields (links with tokens, codes) are wiped from the row once the email is
//! delivered (or given up on).
//!
//! The bodies are Askama templates (`src/email/templates/`), compiled into the binary: a template
//! that names a missing field or variant fails the build, not a delivery at 3 a.m.

use askama::Template;

use super::RenderedEmail;
pub use crate::domain::email::Email;

/// The subject line (plain text: SES encodes it, nothing is escaped).
fn subject(email: &Email) -> String {
    match email {
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

/// `email` to `to`: subject, HTML part (every value escaped) and text part, from the templates
/// in `src/email/templates/`. Fails only if a template cannot be written, which the outbox
/// records as a permanent failure.
pub fn render(email: &Email, to: &str) -> Result<RenderedEmail, RenderError> {
    let subject = subject(email);
    let html = HtmlBody {
        email,
        subject: &subject,
    }
    .render()
    .map_err(|e| RenderError(e.to_string()))?;
    let text = TextBody { email }
        .render()
        .map_err(|e| RenderError(e.to_string()))?;
    Ok(RenderedEmail {
        to: to.to_owned(),
        subject,
        text,
        html,
    })
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
        super::render(email, "new@acme.test").unwrap_or_else(|e| unreachable!("{e}"))
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
