//! SAML single sign-on: each account's identity provider, the logins started and waiting for
//! their response, and the assertions already accepted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::OnConflict,
};
use uuid::Uuid;

use super::entities::{sso_assertion, sso_request, sso_setting};
use super::{Store, Tx};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::roles::Role;
use crate::domain::sso::{IdpCertificate, PendingRequest, SsoSettings};

fn corrupt(what: &str, err: impl std::fmt::Display) -> DomainError {
    DomainError::internal(anyhow::anyhow!("stored SSO {what} cannot be read: {err}"))
}

fn settings_of(row: sso_setting::Model) -> DomainResult<SsoSettings> {
    let idp_certificates: Vec<IdpCertificate> =
        serde_json::from_str(&row.idp_certificates).map_err(|e| corrupt("certificates", e))?;
    let names: BTreeMap<String, String> =
        serde_json::from_str(&row.role_mapping).map_err(|e| corrupt("role mapping", e))?;
    let role = |name: &str| Role::parse(name).ok_or_else(|| corrupt("role", name));
    let role_mapping = names
        .into_iter()
        .map(|(value, name)| Ok((value, role(&name)?)))
        .collect::<DomainResult<_>>()?;
    Ok(SsoSettings {
        account_id: row.account_id,
        enabled: row.enabled,
        idp_metadata_xml: row.idp_metadata_xml,
        idp_entity_id: row.idp_entity_id,
        idp_sso_url: row.idp_sso_url,
        idp_certificates,
        display_name_attribute: row.display_name_attribute,
        role_attribute: row.role_attribute,
        role_mapping,
        default_role: row.default_role.as_deref().map(role).transpose()?,
        allow_idp_initiated: row.allow_idp_initiated,
        version: row.version,
        updated_at: Some(row.updated_at),
    })
}

async fn settings_in(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
) -> DomainResult<Option<SsoSettings>> {
    sso_setting::Entity::find_by_id(account_id)
        .one(conn)
        .await?
        .map(settings_of)
        .transpose()
}

impl Store {
    /// The account's SSO settings, if it ever configured any.
    pub async fn sso_settings(&self, account_id: Uuid) -> DomainResult<Option<SsoSettings>> {
        settings_in(&self.db, account_id).await
    }

    /// Remembers a started login.
    pub async fn remember_sso_request(&self, request: &PendingRequest) -> DomainResult<()> {
        sso_request::Entity::insert(sso_request::ActiveModel {
            id: Set(request.id.clone()),
            account_id: Set(request.account_id),
            relay_state_hash: Set(request.relay_state_hash.clone()),
            expires_at: Set(request.expires_at),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets the started logins and accepted assertion ids whose time is over (housekeeping);
    /// returns how many.
    pub async fn delete_expired_sso(&self, now: DateTime<Utc>) -> DomainResult<u64> {
        let requests = sso_request::Entity::delete_many()
            .filter(sso_request::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let assertions = sso_assertion::Entity::delete_many()
            .filter(sso_assertion::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        Ok(requests.rows_affected + assertions.rows_affected)
    }

    /// Takes a started login: the one caller whose delete removes the row gets it, so a request
    /// is answered once across replicas.
    pub async fn take_sso_request(&self, id: &str) -> DomainResult<Option<PendingRequest>> {
        let Some(row) = sso_request::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let deleted = sso_request::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok((deleted.rows_affected == 1).then_some(PendingRequest {
            id: row.id,
            account_id: row.account_id,
            relay_state_hash: row.relay_state_hash,
            expires_at: row.expires_at,
        }))
    }
}

impl Tx {
    pub async fn sso_settings(&self, account_id: Uuid) -> DomainResult<Option<SsoSettings>> {
        settings_in(self.conn(), account_id).await
    }

    /// Writes the account's SSO settings (the account row is locked by the caller).
    pub async fn save_sso_settings(&self, settings: &SsoSettings) -> DomainResult<()> {
        let certificates =
            serde_json::to_string(&settings.idp_certificates).map_err(DomainError::internal)?;
        let mapping: BTreeMap<&str, &str> = settings
            .role_mapping
            .iter()
            .map(|(value, role)| (value.as_str(), role.as_str()))
            .collect();
        let mapping = serde_json::to_string(&mapping).map_err(DomainError::internal)?;
        let row = sso_setting::ActiveModel {
            account_id: Set(settings.account_id),
            enabled: Set(settings.enabled),
            idp_metadata_xml: Set(settings.idp_metadata_xml.clone()),
            idp_entity_id: Set(settings.idp_entity_id.clone()),
            idp_sso_url: Set(settings.idp_sso_url.clone()),
            idp_certificates: Set(certificates),
            display_name_attribute: Set(settings.display_name_attribute.clone()),
            role_attribute: Set(settings.role_attribute.clone()),
            role_mapping: Set(mapping),
            default_role: Set(settings.default_role.map(|r| r.as_str().to_owned())),
            allow_idp_initiated: Set(settings.allow_idp_initiated),
            version: Set(settings.version),
            updated_at: Set(settings.updated_at.unwrap_or_default()),
        };
        sso_setting::Entity::insert(row)
            .on_conflict(
                OnConflict::column(sso_setting::Column::AccountId)
                    .update_columns([
                        sso_setting::Column::Enabled,
                        sso_setting::Column::IdpMetadataXml,
                        sso_setting::Column::IdpEntityId,
                        sso_setting::Column::IdpSsoUrl,
                        sso_setting::Column::IdpCertificates,
                        sso_setting::Column::DisplayNameAttribute,
                        sso_setting::Column::RoleAttribute,
                        sso_setting::Column::RoleMapping,
                        sso_setting::Column::DefaultRole,
                        sso_setting::Column::AllowIdpInitiated,
                        sso_setting::Column::Version,
                        sso_setting::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(())
    }

    /// Remembers an accepted assertion id until `expires_at`; `false` when it was accepted
    /// before (a replay), on any replica. An assertion is refused by its time before its id is
    /// forgotten, so housekeeping may delete the row any time after.
    pub async fn remember_assertion(
        &self,
        account_id: Uuid,
        assertion_id: &str,
        expires_at: DateTime<Utc>,
    ) -> DomainResult<bool> {
        let inserted = sso_assertion::Entity::insert(sso_assertion::ActiveModel {
            account_id: Set(account_id),
            assertion_id: Set(assertion_id.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            OnConflict::columns([
                sso_assertion::Column::AccountId,
                sso_assertion::Column::AssertionId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        Ok(inserted == 1)
    }
}
