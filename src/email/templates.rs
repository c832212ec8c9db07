//! What each kind of email says. The data is stored in the outbox as JSON; `secret` fields (links
//! with tokens, codes) are wiped from the row once the email is delivered.

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

    pub fn render(&self, to: &str) -> RenderedEmail {
        let (subject, lines) = match self {
            Email::Invitation {
                account_name,
                inviter,
                link,
                expires_in_days,
            } => (
                format!("{inviter} invited you to {account_name}"),
                vec![
                    format!("{inviter} invited you to the {account_name} account."),
                    format!("Set your password to get started: {link}"),
                    format!(
                        "The link works once and expires in {expires_in_days} days. You can also log in with Google using this email address."
                    ),
                ],
            ),
            Email::AddedToAccount {
                account_name,
                inviter,
                link,
                expires_in_days,
            } => (
                format!("{inviter} added you to {account_name}"),
                vec![
                    format!("{inviter} added you to the {account_name} account."),
                    format!("Accept with your existing password: {link}"),
                    format!("The link works once and expires in {expires_in_days} days."),
                ],
            ),
            Email::MfaCode {
                code,
                expires_in_minutes,
            } => (
                format!("Your login code: {code}"),
                vec![
                    format!("Your login code is {code}."),
                    format!(
                        "It expires in {expires_in_minutes} minutes and works once. If you did not try to log in, change your password."
                    ),
                ],
            ),
            Email::PasswordReset {
                link,
                expires_in_minutes,
            } => (
                "Reset your password".to_owned(),
                vec![
                    format!("Choose a new password: {link}"),
                    format!(
                        "The link works once and expires in {expires_in_minutes} minutes. If you did not ask for it, ignore this email."
                    ),
                ],
            ),
            Email::PasswordChanged => (
                "Your password was changed".to_owned(),
                vec![
                    "Your password was just changed, and your other sessions were signed out."
                        .to_owned(),
                    "If this was not you, reset your password now and contact your administrator."
                        .to_owned(),
                ],
            ),
        };
        let text = lines.join("\n\n");
        let html = lines
            .iter()
            .map(|line| format!("<p>{}</p>", html_escape(line)))
            .collect::<String>();
        RenderedEmail {
            to: to.to_owned(),
            subject,
            text,
            html,
        }
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitations_carry_the_link_until_scrubbed() {
        let email = Email::Invitation {
            account_name: "Acme <Media>".into(),
            inviter: "Ada".into(),
            link: "https://app.example.com/invitations/accept?token=SECRET".into(),
            expires_in_days: 7,
        };
        let rendered = email.render("new@acme.test");
        assert_eq!(rendered.subject, "Ada invited you to Acme <Media>");
        assert!(rendered.text.contains("token=SECRET"));
        assert!(rendered.html.contains("Acme &lt;Media&gt;"));
        let kept = serde_json::to_string(&email.scrubbed()).unwrap();
        assert!(!kept.contains("SECRET"));
    }
}
