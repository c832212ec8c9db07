//! Emailed links: password resets (valid an hour, used once, one email a minute) and
//! invitations (valid while the member is invited and the link is neither replaced nor expired).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::{Invitation, Member, MembershipStatus};

/// Reset links work 1 hour; one email per person per minute.
pub const RESET_TTL: Duration = Duration::hours(1);
pub const RESET_INTERVAL: Duration = Duration::minutes(1);

/// A password reset link as stored: its token as a hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub token_hash: String,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// A new reset link of `user_id`, made at `now` and valid `RESET_TTL`.
pub fn new_reset(token_hash: String, user_id: Uuid, now: DateTime<Utc>) -> PasswordReset {
    PasswordReset {
        token_hash,
        user_id,
        expires_at: now + RESET_TTL,
        created_at: now,
        used_at: None,
    }
}

/// Whether a reset email may be sent at `now`, the person's last link having been made at
/// `last` (if ever): at most one a minute. A refusal is silent, as the request's answer must not
/// tell known and unknown emails apart.
pub fn may_send_reset(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|last| now - last >= RESET_INTERVAL)
}

/// The reset link (`None` when there is none) if it may be used at `now`; refused when it is
/// unknown or used (`RESET_TOKEN_INVALID`) or has expired (`RESET_TOKEN_EXPIRED`).
pub fn check_reset(
    reset: Option<PasswordReset>,
    now: DateTime<Utc>,
) -> DomainResult<PasswordReset> {
    let reset = reset.ok_or_else(reset_invalid)?;
    if reset.used_at.is_some() {
        return Err(reset_invalid());
    }
    if reset.expires_at <= now {
        return Err(DomainError::FailedPrecondition {
            reason: reason::RESET_TOKEN_EXPIRED,
            message: "this reset link has expired; ask for a new one".to_owned(),
        });
    }
    Ok(reset)
}

/// The invited member of an invitation link (`None` when there is none) if the link may be used
/// at `now`; refused when it has expired (`INVITATION_EXPIRED`) or the member is no longer
/// invited (`INVITATION_INVALID`).
pub fn check_invitation(
    invitation: &Invitation,
    member: Option<Member>,
    now: DateTime<Utc>,
) -> DomainResult<Member> {
    if invitation.expires_at <= now {
        return Err(DomainError::FailedPrecondition {
            reason: reason::INVITATION_EXPIRED,
            message: "this invitation has expired; ask an administrator to send a new one"
                .to_owned(),
        });
    }
    match member {
        Some(member) if member.membership.status == MembershipStatus::Invited => Ok(member),
        _ => Err(invitation_invalid()),
    }
}

pub fn reset_invalid() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::RESET_TOKEN_INVALID,
        message: "this reset link is not valid; ask for a new one".to_owned(),
    }
}

pub fn invitation_invalid() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::INVITATION_INVALID,
        message: "this invitation link is not valid; it may have been used or replaced".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{account, active, id, person};
    use super::*;
    use crate::domain::users;

    fn reason_of<T>(result: DomainResult<T>) -> Option<&'static str> {
        match result {
            Ok(_) => None,
            Err(DomainError::FailedPrecondition { reason, .. }) => Some(reason),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn reset_emails_wait_a_minute() {
        let now = Utc::now();
        // (last link made, may send)
        let table = [
            (None, true),
            (Some(now - Duration::seconds(59)), false),
            (Some(now - RESET_INTERVAL), true),
            (Some(now - Duration::hours(2)), true),
        ];
        for (last, allowed) in table {
            assert_eq!(may_send_reset(last, now), allowed, "{last:?}");
        }
    }

    #[test]
    fn reset_links_work_once_within_an_hour() {
        let made = Utc::now();
        let fresh = new_reset("hash".into(), id(), made);
        assert_eq!(fresh.expires_at, made + RESET_TTL);
        let used = PasswordReset {
            used_at: Some(made),
            ..fresh.clone()
        };
        // (link, when, refusal)
        let table = [
            (Some(&fresh), made + Duration::minutes(59), None),
            (
                Some(&fresh),
                made + RESET_TTL,
                Some(reason::RESET_TOKEN_EXPIRED),
            ),
            (Some(&used), made, Some(reason::RESET_TOKEN_INVALID)),
            // A used link says it is invalid, expired or not.
            (
                Some(&used),
                made + RESET_TTL,
                Some(reason::RESET_TOKEN_INVALID),
            ),
            (None, made, Some(reason::RESET_TOKEN_INVALID)),
        ];
        for (n, (reset, now, refusal)) in table.into_iter().enumerate() {
            assert_eq!(
                reason_of(check_reset(reset.cloned(), now)),
                refusal,
                "row {n}"
            );
        }
    }

    #[test]
    fn invitations_are_valid_while_the_member_is_invited() {
        let now = Utc::now();
        let person = person(false);
        let mut membership = active(&person, account(false), now).membership;
        membership.status = MembershipStatus::Invited;
        let invitation =
            users::invitation(membership.account_id, person.id, "hash".into(), None, now);
        let member = |status| Member {
            person: person.clone(),
            membership: users::Membership {
                status,
                ..membership.clone()
            },
            invitation_expires_at: None,
            enforce_mfa: false,
        };
        let (invited, active_member) = (
            member(MembershipStatus::Invited),
            member(MembershipStatus::Active),
        );
        let late = now + users::INVITATION_TTL;
        // (member, when, refusal)
        let table = [
            (Some(invited.clone()), now, None),
            (Some(invited), late, Some(reason::INVITATION_EXPIRED)),
            (Some(active_member), now, Some(reason::INVITATION_INVALID)),
            (None, now, Some(reason::INVITATION_INVALID)),
            // Expiry is told first, whoever the member is.
            (None, late, Some(reason::INVITATION_EXPIRED)),
        ];
        for (n, (member, when, refusal)) in table.into_iter().enumerate() {
            assert_eq!(
                reason_of(check_invitation(&invitation, member, when)),
                refusal,
                "row {n}"
            );
        }
    }
}
