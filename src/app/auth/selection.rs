//! The account choice after a first factor that fits several accounts: offered with a token,
//! made once within ten minutes.

use uuid::Uuid;

use super::{Auth, Secret, hash_of};
use crate::domain::auth::session::{check_selection, check_selection_mfa, selection_expired};
use crate::domain::auth::{
    ActiveMembership, Client, FirstFactor, IssuedSession, PendingSelection, Selection,
    invalid_credentials,
};
use crate::domain::error::{DomainError, DomainResult, reason};
use crate::domain::users::Person;

/// The chosen account is not one the person may enter now: never offered, or the membership was
/// disabled or removed since.
fn not_enterable() -> DomainError {
    DomainError::unauthenticated(
        reason::INVALID_CREDENTIALS,
        "this account cannot be entered: it was not offered, or the membership was disabled or \
         removed since; log in again",
    )
}

impl Auth {
    /// Offers `accounts` to `person`, who passed `factor`: stores the selection under its
    /// token's hash and returns the token.
    pub(super) async fn offer_selection(
        &self,
        person: &Person,
        factor: FirstFactor,
        accounts: &[ActiveMembership],
    ) -> DomainResult<Selection> {
        let token = Secret::new("sel_");
        let pending = PendingSelection::offer(person.id, factor, self.clock.now());
        self.store.create_selection(&token.hash, &pending).await?;
        Ok(Selection {
            token: token.token,
            expires_at: pending.expires_at,
            accounts: accounts.to_vec(),
        })
    }

    /// Finishes a login that offered several accounts. The selection is spent whatever the
    /// choice: a refused one means logging in again.
    pub async fn select_account(
        &self,
        token: &str,
        account_id: Uuid,
        client: Client,
    ) -> DomainResult<IssuedSession> {
        let token_hash = hash_of(token);
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let selection = tx
            .lock_selection(&token_hash)
            .await?
            .ok_or_else(selection_expired)?;
        check_selection(&selection, now)?;
        tx.consume_selection(&token_hash, now).await?;
        tx.commit().await?;
        let person = self
            .store
            .person(selection.user_id)
            .await?
            .ok_or_else(invalid_credentials)?;
        // What the first factor may enter: after Google, an invited membership too, which the
        // choice accepts.
        let factor = FirstFactor::of_amr(&selection.amr);
        let choice = self
            .store
            .memberships_in(person.id, factor.admits())
            .await?
            .into_iter()
            .find(|a| a.account.id == account_id)
            .ok_or_else(not_enterable)?;
        check_selection_mfa(&selection, &choice.account)?;
        let choice = self.accept_if_invited(&person, choice).await?;
        self.start_session(
            &person,
            &choice,
            selection.amr.clone(),
            selection.mfa_passed,
            client,
        )
        .await
    }
}
