//! The login throttle: one row per person with their failed password attempts in the current
//! window, when the next may be made once past the free attempts, and the attempts being checked.
//! The policy is `domain::auth::login`'s (free attempts, window, waits, checks at once);
//! `reserve_attempt` and `record_failure` compile it into one upsert each, whose row lock queues
//! parallel attempts.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, EntityTrait,
    sea_query::{CaseStatement, Expr, ExprTrait, InsertStatement, OnConflict, Query, SimpleExpr},
};
use uuid::Uuid;

use super::entities::{login_throttle, user};
use super::{Store, Tx};
use crate::domain::auth::{
    Attempt, FAILURE_WINDOW, FREE_ATTEMPTS, IN_FLIGHT_EXPIRY, MAX_LOCK, checks_allowed, lock_after,
};
use crate::domain::error::DomainResult;

/// Whose login attempt is counted.
pub(super) enum AttemptBy<'a> {
    Person(Uuid),
    /// The person with this email, if there is one.
    EmailKey(&'a str),
}

use login_throttle::Column as C;

/// In DO UPDATE, a column qualified by the table is the row's value before the statement.
fn before(column: C) -> Expr {
    Expr::col((login_throttle::Entity, column))
}

/// The failures of the window before this statement: none once the window is over (it is
/// measured from the last failure).
fn failures_before(now: DateTime<Utc>) -> SimpleExpr {
    Expr::case(window_over(now), 0)
        .finally(before(C::Failures))
        .into()
}

fn window_over(now: DateTime<Utc>) -> SimpleExpr {
    before(C::WindowStartedAt).lt(now - FAILURE_WINDOW)
}

/// Whether the checks counted in `in_flight` are so old that their replica must have stopped.
fn in_flight_expired(now: DateTime<Utc>) -> SimpleExpr {
    before(C::InFlightSince)
        .is_null()
        .or(before(C::InFlightSince).lt(now - IN_FLIGHT_EXPIRY))
}

/// An insert of the person's row with `values` after the person's id: for one person, or for the
/// person with an email (nothing when there is none).
fn insert_row(by: AttemptBy<'_>, values: [SimpleExpr; 5]) -> InsertStatement {
    let mut insert = Query::insert();
    insert.into_table(login_throttle::Entity).columns([
        C::UserId,
        C::Failures,
        C::WindowStartedAt,
        C::LockedUntil,
        C::InFlight,
        C::InFlightSince,
    ]);
    match by {
        AttemptBy::Person(user_id) => {
            insert.values_panic(std::iter::once(Expr::value(user_id)).chain(values));
        }
        AttemptBy::EmailKey(email_key) => {
            let mut person = Query::select();
            person
                .column(user::Column::Id)
                .exprs(values)
                .from(user::Entity)
                .and_where(Expr::col(user::Column::EmailKey).eq(email_key));
            // Infallible: the select gives as many columns as the insert names.
            let _ = insert.select_from(person);
        }
    }
    insert
}

/// One upsert that admits a login attempt to have its password checked: unless attempts are
/// paused, or as many as may still fail (`checks_allowed`) are being checked already. Then it
/// changes nothing and returns no row.
pub(super) fn reserve_attempt(by: AttemptBy<'_>, now: DateTime<Utc>) -> InsertStatement {
    let no_time = || Expr::value(Option::<DateTime<Utc>>::None);
    let first = [
        Expr::value(0),
        Expr::value(now),
        no_time(),
        Expr::value(1),
        Expr::value(now),
    ];
    let in_flight: SimpleExpr = Expr::case(in_flight_expired(now), 0)
        .finally(before(C::InFlight))
        .into();
    // `in_flight < checks_allowed(failures)`, the domain's rule compiled as `lock_after` is below:
    // one arm per failure count under the limit, past it the last value holds.
    let mut allowed = CaseStatement::new();
    for failures in 0..FREE_ATTEMPTS {
        allowed = allowed.case(failures_before(now).eq(failures), checks_allowed(failures));
    }
    let allowed = allowed.finally(checks_allowed(FREE_ATTEMPTS));
    let room = in_flight.clone().lt(allowed);
    let unlocked = before(C::LockedUntil)
        .is_null()
        .or(before(C::LockedUntil).lte(now));
    insert_row(by, first)
        .on_conflict(
            OnConflict::column(C::UserId)
                .values([
                    (C::InFlight, in_flight.add(1)),
                    (C::InFlightSince, Expr::value(now)),
                ])
                .action_and_where(unlocked.and(room))
                .to_owned(),
        )
        .returning_col(C::UserId)
        .to_owned()
}

/// One upsert that records a checked password as a failure: the count of the window, the wait it
/// brings (`lock_after`), and one check fewer under way.
pub(super) fn record_failure(user_id: Uuid, now: DateTime<Utc>) -> InsertStatement {
    let counted = failures_before(now).add(1);
    let mut lock = CaseStatement::new();
    let mut failures = FREE_ATTEMPTS;
    while lock_after(failures) < MAX_LOCK {
        lock = lock.case(counted.clone().eq(failures), now + lock_after(failures));
        failures += 1;
    }
    let lock = lock
        .case(counted.clone().gte(failures), now + MAX_LOCK)
        .finally(Expr::value(Option::<DateTime<Utc>>::None));
    let first = [
        Expr::value(1),
        Expr::value(now),
        Expr::value((lock_after(1) > chrono::Duration::zero()).then(|| now + lock_after(1))),
        Expr::value(0),
        Expr::value(Option::<DateTime<Utc>>::None),
    ];
    let in_flight = Expr::case(before(C::InFlight).gt(0), before(C::InFlight).sub(1)).finally(0);
    insert_row(AttemptBy::Person(user_id), first)
        .on_conflict(
            OnConflict::column(C::UserId)
                .values([
                    (C::Failures, counted),
                    (C::WindowStartedAt, Expr::value(now)),
                    (C::LockedUntil, lock.into()),
                    (C::InFlight, in_flight.into()),
                ])
                .to_owned(),
        )
        .to_owned()
}

impl Store {
    /// Asks the throttle to admit a password attempt before its hash is computed (see
    /// `reserve_attempt`); a refused attempt reads the lock's end.
    pub async fn reserve_login_attempt(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<Attempt> {
        let attempt = reserve_attempt(AttemptBy::Person(user_id), now);
        let admitted = self
            .db
            .query_one_raw(self.backend().build(&attempt))
            .await?;
        if admitted.is_some() {
            return Ok(Attempt::Admitted);
        }
        let locked_until = login_throttle::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .and_then(|row| row.locked_until);
        Ok(Attempt::refused(locked_until, now))
    }

    /// A successful login forgets the failures (and the checks under way with them).
    pub async fn clear_login_failures(&self, user_id: Uuid) -> DomainResult<()> {
        login_throttle::Entity::delete_by_id(user_id)
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

impl Tx {
    /// An admitted attempt's password did not match: recorded in this unit of work (with its
    /// audit event).
    pub async fn record_login_failure(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let backend = self.conn().get_database_backend();
        self.conn()
            .execute_raw(backend.build(&record_failure(user_id, now)))
            .await?;
        Ok(())
    }

    /// A new password forgets the failures.
    pub async fn clear_login_failures(&self, user_id: Uuid) -> DomainResult<()> {
        login_throttle::Entity::delete_by_id(user_id)
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
