//! The use cases: one function per operation. Each opens one unit of work (a `store::Tx`, with
//! the account row locked where an invariant lives on it), loads what the decision needs, lets
//! the domain decide, writes, and adds in the same unit of work what must commit with the change
//! (the outbox email; the access revision). The caller, an `Actor`, is known here.
//!
//! `App` is the service's state, built once: the transport takes its use cases from it, and the
//! server assembles the transport around it.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod auth;
pub mod groups;
pub mod sso;
pub mod users;

use std::sync::Arc;

use crate::auth::google::GoogleVerifier;
use crate::auth::password::PasswordHasher;
use crate::auth::{authenticator::Authenticator, keys::KeySet, service_tokens::ServiceTokens};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::consistency::ConsistencyTokens;
use crate::domain::page::PageTokens;
use crate::email::Mailer;
use crate::store::Store;

/// Everything a request may need, built once.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: SharedClock,
    pub keys: Arc<KeySet>,
    pub authenticator: Arc<Authenticator>,
    pub accounts: accounts::Accounts,
    pub users: users::Users,
    pub groups: groups::Groups,
    pub access: access::Access,
    pub audit: audit::Audit,
    pub auth: auth::Auth,
    pub sso: sso::Sso,
    /// Consistency tokens of writes that can change an access decision.
    pub consistency: ConsistencyTokens,
    pub mailer: Arc<dyn Mailer>,
}

impl App {
    pub fn new(
        config: Config,
        store: Store,
        clock: SharedClock,
        keys: KeySet,
        service_tokens: ServiceTokens,
        secret_key: Vec<u8>,
        mailer: Arc<dyn Mailer>,
    ) -> anyhow::Result<Self> {
        let keys = Arc::new(keys);
        let cache = access::cache::AccessCache::new(
            store.clone(),
            clock.clone(),
            config.access_token_ttl,
            config.access_staleness,
            config.access_cache_bytes,
        );
        let authenticator = Arc::new(Authenticator::new(
            keys.clone(),
            service_tokens,
            clock.clone(),
            cache.clone(),
        ));
        let google = match &config.google {
            Some(google) => Some(Arc::new(GoogleVerifier::new(google.clone())?)),
            None => None,
        };
        let pages = PageTokens::new(&secret_key);
        let consistency = ConsistencyTokens::new(&secret_key);
        let auth = auth::Auth::new(
            google,
            store.clone(),
            clock.clone(),
            keys.clone(),
            PasswordHasher::new(config.password_hash_concurrency)?,
            secret_key,
            pages.clone(),
            config.session_ttl,
            config.public_url.clone(),
        );
        let accounts = accounts::Accounts::new(
            store.clone(),
            clock.clone(),
            config.default_limits,
            config.public_url.clone(),
        );
        let users = users::Users::new(
            store.clone(),
            clock.clone(),
            pages.clone(),
            config.public_url.clone(),
        );
        let groups = groups::Groups::new(store.clone(), clock.clone(), pages.clone());
        let audit = audit::Audit::new(store.clone(), clock.clone(), pages.clone());
        let sso = sso::Sso::new(store.clone(), clock.clone(), config.public_url.clone());
        let access = access::Access::new(store.clone(), clock.clone(), pages, cache);
        Ok(Self {
            config: Arc::new(config),
            store,
            clock,
            keys,
            authenticator,
            accounts,
            users,
            groups,
            access,
            audit,
            auth,
            sso,
            consistency,
            mailer,
        })
    }
}

/// Queues `email` to `to` in the unit of work `tx`, and counts and logs it.
async fn queue(
    tx: &crate::store::Tx,
    account_id: Option<uuid::Uuid>,
    to: &str,
    email: &crate::domain::email::Email,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::domain::error::DomainResult<()> {
    let id = tx.queue_email(account_id, to, email, now).await?;
    crate::email::outbox::queued(id, email);
    Ok(())
}

/// Runs `create` (a future, so nothing runs until it is awaited) unless a request with the same
/// idempotency key already ran within the last 24 hours: then answers with what that one made
/// (`replay` reads it by id). Two concurrent requests with one key collide on the key, recorded
/// inside `create`'s unit of work: the loser answers with the winner's result.
async fn idempotent<T, R>(
    store: &Store,
    key: Option<&crate::store::idempotency::Idempotency>,
    now: chrono::DateTime<chrono::Utc>,
    replay: impl Fn(uuid::Uuid) -> R,
    create: impl Future<Output = crate::domain::error::DomainResult<T>>,
) -> crate::domain::error::DomainResult<T>
where
    R: Future<Output = crate::domain::error::DomainResult<T>>,
{
    use crate::domain::error::DomainError;
    let parse = |id: String| uuid::Uuid::parse_str(&id).map_err(DomainError::internal);
    let Some(key) = key else {
        return create.await;
    };
    if let Some(id) = store.replay(key, now).await? {
        return replay(parse(id)?).await;
    }
    match create.await {
        Err(err) if crate::store::idempotency::is_conflict(&err) => {
            let id = store.replay(key, now).await?.ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("lost the idempotency key"))
            })?;
            replay(parse(id)?).await
        }
        other => other,
    }
}
