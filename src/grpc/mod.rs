//! Transport only: one file per service. A handler validates the request (every bad field at
//! once), takes the `Actor` the authentication layer resolved, converts to domain input and calls
//! one domain function; `?` maps the domain error to a status.

pub mod access_service;
pub mod account_service;
pub mod audit_service;
pub mod auth_service;
pub mod authn;
pub mod callers;
pub mod convert;
pub mod group_service;
pub mod sso;
pub mod status;
pub mod user_service;

#[cfg(test)]
mod properties;

use crate::app::App;
use crate::proto;

pub fn account_service(
    app: &App,
) -> proto::account_service_server::AccountServiceServer<account_service::AccountApi> {
    proto::account_service_server::AccountServiceServer::new(account_service::AccountApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}

pub fn auth_service(
    app: &App,
) -> proto::auth_service_server::AuthServiceServer<auth_service::AuthApi> {
    proto::auth_service_server::AuthServiceServer::new(auth_service::AuthApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}

pub fn user_service(
    app: &App,
) -> proto::user_service_server::UserServiceServer<user_service::UserApi> {
    proto::user_service_server::UserServiceServer::new(user_service::UserApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}

pub fn group_service(
    app: &App,
) -> proto::group_service_server::GroupServiceServer<group_service::GroupApi> {
    proto::group_service_server::GroupServiceServer::new(group_service::GroupApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}

pub fn access_service(
    app: &App,
) -> proto::access_service_server::AccessServiceServer<access_service::AccessApi> {
    proto::access_service_server::AccessServiceServer::new(access_service::AccessApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}

pub fn audit_service(
    app: &App,
) -> proto::audit_service_server::AuditServiceServer<audit_service::AuditApi> {
    proto::audit_service_server::AuditServiceServer::new(audit_service::AuditApi::new(app))
        .max_decoding_message_size(app.config.max_request_bytes)
}
