//! The one place that turns what went wrong on the way to the sidecar into a
//! sentence for a person: a gRPC status the sidecar sent (its own message,
//! with the code's name only where the message alone would leave the reader
//! guessing), a connection that was lost, or a sidecar that cannot be
//! reached. Every client command goes through it, so no command prints
//! tonic's generic code descriptions ("The system is not in a state required
//! for the operation's execution") or an h2 protocol error.

use std::error::Error as _;

use tonic::{Code, Status};

/// What the command was doing, for the words of a lost connection.
#[derive(Debug, Clone, Copy)]
pub enum Doing<'a> {
    /// Any call but a sync.
    Call,
    /// `plumbline sync SOURCE [--full]`: an incremental sync resumes from
    /// its cursor when run again; a full one must be run again whole to
    /// mark what the tracker no longer returns.
    Sync { source: &'a str, full: bool },
}

/// A status as an error for `main` to print.
pub fn rpc_error(status: Status) -> anyhow::Error {
    anyhow::anyhow!(describe(&status, Doing::Call))
}

/// A status met during `plumbline sync SOURCE` as an error for `main`.
pub fn sync_error(status: Status, source: &str, full: bool) -> anyhow::Error {
    anyhow::anyhow!(describe(&status, Doing::Sync { source, full }))
}

/// A status as a sentence.
pub fn describe(status: &Status, doing: Doing<'_>) -> String {
    if connection_lost(status) {
        return lost(doing, &root_cause(status));
    }
    let message = status.message().trim();
    use tonic_types::StatusExt;
    if let Some(br) = status.get_details_bad_request()
        && !br.field_violations.is_empty()
    {
        let mut out = String::from("invalid argument:");
        for v in br.field_violations {
            out.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
        return out;
    }
    if message.is_empty() {
        return code_name(status.code()).to_string();
    }
    match status.code() {
        // The message names the thing; the code adds nothing ...
        Code::NotFound if message.contains("not found") => message.to_string(),
        // ... but says what kind of refusal this is for these.
        Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::InvalidArgument
        | Code::AlreadyExists => {
            format!("{}: {message}", code_name(status.code()))
        }
        Code::DeadlineExceeded => format!(
            "the sidecar did not answer in time ({message}); it may be overloaded, try again"
        ),
        _ => message.to_string(),
    }
}

/// The sidecar at `url` could not be reached at all (nothing listens, name
/// unknown, TLS refused).
pub fn unreachable(url: &str, err: &(dyn std::error::Error + 'static), doing: Doing<'_>) -> String {
    let tls = if url.starts_with("https:") {
        " Does --ca-cert (PLUMBLINE_CA_CERT) name the CA that signed its certificate?"
    } else {
        ""
    };
    let nothing = match doing {
        Doing::Call => String::new(),
        Doing::Sync { source, full } => format!(
            " Nothing was synced; {} once the sidecar runs.",
            again(source, full)
        ),
    };
    format!(
        "cannot reach plumbline at {url} ({}); is `plumbline serve` running there?{tls}{nothing}",
        last_source(err)
    )
}

fn lost(doing: Doing<'_>, cause: &str) -> String {
    match doing {
        Doing::Call => format!(
            "the connection to the sidecar was lost ({cause}); it stopped or the network failed. Run the command again once `plumbline serve` is up."
        ),
        Doing::Sync {
            source,
            full: false,
        } => format!(
            "the sidecar went away during the sync: the connection was lost ({cause}). \
             Every page it stored is kept; run `plumbline sync {source}` again once \
             `plumbline serve` is up, and the sync resumes from its cursor."
        ),
        Doing::Sync { source, full: true } => format!(
            "the sidecar went away during the sync: the connection was lost ({cause}). \
             Every page it stored is kept; {} once `plumbline serve` is up.",
            again(source, true)
        ),
    }
}

/// What to run after a sync that did not finish.
fn again(source: &str, full: bool) -> String {
    if full {
        format!(
            "run `plumbline sync {source} --full` again (only a completed full sync marks the items the tracker no longer returns)"
        )
    } else {
        format!("`plumbline sync {source}` resumes from its cursor")
    }
}

/// Whether the status was made by this client because the connection broke
/// (the sidecar died, the network failed), not sent by the sidecar: tonic
/// keeps the transport's error as the source of such statuses only.
pub fn connection_lost(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unknown | Code::Unavailable | Code::Cancelled | Code::Internal
    ) && (status.source().is_some()
        || status.message().starts_with("h2 protocol error")
        || status.message().starts_with("transport error"))
}

/// The innermost cause of a lost connection, in the transport's words but
/// without the `h2 protocol error:` prefix.
fn root_cause(status: &Status) -> String {
    match status.source() {
        Some(e) => last_source(e),
        None => status.message().to_string(),
    }
    .trim_start_matches("h2 protocol error: ")
    .to_string()
}

fn last_source(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    let text = e.to_string();
    // "Connection refused (os error 111)" reads better lower-cased.
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => err.to_string(),
    }
}

/// A code's name as people write it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by this sidecar",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "not authenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecars_message_is_printed_without_the_generic_text() {
        let s = Status::failed_precondition("item \"web/1\" is closed");
        assert_eq!(describe(&s, Doing::Call), "item \"web/1\" is closed");
        let s = Status::permission_denied("ApplySplit needs the write role");
        assert_eq!(
            describe(&s, Doing::Call),
            "permission denied: ApplySplit needs the write role"
        );
        let s = Status::not_found("item \"x/1\" not found");
        assert_eq!(describe(&s, Doing::Call), "item \"x/1\" not found");
        assert_eq!(
            describe(&Status::internal(""), Doing::Call),
            "internal error"
        );
    }

    #[test]
    fn a_lost_connection_says_the_sidecar_went_away() {
        let s = Status::unknown("h2 protocol error: error reading a body from connection");
        let text = describe(
            &s,
            Doing::Sync {
                source: "rm",
                full: false,
            },
        );
        assert!(text.contains("sidecar went away"), "{text}");
        assert!(text.contains("run `plumbline sync rm` again"), "{text}");
        let full = describe(
            &s,
            Doing::Sync {
                source: "rm",
                full: true,
            },
        );
        assert!(full.contains("`plumbline sync rm --full` again"), "{full}");
        assert!(!text.contains("h2 protocol error"), "{text}");
        // A status the sidecar sent is not a lost connection.
        assert!(!connection_lost(&Status::unavailable(
            "the database is busy"
        )));
    }
}
