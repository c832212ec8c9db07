//! Invitation links: what one offers, and its acceptance, which sets the password (or checks
//! it), activates the membership and logs in to its account.

use chrono::{DateTime, Utc};

use super::{Auth, hash_of};
use crate::app::audit;
use crate::auth::password::{self, Password};
use crate::domain::access_changes::AccessChange;
use crate::domain::audit::{Change, Draft, EventActor, Target, action};
use crate::domain::auth::links::{check_invitation, invitation_invalid};
use crate::domain::auth::{
    Client, FirstFactor, InvitationView, IssuedSession, invalid_credentials,
};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::users::{Member, MembershipStatus, user_not_found};

impl Auth {
    /// Describes an invitation link.
    pub async fn invitation(&self, token: &str) -> DomainResult<InvitationView> {
        self.invitation_at(token, self.clock.now()).await
    }

    /// Describes an invitation link as it stands at `now`.
    async fn invitation_at(&self, token: &str, now: DateTime<Utc>) -> DomainResult<InvitationView> {
        let invitation = self
            .store
            .find_invitation_by_token(&hash_of(token))
            .await?
            .ok_or_else(invitation_invalid)?;
        let member = self
            .store
            .member(invitation.account_id, invitation.user_id)
            .await?;
        let member = check_invitation(&invitation, member, now)?;
        let account_name = self
            .store
            .account(invitation.account_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        Ok(InvitationView {
            member,
            account_name,
            expires_at: invitation.expires_at,
        })
    }

    /// Accepts an invitation and logs in to its account. A person who has a password proves it
    /// (against the throttle); a new person sets one. The link is checked again in the unit of
    /// work that spends it, with the invitation locked, so it is accepted once.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: Password,
        display_name: Option<String>,
        client: Client,
    ) -> DomainResult<(Member, IssuedSession)> {
        let now = self.clock.now();
        let view = self.invitation_at(token, now).await?;
        let person = view.member.person;
        let new_hash = if person.has_password() {
            let anonymous = EventActor::anonymous();
            if !self
                .checked_password(&anonymous, &person, &password)
                .await?
            {
                return Err(invalid_credentials());
            }
            None
        } else {
            let name = display_name.as_deref().unwrap_or(&person.display_name);
            password::check_policy(&password, &person.email, name)
                .map_err(|e| DomainError::invalid("password", e))?;
            Some(self.hasher.hash(&password).await?)
        };
        // The account is locked before the invitation, the order every write of the account
        // takes (the access revision lives on the account row).
        let hash = hash_of(token);
        let peeked = self
            .store
            .find_invitation_by_token(&hash)
            .await?
            .ok_or_else(invitation_invalid)?;
        let tx = self.store.begin().await?;
        tx.lock_account(peeked.account_id)
            .await?
            .ok_or_else(invitation_invalid)?;
        let invitation = tx
            .lock_invitation(&hash)
            .await?
            .filter(|invitation| invitation.account_id == peeked.account_id)
            .ok_or_else(invitation_invalid)?;
        let (account_id, user_id) = (invitation.account_id, invitation.user_id);
        check_invitation(&invitation, tx.member(account_id, user_id).await?, now)?;
        tx.delete_invitation(account_id, user_id).await?;
        if !tx.activate_membership(account_id, user_id, now).await? {
            return Err(invitation_invalid());
        }
        if let Some(hash) = &new_hash {
            tx.set_password(user_id, hash, now).await?;
        }
        if let Some(name) = &display_name {
            tx.set_display_name(user_id, name).await?;
        }
        let person = tx.person(user_id).await?.ok_or_else(invitation_invalid)?;
        let choice = tx
            .active_membership(user_id, account_id)
            .await?
            .ok_or_else(invitation_invalid)?;
        tx.record_access_change(
            account_id,
            &[AccessChange::member(
                user_id,
                choice.membership.role,
                MembershipStatus::Active,
            )],
            now,
        )
        .await?;
        let draft = Draft::new(
            action::USER_INVITATION_ACCEPTED,
            EventActor::person(person.id, &person.email),
        )
        .target(Target::new("user", person.id, &person.email))
        .changes([Change::new("status", Some("invited"), Some("active"))])
        .meta("method", "invitation_link");
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        let factor = FirstFactor::InvitationLink;
        let session = self
            .start_session(&person, &choice, factor.amr(), factor.mfa_passed(), client)
            .await?;
        let member = self
            .store
            .member(account_id, user_id)
            .await?
            .ok_or_else(user_not_found)?;
        Ok((member, session))
    }
}
