//! The generated `identity.v1` messages, clients and servers, and the descriptor set that
//! reflection serves.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("identity.v1");
    }
}

pub use identity::v1::*;

/// The encoded `FileDescriptorSet` of every `identity.v1` file (for server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));
