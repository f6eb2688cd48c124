//! Flag values the client commands share: times, durations, and the usage
//! error (exit code 2) for a combination clap cannot check by itself. As
//! clap value parsers, so that a bad value is a usage error naming its flag
//! before any connection is made.

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use prost_types::Timestamp;

/// A time as RFC 3339 (`2026-11-20T09:00:00Z`) or a date (`2026-11-20`,
/// midnight UTC).
pub fn time(s: &str) -> Result<Timestamp, String> {
    let t = match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) => Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)),
            Err(_) => {
                return Err(format!(
                    "{s:?} is neither an RFC 3339 time such as 2026-11-20T09:00:00Z nor a date such as 2026-11-20"
                ));
            }
        },
    };
    Ok(Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

/// A duration as people write it: `7d`, `24h`, `1w 2d`, `90min`.
pub fn duration(s: &str) -> Result<prost_types::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 7d, 24h or 1w ({e})"))?;
    Ok(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).map_err(|_| format!("{s:?} is too long"))?,
        nanos: d.subsec_nanos() as i32,
    })
}

/// Exits with a usage error (code 2) for the subcommand at `path` (e.g.
/// `["experiment"]`), formatted as clap formats its own, for a rule between
/// flags that clap's definitions cannot state.
pub fn usage_error(path: &[&str], message: impl std::fmt::Display) -> ! {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    // Building sets each subcommand's full name for its usage line.
    cmd.build();
    let mut at = cmd;
    for name in path {
        match at.find_subcommand(name).cloned() {
            Some(sub) => at = sub,
            None => break,
        }
    }
    at.error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(time("2026-11-20T09:00:00Z").unwrap().seconds, 1_795_165_200);
        assert_eq!(time("2026-11-20").unwrap().seconds, 1_795_132_800);
        assert_eq!(
            time("2026-11-20T10:00:00+01:00").unwrap().seconds,
            1_795_165_200
        );
        assert!(time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(time("2026-13-01").is_err());
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration("7d").unwrap().seconds, 7 * 86_400);
        assert_eq!(duration("1w 2d").unwrap().seconds, 9 * 86_400);
        assert!(duration("soon").is_err());
    }
}
