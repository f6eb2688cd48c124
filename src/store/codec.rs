//! How domain values are written in a row, the same for every backend so
//! that a database reads the same whichever wrote it: times as Unix
//! nanoseconds, enums as their snake_case names, lists and settings as JSON
//! text.

use chrono::DateTime;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::BoxError;
use crate::domain::Time;

pub fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("domain enums serialize to strings, got {other:?}"),
    }
}

pub fn parse_enum<T: DeserializeOwned>(s: &str) -> Result<T, BoxError> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = s.into_deserializer();
    T::deserialize(d).map_err(|_| format!("unknown enum value {s:?}").into())
}

pub fn nanos(t: &Time) -> i64 {
    // The API refuses times outside the i64-nanosecond range (1677..2262).
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub fn time(n: i64) -> Time {
    DateTime::from_timestamp_nanos(n)
}

pub fn opt_time(n: Option<i64>) -> Option<Time> {
    n.map(time)
}

pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| unreachable!("plain data always serializes: {e}"))
}

pub fn parse_json<T: DeserializeOwned>(s: &str) -> Result<T, BoxError> {
    serde_json::from_str(s).map_err(|e| Box::new(e) as BoxError)
}
