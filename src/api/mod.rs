//! The gRPC face of plumbline: validate requests, translate between proto and
//! domain types, call the [`Engine`](crate::engine::Engine), and map its
//! errors to `tonic::Status` in one place.

mod apply;
mod backlog;
mod convert;
mod customer;
mod history;
mod insight;
mod mask;
mod page;
mod pull;
mod ranking;
mod rollup;
mod scoring;
mod source;
mod split;
mod sync;
mod token;
mod validation;
mod value_model;
mod watch;

pub use apply::ModelFileApi;
pub use backlog::BacklogApi;
pub use convert::{from_timestamp, importance_to_pb, timestamp};
pub use customer::CustomerApi;
pub use history::HistoryApi;
pub use insight::InsightApi;
pub use rollup::RollupApi;
pub use scoring::ScoringApi;
pub use source::SourceApi;
pub use split::SplitApi;
pub use sync::SyncApi;
pub use token::{TokenApi, role_from_pb, token_to_pb};
pub use validation::ValidationApi;
pub use value_model::ValueModelApi;
pub use watch::Watchers;

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::{Error, FieldViolation, StoreError};

/// What a unary handler returns.
type Reply<T> = std::result::Result<Response<T>, Status>;

/// The one mapping from engine errors to gRPC statuses, so that a handler
/// ends its engine calls in `?`. Invalid input carries
/// `google.rpc.BadRequest` field violations naming each bad field.
impl From<Error> for Status {
    fn from(err: Error) -> Status {
        match err {
            Error::InvalidArgument(violations) => invalid(violations),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Store(e) => {
                // A store that cannot write logs one error line when that
                // starts; each call it fails is a warning.
                if crate::store::WriteHealth::after(&e).is_some() {
                    tracing::warn!(error = %chain(&e), "write refused by the store");
                } else {
                    tracing::error!(error = %chain(&e), "storage failure");
                }
                match e {
                    // Both pass: another process lets go of the file, or the
                    // next server is up. Clients retry UNAVAILABLE.
                    StoreError::Busy { .. } | StoreError::Closed => {
                        Status::unavailable("the database is busy or closing; retry shortly")
                    }
                    // Space can come back (an operator frees it), as with
                    // a quota: the write may succeed later.
                    StoreError::Full { .. } => Status::resource_exhausted(
                        "the database is full; the operator must free disk space \
                         (or raise [store] max_size_mib) before writes succeed",
                    ),
                    // Neither passes by retrying: an operator must act, so
                    // not UNAVAILABLE, which clients retry.
                    StoreError::ReadOnly { .. } => Status::failed_precondition(
                        "the database is read-only; the operator must make it writable \
                         before writes succeed",
                    ),
                    // The database cannot be reached (a PostgreSQL server
                    // down or cut off, a file that cannot be opened): it
                    // may come back by itself; health says NOT_SERVING.
                    StoreError::Unavailable { .. } => Status::unavailable(
                        "the database cannot be reached; retry shortly (health says NOT_SERVING until it can)",
                    ),
                    StoreError::Gone { .. } => Status::failed_precondition(
                        "the database file was deleted or replaced while the server ran; \
                         no write is accepted until the operator restarts the server",
                    ),
                    _ => Status::internal("storage failure; see the server log"),
                }
            }
        }
    }
}

/// An error with its sources, outermost first (`a: b: c`), for the log: the
/// driver's own words are in the sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Most field violations one status names. The message and the details
/// travel in HTTP/2 headers, which clients cap (16 KiB by default in many):
/// a batch of 1000 bad items would otherwise turn INVALID_ARGUMENT into a
/// RESOURCE_EXHAUSTED on the client. The first ones are enough to fix.
pub(crate) const MAX_VIOLATIONS: usize = 20;
/// Most bytes of field and description text one status carries, for the
/// same reason: twenty long descriptions (a value model file's, each with
/// its place) would pass 16 KiB once the message is percent-encoded and the
/// details base64-encoded, and the client would see a broken stream.
pub(crate) const MAX_VIOLATION_BYTES: usize = 2048;

/// The violations one status names: at most [`MAX_VIOLATIONS`] and
/// [`MAX_VIOLATION_BYTES`] of text (the first always, its description cut
/// to fit), and how many were left out.
pub(crate) fn bounded_violations(
    mut violations: Vec<FieldViolation>,
) -> (Vec<FieldViolation>, usize) {
    let total = violations.len();
    let mut kept = Vec::new();
    let mut bytes = 0;
    for mut v in violations.drain(..) {
        if kept.len() == MAX_VIOLATIONS {
            break;
        }
        let size = v.field.len() + v.description.len();
        if bytes + size > MAX_VIOLATION_BYTES {
            if !kept.is_empty() {
                break;
            }
            let room = MAX_VIOLATION_BYTES.saturating_sub(v.field.len()).max(64);
            let mut cut = room.min(v.description.len());
            while !v.description.is_char_boundary(cut) {
                cut -= 1;
            }
            v.description.truncate(cut);
        }
        bytes += v.field.len() + v.description.len();
        kept.push(v);
    }
    let more = total - kept.len();
    (kept, more)
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    let (violations, more) = bounded_violations(violations);
    let mut message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field, v.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Error {
        Error::Store(StoreError::Busy {
            doing: "upsert items".into(),
            source: "database is locked".into(),
        })
    }

    #[test]
    fn a_busy_store_is_unavailable_and_the_log_keeps_the_cause() {
        let Error::Store(e) = busy() else {
            unreachable!()
        };
        assert!(chain(&e).ends_with(": database is locked"), "{}", chain(&e));
        assert_eq!(Status::from(busy()).code(), Code::Unavailable);
        assert_eq!(
            Status::from(Error::Store(StoreError::Closed)).code(),
            Code::Unavailable
        );
        let corrupt = Error::Store(StoreError::Corrupt {
            doing: "load".into(),
            source: "bad row".into(),
        });
        let status = Status::from(corrupt);
        assert_eq!(status.code(), Code::Internal);
        assert!(
            !status.message().contains("bad row"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn full_read_only_and_gone_stores_say_what_the_operator_must_do() {
        let full = Status::from(Error::Store(StoreError::Full {
            doing: "upsert items".into(),
            source: "database or disk is full".into(),
        }));
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert!(full.message().contains("free disk space"), "{full:?}");
        let read_only = Status::from(Error::Store(StoreError::ReadOnly {
            doing: "upsert items".into(),
            source: "attempt to write a readonly database".into(),
        }));
        assert_eq!(read_only.code(), Code::FailedPrecondition);
        assert!(read_only.message().contains("writable"), "{read_only:?}");
        let gone = Status::from(Error::Store(StoreError::Gone {
            doing: "upsert items".into(),
            path: "/secret/place.sqlite".into(),
        }));
        assert_eq!(gone.code(), Code::FailedPrecondition);
        assert!(gone.message().contains("restarts"), "{gone:?}");
        assert!(!gone.message().contains("/secret"), "paths stay in the log");
    }
}
