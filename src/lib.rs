//! plumbline: a gRPC sidecar that ranks backlog items by the value they are
//! expected to deliver, and explains why.
//!
//! Data flows one way (ARCHITECTURE.md has the map and its invariants):
//! tracker HTTP -> [`sync`] -> [`engine`] (the use cases) -> [`store`] +
//! in-memory [`index`] -> [`score`] / [`refine`] -> [`api`] (gRPC) -> clients.
//!
//! - [`domain`]: plain types of the value model; no I/O.
//! - [`model`]: the value model file format (TOML), read and written; no I/O.
//! - [`score`]: the explained score, pure.
//! - [`refine`]: splitting, goal roll-ups, value validation, pure.
//! - [`index`]: every item's score and the two rankings, in memory; a write
//!   rescores only the items it reaches.
//! - [`store`]: the `Store` trait and its SQLite backend.
//! - [`engine`]: keeps the store and the index in step; answers reads in
//!   view types.
//! - [`sync`]: pulls items from trackers, one connector per tracker, and
//!   writes split slices back.
//! - [`api`]: the gRPC services, one file per proto service.
//! - [`server`] and [`lifecycle`]: wiring, and the one stop signal every
//!   long task listens to.
//! - [`outbound`]: which token variables and hosts sources may use.
//! - [`auth`]: who may call: API tokens with roles, checked by one tower
//!   layer.
//! - [`limits`]: what one client may consume: connections, calls, streams.
//! - [`chart`]: a metric's trend drawn for the terminal and as SVG, pure.
//! - [`config`] and [`cli`]: settings and the command line.
//! - [`web`]: the refinement room, HTML pages served by `serve` on its
//!   own listener.
//! - [`tls`]: TLS and mutual TLS on the listener and in the CLI, and the
//!   refusal to open a non-loopback port with neither auth nor TLS.

pub mod api;
pub mod auth;
pub mod chart;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod history;
pub mod index;
pub mod lease;
pub mod lifecycle;
pub mod limits;
pub mod metric_source;
pub mod model;
pub mod outbound;
pub mod pg;
pub mod refine;
pub mod score;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;
pub mod web;

/// Code generated from `proto/plumbline/v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("plumbline.v1");

    /// The encoded descriptors of plumbline's protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("plumbline_descriptor");
}
