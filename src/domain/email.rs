//! The emails this service sends, as data: what each kind carries, its name in the outbox and
//! what stays of it after delivery. How an email reads (subject, bodies) is `email::templates`.

use serde::{Deserialize, Serialize};

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_tag_is_the_kind_and_scrubbing_keeps_it() {
        let emails = [
            Email::Invitation {
                account_name: "Acme".into(),
                inviter: "Ada".into(),
                link: "https://app.example.com/i?token=SECRET".into(),
                expires_in_days: 7,
            },
            Email::AddedToAccount {
                account_name: "Acme".into(),
                inviter: "Ada".into(),
                link: "https://app.example.com/i?token=SECRET".into(),
                expires_in_days: 7,
            },
            Email::MfaCode {
                code: "SECRET".into(),
                expires_in_minutes: 10,
            },
            Email::PasswordReset {
                link: "https://app.example.com/r?token=SECRET".into(),
                expires_in_minutes: 30,
            },
            Email::PasswordChanged,
        ];
        for email in &emails {
            let json = serde_json::to_value(email).unwrap_or_default();
            assert_eq!(json["kind"], email.kind(), "{json}");
            let scrubbed = email.scrubbed();
            assert_eq!(scrubbed.kind(), email.kind());
            let kept = serde_json::to_string(&scrubbed).unwrap_or_default();
            assert!(!kept.contains("SECRET"), "{kept}");
            let read: Result<Email, _> = serde_json::from_str(&kept);
            assert_eq!(read.ok(), Some(scrubbed));
        }
    }
}
