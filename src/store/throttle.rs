//! The login throttle: one row per person with their failed password attempts in the current
//! window and, once past the free attempts, when the next may be made. The policy is
//! `domain::auth::login`'s (free attempts, window, waits); `count_attempt` compiles it into one
//! upsert, so counting an attempt is one statement whose row lock queues parallel attempts.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ConnectionTrait, EntityTrait,
    sea_query::{CaseStatement, Expr, ExprTrait, InsertStatement, OnConflict, Query},
};
use uuid::Uuid;

use super::entities::{login_throttle, user};
use super::{Store, Tx};
use crate::domain::auth::{Attempt, FAILURE_WINDOW, FREE_ATTEMPTS, MAX_LOCK, lock_after};
use crate::domain::error::DomainResult;

/// Whose login attempt is counted.
pub(super) enum AttemptBy<'a> {
    Person(Uuid),
    /// The person with this email, if there is one.
    EmailKey(&'a str),
}

/// One upsert that counts a login attempt on the person's throttle row, unless the person must
/// wait: then it changes nothing and returns no row. The upsert's row lock makes parallel
/// attempts queue, so they cannot pass the limit together.
pub(super) fn count_attempt(by: AttemptBy<'_>, now: DateTime<Utc>) -> InsertStatement {
    use login_throttle::Column as C;
    // In DO UPDATE, a column qualified by the table is the row's value before the attempt.
    let before = |column: C| Expr::col((login_throttle::Entity, column));
    // The window is measured from the last counted attempt.
    let window_over = before(C::WindowStartedAt).lt(now - FAILURE_WINDOW);
    let counted = before(C::Failures).add(1);
    let no_lock = Expr::value(Option::<DateTime<Utc>>::None);
    let mut lock = CaseStatement::new().case(window_over.clone(), no_lock.clone());
    let mut failures = FREE_ATTEMPTS;
    while lock_after(failures) < MAX_LOCK {
        lock = lock.case(counted.clone().eq(failures), now + lock_after(failures));
        failures += 1;
    }
    let lock = lock
        .case(counted.clone().gte(failures), now + MAX_LOCK)
        .finally(no_lock);
    let first = [
        Expr::value(1),
        Expr::value(now),
        Expr::value((lock_after(1) > Duration::zero()).then(|| now + lock_after(1))),
    ];
    let mut insert = Query::insert();
    insert.into_table(login_throttle::Entity).columns([
        C::UserId,
        C::Failures,
        C::WindowStartedAt,
        C::LockedUntil,
    ]);
    match by {
        AttemptBy::Person(user_id) => {
            insert.values_panic(std::iter::once(Expr::value(user_id)).chain(first));
        }
        AttemptBy::EmailKey(email_key) => {
            let mut person = Query::select();
            person
                .column(user::Column::Id)
                .exprs(first)
                .from(user::Entity)
                .and_where(Expr::col(user::Column::EmailKey).eq(email_key));
            // Infallible: the select gives as many columns as the insert names.
            let _ = insert.select_from(person);
        }
    }
    insert
        .on_conflict(
            OnConflict::column(C::UserId)
                .values([
                    (
                        C::Failures,
                        Expr::case(window_over, 1).finally(counted).into(),
                    ),
                    (C::WindowStartedAt, Expr::value(now)),
                    (C::LockedUntil, lock.into()),
                ])
                .action_and_where(
                    before(C::LockedUntil)
                        .is_null()
                        .or(before(C::LockedUntil).lte(now)),
                )
                .to_owned(),
        )
        .returning_col(C::UserId)
        .to_owned()
}

impl Store {
    /// Counts a login attempt before its password is checked. The attempt is counted as a
    /// failure until `clear_login_failures` says it succeeded, so parallel attempts cannot
    /// exceed the limit; while attempts are paused it is not counted, and the lock's end is read.
    pub async fn reserve_login_attempt(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> DomainResult<Attempt> {
        let attempt = count_attempt(AttemptBy::Person(user_id), now);
        let counted = self
            .db
            .query_one_raw(self.backend().build(&attempt))
            .await?;
        if counted.is_some() {
            return Ok(Attempt::Counted);
        }
        let locked_until = login_throttle::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .and_then(|row| row.locked_until);
        Ok(Attempt::Paused { locked_until })
    }

    /// A successful login forgets the failures.
    pub async fn clear_login_failures(&self, user_id: Uuid) -> DomainResult<()> {
        login_throttle::Entity::delete_by_id(user_id)
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

impl Tx {
    /// A new password forgets the failures.
    pub async fn clear_login_failures(&self, user_id: Uuid) -> DomainResult<()> {
        login_throttle::Entity::delete_by_id(user_id)
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
