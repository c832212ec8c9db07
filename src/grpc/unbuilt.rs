//! RPCs of the contract that this version does not serve yet. Each answers `UNIMPLEMENTED` with
//! reason `NOT_IMPLEMENTED` and says which capability is missing, so callers can code against the
//! whole contract today.

use tonic::Status;

use crate::domain::error::DomainError;

/// The status of an RPC that is part of the contract but not served by this version.
pub fn unbuilt(service: &str, rpc: &str, capability: &str) -> Status {
    DomainError::Unimplemented {
        message: format!(
            "identity.v1.{service}/{rpc} is not implemented in this version of the service: {capability} is not available yet"
        ),
    }
    .into()
}

/// Implements the listed RPCs of a service as `unbuilt`: `method(Rpc, RpcRequest, RpcResponse)`.
/// The methods are written in the shape `#[async_trait]` gives trait methods, because that
/// attribute does not look inside macro invocations.
#[macro_export]
macro_rules! unbuilt_rpcs {
    ($service:literal, $capability:literal: $($method:ident($rpc:ident, $req:ident, $resp:ident);)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: tonic::Request<$crate::proto::$req>,
            ) -> ::std::pin::Pin<Box<
                dyn ::std::future::Future<
                    Output = Result<tonic::Response<$crate::proto::$resp>, tonic::Status>,
                > + Send + 'async_trait,
            >>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    Err($crate::grpc::unbuilt($service, stringify!($rpc), $capability))
                })
            }
        )*
    };
}
