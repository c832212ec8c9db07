//! Logging in: the per-person throttle on password attempts, the first factor and the step that
//! follows it (the email code, an account choice or a session), and turning personal MFA off.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ActiveMembership;
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::{Member, MembershipStatus, Person};

/// Failed logins allowed in a window before attempts must wait.
pub const FREE_ATTEMPTS: i32 = 5;
/// Failures older than this are forgotten.
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);
/// The longest wait between attempts.
pub const MAX_LOCK: Duration = Duration::minutes(15);

/// How long a person must wait after `failures` failures in the window (0 while under the limit):
/// 30 s at the fifth, doubling with each further failure, at most 15 minutes.
pub fn lock_after(failures: i32) -> Duration {
    if failures < FREE_ATTEMPTS {
        return Duration::zero();
    }
    let doublings = Ord::min(failures - FREE_ATTEMPTS, 10) as u32;
    Ord::min(Duration::seconds(30) * 2i32.pow(doublings), MAX_LOCK)
}

/// Password attempts of one person checked at once: as many as may still fail before the pause
/// (at least one), so parallel guesses cannot pass the limit together.
pub fn checks_allowed(failures: i32) -> i32 {
    Ord::max(FREE_ATTEMPTS - failures, 1)
}

/// Attempts being checked are forgotten after this long (a replica stopped during the check).
pub const IN_FLIGHT_EXPIRY: Duration = Duration::seconds(30);
/// How long an attempt waits for others' checks to end before it is refused as throttled.
pub const BUSY_WAIT: Duration = Duration::seconds(10);

/// A password attempt against the person's throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Admitted: the password may be checked; a mismatch is then recorded as a failure.
    Admitted,
    /// Attempts are paused until `until`.
    Paused { until: DateTime<Utc> },
    /// As many attempts as may still fail are being checked: ask again when one ends.
    Busy,
}

impl Attempt {
    /// An attempt the throttle did not admit, with the lock's end as the throttle row read it:
    /// paused while locked, otherwise waiting for the checks under way.
    pub fn refused(locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Attempt {
        match locked_until {
            Some(until) if until > now => Attempt::Paused { until },
            _ => Attempt::Busy,
        }
    }

    /// How long a refused attempt should wait before the next: until the lock ends (at least a
    /// second), or a second when other checks are still under way.
    pub fn wait(self, now: DateTime<Utc>) -> Option<Duration> {
        match self {
            Attempt::Admitted => None,
            Attempt::Paused { until } => Some(Ord::max(until - now, Duration::seconds(1))),
            Attempt::Busy => Some(Duration::seconds(1)),
        }
    }
}

/// The first step of a password login: the person with their ACTIVE memberships, and their
/// attempt against the throttle.
#[derive(Debug)]
pub struct PasswordLogin {
    pub person: Person,
    pub accounts: Vec<ActiveMembership>,
    pub attempt: Attempt,
}

/// How a person proved who they are, before an account is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFactor {
    /// The password, the email code not yet passed.
    Password,
    /// The password, then the emailed code.
    PasswordAndCode,
    /// An invitation link with the password: the emailed link proves control of the address, so
    /// it counts as the second factor.
    InvitationLink,
    /// A Google ID token: the identity provider's own MFA stands in for the email code.
    Google,
    /// A SAML assertion of the account's identity provider, which does its own MFA.
    Saml,
}

impl FirstFactor {
    /// The session's authentication methods.
    pub fn amr(self) -> Vec<String> {
        let methods: &[&str] = match self {
            FirstFactor::Password => &["pwd"],
            FirstFactor::PasswordAndCode => &["pwd", "otp"],
            FirstFactor::InvitationLink => &["pwd", "email"],
            FirstFactor::Google => &["google"],
            FirstFactor::Saml => &["saml"],
        };
        methods.iter().map(|m| (*m).to_owned()).collect()
    }

    /// How a session was opened, as the audit log names it.
    pub fn name(self) -> &'static str {
        match self {
            FirstFactor::Password => "password",
            FirstFactor::PasswordAndCode => "password+email_code",
            FirstFactor::InvitationLink => "invitation_link",
            FirstFactor::Google => "google",
            FirstFactor::Saml => "saml",
        }
    }

    /// Whether the session counts as having passed MFA.
    pub fn mfa_passed(self) -> bool {
        self != FirstFactor::Password
    }

    /// The memberships this factor logs in to. An identity provider's verified email proves the
    /// address as the invitation link would, so a Google login may also enter an invited
    /// membership, which it accepts; a password enters active ones only.
    pub fn admits(self) -> &'static [MembershipStatus] {
        match self {
            FirstFactor::Google => &[MembershipStatus::Active, MembershipStatus::Invited],
            _ => &[MembershipStatus::Active],
        }
    }

    /// The factor behind a session or selection's `amr`.
    pub fn of_amr(amr: &[String]) -> FirstFactor {
        let has = |m: &str| amr.iter().any(|a| a == m);
        if has("google") {
            FirstFactor::Google
        } else if has("saml") {
            FirstFactor::Saml
        } else if has("email") {
            FirstFactor::InvitationLink
        } else if has("otp") {
            FirstFactor::PasswordAndCode
        } else {
            FirstFactor::Password
        }
    }
}

/// What follows a successful first factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep<'a> {
    /// The email code, for the account chosen so far (none while several are offered).
    Code { account_id: Option<Uuid> },
    /// A session in this account.
    Session(&'a ActiveMembership),
    /// A choice among the accounts offered.
    Select,
}

/// The step after `factor` for `person`, who may log in to `accounts` and asked for `requested`
/// (if any). `None` when there is nothing to log in to: no account, or not the one requested.
///
/// The email code is asked after a password alone when the person turned MFA on, when several
/// accounts are offered (the choice itself is protected), or when the chosen account enforces it.
pub fn next_step<'a>(
    factor: FirstFactor,
    person: &Person,
    accounts: &'a [ActiveMembership],
    requested: Option<Uuid>,
) -> Option<NextStep<'a>> {
    let chosen = match requested {
        Some(id) => Some(accounts.iter().find(|a| a.account.id == id)?),
        None => match accounts {
            [] => return None,
            [only] => Some(only),
            _ => None,
        },
    };
    let needs_code = !factor.mfa_passed()
        && (person.mfa_enabled
            || accounts.len() > 1
            || chosen.is_some_and(|c| c.account.enforce_mfa));
    Some(match (needs_code, chosen) {
        (true, chosen) => NextStep::Code {
            account_id: chosen.map(|c| c.account.id),
        },
        (false, Some(choice)) => NextStep::Session(choice),
        (false, None) => NextStep::Select,
    })
}

/// Refuses to turn personal MFA off while the member's account enforces it.
pub fn check_mfa_off(member: &Member) -> DomainResult<()> {
    if member.enforce_mfa {
        return Err(DomainError::FailedPrecondition {
            reason: reason::MFA_ENFORCED,
            message: "your account's administrator requires the email code for everyone".to_owned(),
        });
    }
    Ok(())
}

pub fn throttled(wait: Duration) -> DomainError {
    DomainError::ResourceExhausted {
        reason: reason::LOGIN_THROTTLED,
        message: "too many failed attempts; wait before trying again".to_owned(),
        retry_after: wait.to_std().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{account, active, id, person};
    use super::*;

    #[test]
    fn a_factor_is_read_back_from_its_amr_and_admits_its_memberships() {
        use FirstFactor::*;
        // (factor, memberships it logs in to)
        let table: [(FirstFactor, &[MembershipStatus]); 4] = [
            (Password, &[MembershipStatus::Active]),
            (PasswordAndCode, &[MembershipStatus::Active]),
            (InvitationLink, &[MembershipStatus::Active]),
            (
                Google,
                &[MembershipStatus::Active, MembershipStatus::Invited],
            ),
        ];
        for (factor, admits) in table {
            assert_eq!(FirstFactor::of_amr(&factor.amr()), factor);
            assert_eq!(factor.admits(), admits, "{factor:?}");
        }
    }

    #[test]
    fn waits_grow_to_fifteen_minutes() {
        // (failures in the window, wait)
        let table = [
            (0, Duration::zero()),
            (4, Duration::zero()),
            (5, Duration::seconds(30)),
            (6, Duration::minutes(1)),
            (9, Duration::minutes(8)),
            (10, Duration::minutes(15)),
            (40, Duration::minutes(15)),
        ];
        for (failures, wait) in table {
            assert_eq!(lock_after(failures), wait, "{failures}");
        }
    }

    #[test]
    fn a_refused_attempt_waits_for_the_lock_or_a_second() {
        let now = Utc::now();
        let refused = |locked_until| Attempt::refused(locked_until, now);
        // (attempt, wait)
        let table = [
            (Attempt::Admitted, None),
            (
                refused(Some(now + Duration::seconds(40))),
                Some(Duration::seconds(40)),
            ),
            (
                refused(Some(now + Duration::milliseconds(10))),
                Some(Duration::seconds(1)),
            ),
            (refused(Some(now)), Some(Duration::seconds(1))),
            (
                refused(Some(now - Duration::seconds(5))),
                Some(Duration::seconds(1)),
            ),
            (refused(None), Some(Duration::seconds(1))),
        ];
        for (attempt, wait) in table {
            assert_eq!(attempt.wait(now), wait, "{attempt:?}");
        }
        assert_eq!(refused(None), Attempt::Busy);
        assert_eq!(refused(Some(now)), Attempt::Busy);
    }

    #[test]
    fn checks_at_once_are_the_failures_left_and_at_least_one() {
        // (failures in the window, checks at once)
        for (failures, checks) in [(0, 5), (1, 4), (4, 1), (5, 1), (9, 1)] {
            assert_eq!(checks_allowed(failures), checks, "{failures}");
        }
    }

    #[test]
    fn factors_name_their_methods() {
        use FirstFactor::*;
        // (factor, amr, MFA passed)
        let table = [
            (Password, vec!["pwd"], false),
            (PasswordAndCode, vec!["pwd", "otp"], true),
            (InvitationLink, vec!["pwd", "email"], true),
            (Google, vec!["google"], true),
        ];
        for (factor, amr, passed) in table {
            assert_eq!(factor.amr(), amr, "{factor:?}");
            assert_eq!(factor.mfa_passed(), passed, "{factor:?}");
        }
    }

    /// What `next_step` returns, without the account.
    #[derive(Debug, PartialEq, Eq)]
    enum Step {
        Nothing,
        Code { chosen: bool },
        Session,
        Select,
    }

    #[test]
    fn the_code_is_asked_after_a_password_alone_when_a_rule_wants_it() {
        use FirstFactor::*;
        // (factor, personal MFA, accounts (their enforcement), requested (index, or an unknown
        // account), step)
        type Row = (
            FirstFactor,
            bool,
            &'static [bool],
            Option<Option<usize>>,
            Step,
        );
        let table: &[Row] = &[
            (Password, false, &[false], None, Step::Session),
            (Password, true, &[false], None, Step::Code { chosen: true }),
            (Password, false, &[true], None, Step::Code { chosen: true }),
            (
                Password,
                false,
                &[false, false],
                None,
                Step::Code { chosen: false },
            ),
            (
                Password,
                false,
                &[false, false],
                Some(Some(1)),
                Step::Code { chosen: true },
            ),
            (Password, false, &[], None, Step::Nothing),
            (Password, false, &[false], Some(None), Step::Nothing),
            (PasswordAndCode, true, &[true], None, Step::Session),
            (PasswordAndCode, false, &[false, true], None, Step::Select),
            (
                PasswordAndCode,
                false,
                &[false, true],
                Some(Some(1)),
                Step::Session,
            ),
            (Google, true, &[true], None, Step::Session),
            (Google, false, &[false, false], None, Step::Select),
            (Google, false, &[false, false], Some(Some(0)), Step::Session),
            (Google, false, &[], None, Step::Nothing),
        ];
        let now = Utc::now();
        for (factor, mfa_enabled, enforced, requested, expected) in table {
            let person = person(*mfa_enabled);
            let accounts: Vec<_> = enforced
                .iter()
                .map(|enforce| active(&person, account(*enforce), now))
                .collect();
            let requested =
                requested.map(|index| index.map_or_else(id, |i| accounts[i].account.id));
            let step = match next_step(*factor, &person, &accounts, requested) {
                None => Step::Nothing,
                Some(NextStep::Code { account_id }) => {
                    if let (Some(id), Some(wanted)) = (account_id, requested) {
                        assert_eq!(id, wanted);
                    }
                    Step::Code {
                        chosen: account_id.is_some(),
                    }
                }
                Some(NextStep::Session(choice)) => {
                    assert!(requested.is_none_or(|id| id == choice.account.id));
                    Step::Session
                }
                Some(NextStep::Select) => Step::Select,
            };
            assert_eq!(
                &step, expected,
                "{factor:?} mfa={mfa_enabled} {enforced:?} {requested:?}"
            );
        }
    }

    #[test]
    fn personal_mfa_stays_on_where_the_account_enforces_it() {
        let now = Utc::now();
        let person = person(true);
        let membership = active(&person, account(true), now).membership;
        let mut member = Member {
            person,
            membership,
            invitation_expires_at: None,
            enforce_mfa: true,
        };
        assert!(check_mfa_off(&member).is_err());
        member.enforce_mfa = false;
        assert!(check_mfa_off(&member).is_ok());
    }
}
