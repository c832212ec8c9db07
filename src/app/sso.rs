//! AccountService's SSO settings: what an administrator configures of the account's identity
//! provider, and what they copy into it of ours.

use uuid::Uuid;

use crate::auth::saml;
use crate::clock::SharedClock;
use crate::domain::accounts::AccountChange;
use crate::domain::actor::{Actor, MANAGE_USERS};
use crate::domain::audit::{Change, Draft, Target, action};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sso::{self as rules, SsoChange, SsoSettings};
use crate::store::Store;

use super::audit;
use super::users::lock_account;

/// The settings with the service provider's side of them.
#[derive(Debug, Clone)]
pub struct SsoView {
    pub settings: SsoSettings,
    pub sp_entity_id: String,
    pub sp_acs_url: String,
    pub sp_metadata_xml: String,
}

#[derive(Clone)]
pub struct Sso {
    store: Store,
    clock: SharedClock,
    public_url: String,
}

impl Sso {
    pub fn new(store: Store, clock: SharedClock, public_url: String) -> Self {
        Self {
            store,
            clock,
            public_url,
        }
    }

    fn view(&self, settings: SsoSettings) -> SsoView {
        let sp_entity_id = rules::sp_entity_id(&self.public_url, settings.account_id);
        let sp_acs_url = rules::acs_url(&self.public_url, settings.account_id);
        SsoView {
            sp_metadata_xml: saml::sp_metadata(&sp_entity_id, &sp_acs_url),
            sp_entity_id,
            sp_acs_url,
            settings,
        }
    }

    /// The account's settings; an account that never configured SSO has them empty and off.
    pub async fn get(&self, actor: &Actor, account_id: Uuid) -> DomainResult<SsoView> {
        actor.authorize(account_id, MANAGE_USERS)?;
        if self.store.account(account_id).await?.is_none() {
            return Err(crate::domain::accounts::account_not_found());
        }
        let settings = self
            .store
            .sso_settings(account_id)
            .await?
            .unwrap_or_else(|| SsoSettings::unconfigured(account_id));
        Ok(self.view(settings))
    }

    /// Applies `change` if the settings are still at `etag`, under the account lock; the
    /// account's own etag moves on too, and the change is recorded.
    pub async fn update(
        &self,
        actor: &Actor,
        account_id: Uuid,
        change: SsoChange,
        etag: Option<i64>,
    ) -> DomainResult<SsoView> {
        actor.authorize(account_id, MANAGE_USERS)?;
        let now = self.clock.now();
        let tx = self.store.begin().await?;
        let account = lock_account(&tx, account_id).await?;
        let current = tx
            .sso_settings(account_id)
            .await?
            .unwrap_or_else(|| SsoSettings::unconfigured(account_id));
        if etag.is_some_and(|version| version != current.version) {
            return Err(DomainError::etag_mismatch("SSO settings"));
        }
        let next = current.apply(change, now)?;
        tx.save_sso_settings(&next).await?;
        tx.update_account(account_id, &AccountChange::default(), now)
            .await?;
        let changes = current
            .changes_to(&next)
            .into_iter()
            .map(|(field, before, after)| Change::new(field, Some(before), Some(after)));
        let draft = Draft::by(action::ACCOUNT_SSO_SETTINGS_CHANGED, actor)
            .target(Target::new("account", account_id, &account.name))
            .changes(changes);
        audit::append(&tx, account_id, now, [draft]).await?;
        tx.commit().await?;
        Ok(self.view(next))
    }
}
