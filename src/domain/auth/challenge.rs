//! Email codes: a challenge holds the hash of a six-digit code that is valid 10 minutes, dies
//! after 5 wrong tries or once passed, and may be sent again 5 times, at most every 30 seconds.

use chrono::{DateTime, Duration, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::mask_email;
use crate::domain::error::{DomainError, DomainResult, reason};

/// An email code is valid 10 minutes.
pub const CODE_TTL: Duration = Duration::minutes(10);
/// Wrong codes before a challenge dies, and resends per challenge.
pub const CODE_ATTEMPTS: i32 = 5;
pub const CODE_RESENDS: i32 = 5;
/// At most one code email per 30 seconds.
pub const RESEND_INTERVAL: Duration = Duration::seconds(30);

/// A pending email-code challenge as stored: its id and code as hashes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChallenge {
    pub id_hash: String,
    pub user_id: Uuid,
    pub account_id: Option<Uuid>,
    pub code_hash: String,
    pub code_expires_at: DateTime<Utc>,
    pub attempts_left: i32,
    pub resends_left: i32,
    pub last_sent_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
}

/// A pending email-code challenge as shown to the client.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub code_expires_at: DateTime<Utc>,
    pub masked_email: String,
    pub resend_at: DateTime<Utc>,
    pub resends_left: i32,
    pub attempts_left: i32,
}

impl Challenge {
    /// The client's view of a stored challenge whose id is `id`.
    pub fn view(id: String, row: &EmailChallenge, email: &str) -> Self {
        Self {
            id,
            code_expires_at: row.code_expires_at,
            masked_email: mask_email(email),
            resend_at: row.last_sent_at + RESEND_INTERVAL,
            resends_left: row.resends_left,
            attempts_left: row.attempts_left,
        }
    }
}

/// A new challenge of `user_id` (logging in to `account_id` when one is chosen), sent at `now`.
pub fn new_challenge(
    id_hash: String,
    user_id: Uuid,
    account_id: Option<Uuid>,
    code_hash: String,
    now: DateTime<Utc>,
) -> EmailChallenge {
    EmailChallenge {
        id_hash,
        user_id,
        account_id,
        code_hash,
        code_expires_at: now + CODE_TTL,
        attempts_left: CODE_ATTEMPTS,
        resends_left: CODE_RESENDS,
        last_sent_at: now,
        created_at: now,
        consumed_at: None,
    }
}

/// What a presented code does to its challenge; either way the new state is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code is right: the challenge is spent.
    Right(EmailChallenge),
    /// The code is wrong: one attempt fewer.
    Wrong(EmailChallenge),
}

/// Checks the code whose hash is `presented` (compared in constant time) against `challenge`.
/// `MFA_CHALLENGE_EXPIRED`, with nothing to store, when the challenge was passed, has no
/// attempt left or its code has expired.
pub fn verify_code(
    challenge: &EmailChallenge,
    presented: &str,
    now: DateTime<Utc>,
) -> DomainResult<CodeCheck> {
    if challenge.consumed_at.is_some()
        || challenge.attempts_left <= 0
        || challenge.code_expires_at <= now
    {
        return Err(challenge_expired());
    }
    let right: bool = presented
        .as_bytes()
        .ct_eq(challenge.code_hash.as_bytes())
        .into();
    Ok(if right {
        CodeCheck::Right(EmailChallenge {
            consumed_at: Some(now),
            ..challenge.clone()
        })
    } else {
        CodeCheck::Wrong(EmailChallenge {
            attempts_left: challenge.attempts_left - 1,
            ..challenge.clone()
        })
    })
}

/// The challenge with a new code (whose hash is `code_hash`), sent at `now`: the old code stops
/// working and the new one is valid `CODE_TTL`. Refused when the challenge is over
/// (`MFA_CHALLENGE_EXPIRED`), has no resend left (`MFA_RESEND_LIMIT_REACHED`) or was sent less
/// than `RESEND_INTERVAL` ago (`MFA_RESEND_TOO_SOON`, with the time to wait).
pub fn resend(
    challenge: &EmailChallenge,
    code_hash: String,
    now: DateTime<Utc>,
) -> DomainResult<EmailChallenge> {
    if challenge.consumed_at.is_some() || challenge.attempts_left <= 0 {
        return Err(challenge_expired());
    }
    if challenge.resends_left <= 0 {
        return Err(DomainError::ResourceExhausted {
            reason: reason::MFA_RESEND_LIMIT_REACHED,
            message: "no more codes can be sent for this login; log in again".to_owned(),
            retry_after: None,
        });
    }
    let next = challenge.last_sent_at + RESEND_INTERVAL;
    if now < next {
        return Err(DomainError::ResourceExhausted {
            reason: reason::MFA_RESEND_TOO_SOON,
            message: "a code was sent moments ago; wait before asking for another".to_owned(),
            retry_after: (next - now).to_std().ok(),
        });
    }
    Ok(EmailChallenge {
        code_hash,
        code_expires_at: now + CODE_TTL,
        last_sent_at: now,
        resends_left: challenge.resends_left - 1,
        ..challenge.clone()
    })
}

pub fn challenge_expired() -> DomainError {
    DomainError::FailedPrecondition {
        reason: reason::MFA_CHALLENGE_EXPIRED,
        message: "this code is no longer valid; log in again".to_owned(),
    }
}

/// A wrong code, with the attempts the challenge has left.
pub fn code_invalid(attempts_left: i32) -> DomainError {
    DomainError::unauthenticated(reason::MFA_CODE_INVALID, "the code is not correct")
        .with_metadata("attempts_remaining", attempts_left.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(now: DateTime<Utc>) -> EmailChallenge {
        new_challenge("id".into(), Uuid::now_v7(), None, "right".into(), now)
    }

    fn reason_of(err: &DomainError) -> &'static str {
        match err {
            DomainError::FailedPrecondition { reason, .. }
            | DomainError::ResourceExhausted { reason, .. }
            | DomainError::Unauthenticated { reason, .. } => reason,
            DomainError::WithMetadata { error, .. } => reason_of(error),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_challenge_has_its_attempts_and_resends() {
        let now = Utc::now();
        let c = challenge(now);
        assert_eq!(c.code_expires_at, now + CODE_TTL);
        assert_eq!((c.attempts_left, c.resends_left), (5, 5));
        assert_eq!(c.consumed_at, None);
    }

    #[test]
    fn codes_are_checked_against_the_challenge() {
        let start = Utc::now();
        let fresh = challenge(start);
        let consumed = EmailChallenge {
            consumed_at: Some(start),
            ..fresh.clone()
        };
        let spent = EmailChallenge {
            attempts_left: 0,
            ..fresh.clone()
        };
        let last_try = EmailChallenge {
            attempts_left: 1,
            ..fresh.clone()
        };
        let in_time = start + Duration::minutes(9);
        let late = start + CODE_TTL;
        // (challenge, presented, when, outcome: Ok(right, attempts left) or Err(reason))
        let table = [
            (&fresh, "right", in_time, Ok((true, 5))),
            (&fresh, "wrong", in_time, Ok((false, 4))),
            (&last_try, "wrong", in_time, Ok((false, 0))),
            (&last_try, "right", in_time, Ok((true, 1))),
            (&fresh, "right", late, Err(reason::MFA_CHALLENGE_EXPIRED)),
            (
                &consumed,
                "right",
                in_time,
                Err(reason::MFA_CHALLENGE_EXPIRED),
            ),
            (&spent, "right", in_time, Err(reason::MFA_CHALLENGE_EXPIRED)),
        ];
        for (n, (challenge, presented, now, expected)) in table.into_iter().enumerate() {
            let outcome = match verify_code(challenge, presented, now) {
                Ok(CodeCheck::Right(after)) => {
                    assert_eq!(after.consumed_at, Some(now), "row {n}");
                    Ok((true, after.attempts_left))
                }
                Ok(CodeCheck::Wrong(after)) => {
                    assert_eq!(after.consumed_at, None, "row {n}");
                    Ok((false, after.attempts_left))
                }
                Err(err) => Err(reason_of(&err)),
            };
            assert_eq!(outcome, expected, "row {n}");
        }
    }

    #[test]
    fn a_wrong_code_says_how_many_attempts_are_left() {
        match code_invalid(3) {
            DomainError::WithMetadata { error, metadata } => {
                assert_eq!(reason_of(&error), reason::MFA_CODE_INVALID);
                assert_eq!(metadata, [("attempts_remaining", "3".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resends_are_limited_and_spaced() {
        let start = Utc::now();
        let fresh = challenge(start);
        let none_left = EmailChallenge {
            resends_left: 0,
            ..fresh.clone()
        };
        let consumed = EmailChallenge {
            consumed_at: Some(start),
            ..fresh.clone()
        };
        let dead = EmailChallenge {
            attempts_left: 0,
            ..fresh.clone()
        };
        let soon = start + Duration::seconds(10);
        let later = start + RESEND_INTERVAL;
        // An expired code may be sent again: that is what a resend is for.
        let long_after = start + CODE_TTL + Duration::minutes(1);
        // (challenge, when, outcome: Ok(resends left) or Err(reason))
        let table = [
            (&fresh, later, Ok(4)),
            (&fresh, long_after, Ok(4)),
            (&fresh, soon, Err(reason::MFA_RESEND_TOO_SOON)),
            (&none_left, later, Err(reason::MFA_RESEND_LIMIT_REACHED)),
            (&consumed, later, Err(reason::MFA_CHALLENGE_EXPIRED)),
            (&dead, later, Err(reason::MFA_CHALLENGE_EXPIRED)),
        ];
        for (n, (challenge, now, expected)) in table.into_iter().enumerate() {
            let outcome = resend(challenge, "new".into(), now)
                .map(|after| {
                    assert_eq!(after.code_hash, "new", "row {n}");
                    assert_eq!(after.code_expires_at, now + CODE_TTL, "row {n}");
                    assert_eq!(after.last_sent_at, now, "row {n}");
                    after.resends_left
                })
                .map_err(|err| reason_of(&err));
            assert_eq!(outcome, expected, "row {n}");
        }
        match resend(&fresh, "new".into(), soon) {
            Err(DomainError::ResourceExhausted { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(20)))
            }
            other => panic!("{other:?}"),
        }
    }
}
