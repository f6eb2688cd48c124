//! The gRPC face of plumbline: validate requests, translate between proto and
//! domain types, call the [`Engine`](crate::engine::Engine), and map its
//! errors to `tonic::Status` in one place.

mod backlog;
mod convert;
mod mask;
mod page;
mod ranking;
mod rollup;
mod scoring;
mod source;
mod split;
mod sync;
mod validation;
mod value_model;
mod watch;

pub use backlog::BacklogApi;
pub use rollup::RollupApi;
pub use scoring::ScoringApi;
pub use source::SourceApi;
pub use split::SplitApi;
pub use sync::SyncApi;
pub use validation::ValidationApi;
pub use value_model::ValueModelApi;

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::{Error, FieldViolation};

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
                tracing::error!(error = %e, "storage failure");
                Status::internal("storage failure; see the server log")
            }
        }
    }
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    let message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field, v.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}
