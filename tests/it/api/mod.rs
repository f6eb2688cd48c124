//! Every RPC of the resource services, through the generated clients
//! against a real server with a temporary SQLite file, including the error
//! codes and the `google.rpc.BadRequest` field violations. One module per
//! resource.

mod goals;
mod hypotheses;
mod incremental;
mod items;
mod links;
mod masks;
mod metrics;
mod regressions;
mod scoring;
mod sources;
mod untrusted;
