//! plumbline: a gRPC sidecar that ranks backlog items by the value they are
//! expected to deliver, and explains why.
//!
//! Data flows one way: [`store`] -> in-memory [`index`] -> [`score`] ->
//! [`api`] (gRPC). The [`engine`] keeps the store and the index in step.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod index;
pub mod refine;
pub mod score;
pub mod server;
pub mod store;
pub mod sync;

/// Code generated from `proto/plumbline/v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("plumbline.v1");

    /// The encoded descriptors of plumbline's protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("plumbline_descriptor");
}
