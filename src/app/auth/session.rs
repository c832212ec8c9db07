//! Sessions: refreshing one (its refresh token rotates, in one unit of work on the locked token
//! and session), ending the caller's own, and listing them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Auth, Secret, hash_of, person_of};
use crate::app::audit;
use crate::domain::actor::Actor;
use crate::domain::audit::{Draft, EventActor, Target, action};
use crate::domain::auth::session::{check_refresh_mfa, refresh_refusal};
use crate::domain::auth::{IssuedSession, RefreshRefusal, Session, session_revoked};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::page::{After, ListQuery, Page};

/// The event of a session that ended for `reason`.
fn session_ended(actor: EventActor, session: &Session, reason: &str) -> Draft {
    Draft::new(action::SESSION_REVOKED, actor)
        .target(Target::new("session", session.id, ""))
        .meta("user_id", session.user_id)
        .meta("reason", reason)
}

impl Auth {
    /// Rotates a refresh token into a new session token pair. The token is spent and its
    /// successor stored in one unit of work, with the token and its session locked: a token
    /// presented twice ends the session (someone else holds a copy). A member no longer
    /// ACTIVE ends the session; a password session without the code in an account that now
    /// enforces MFA is refused, its token spent.
    pub async fn refresh(&self, refresh_token: &str) -> DomainResult<IssuedSession> {
        let token_hash = hash_of(refresh_token);
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let Some((token, session)) = tx.lock_refresh_token(&token_hash).await? else {
            return Err(RefreshRefusal::Unknown.into());
        };
        if let Some(refusal) = refresh_refusal(&token, &session, now) {
            if refusal == RefreshRefusal::Reused {
                tx.revoke_session(session.id, "refresh_token_reused", now)
                    .await?;
                let draft =
                    session_ended(EventActor::anonymous(), &session, "refresh_token_reused");
                audit::append(&tx, session.account_id, now, [draft]).await?;
                tx.commit().await?;
            }
            return Err(refusal.into());
        }
        let person = tx
            .person(session.user_id)
            .await?
            .ok_or_else(session_revoked)?;
        let Some(choice) = tx.active_membership(person.id, session.account_id).await? else {
            tx.revoke_session(session.id, "membership_inactive", now)
                .await?;
            let draft = session_ended(EventActor::system(), &session, "membership_inactive");
            audit::append(&tx, session.account_id, now, [draft]).await?;
            tx.commit().await?;
            return Err(session_revoked());
        };
        tx.spend_refresh_token(&token_hash, now).await?;
        if let Err(refused) = check_refresh_mfa(&session, &choice.account) {
            tx.commit().await?;
            return Err(refused);
        }
        let next = Secret::new("rt_");
        tx.add_refresh_token(session.id, &next.hash, now).await?;
        tx.touch_session(session.id, now).await?;
        tx.commit().await?;
        self.sign(&person, session, next.token, choice.membership.role, now)
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, actor: &Actor) -> DomainResult<()> {
        let person = person_of(actor)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        if tx.revoke_session(person.session_id, "logout", now).await? {
            let draft = Draft::by(action::SESSION_REVOKED, actor)
                .target(Target::new("session", person.session_id, ""))
                .meta("reason", "logout");
            audit::append(&tx, person.account_id, now, [draft]).await?;
        }
        tx.commit().await
    }

    /// Ends one of the caller's own live sessions.
    pub async fn revoke_own_session(&self, actor: &Actor, session_id: Uuid) -> DomainResult<()> {
        let person = person_of(actor)?;
        let now = self.clock.now();
        let session = self.store.find_session(session_id).await?;
        let Some(session) = session.filter(|s| s.revocable_by(person.user_id, now)) else {
            return Err(DomainError::not_found(reason::SESSION_NOT_FOUND, "session"));
        };
        let tx = self.store.begin().await?;
        if tx
            .revoke_session(session_id, "revoked_by_user", now)
            .await?
        {
            let draft = session_ended(EventActor::of(actor), &session, "revoked_by_user");
            audit::append(&tx, session.account_id, now, [draft]).await?;
        }
        tx.commit().await
    }

    /// The caller's live sessions, newest first, one page, with each session's account name;
    /// and the id of the caller's own session.
    pub async fn list_sessions(
        &self,
        actor: &Actor,
        page_size: u64,
        page_token: &str,
    ) -> DomainResult<(Page<(Session, String)>, Uuid)> {
        let person = person_of(actor)?;
        let query = ListQuery::new("ListMySessions", &[&person.user_id.to_string()]);
        let after = match self.pages.decode(&query, page_token)? {
            None => None,
            Some(After { key, id }) => {
                let created = key
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_micros)
                    .ok_or_else(|| {
                        DomainError::internal(anyhow::anyhow!("bad session position"))
                    })?;
                Some((created, id))
            }
        };
        let rows = self
            .store
            .list_live_sessions(person.user_id, after, page_size + 1, self.clock.now())
            .await?;
        let page = self.pages.page(&query, rows, page_size, |(s, _)| After {
            key: s.created_at.timestamp_micros().to_string(),
            id: s.id,
        });
        Ok((page, person.session_id))
    }
}
