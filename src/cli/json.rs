//! The JSON of `--json`: an answer as its proto descriptor describes it,
//! every field by its proto name (unset optional and oneof fields as null),
//! so that a field added to the API reaches scripts without anyone touching
//! the CLI. Enum values read as the table does (`ITEM_STATE_OPEN` ->
//! `open`), timestamps as RFC 3339, durations in seconds, field masks as
//! their paths. The message is re-read through the descriptor set compiled
//! into the binary (`build.rs`), with `prost-reflect`.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, ReflectMessage, Value as Field};
use serde_json::{Map, Value, json};

/// The descriptors of plumbline's API: the set `build.rs` compiled from
/// `proto/` and embedded, which always decodes (the server's reflection
/// serves the same bytes).
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set build.rs embeds decodes (invariant of the build)")
});

/// The API's descriptors, for the CLI's own checks (`rpc_map`).
#[cfg(test)]
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// `message` (of proto type `plumbline.v1.NAME`) as a JSON object with
/// every field.
pub fn message<M: prost::Message>(name: &str, message: &M) -> Value {
    let full = format!("plumbline.v1.{name}");
    let Some(desc) = POOL.get_message_by_name(&full) else {
        // Only a misspelt name in this crate gets here; the unit test below
        // and the CLI tests name every one used.
        return json!({ "error": format!("no message type {full}") });
    };
    match DynamicMessage::decode(desc, message.encode_to_vec().as_slice()) {
        Ok(m) => message_json(&m),
        Err(e) => json!({ "error": format!("cannot read {full}: {e}") }),
    }
}

/// `value` with the keys of `extra` added (or replaced): the CLI's derived
/// fields next to the API's own.
pub fn with(mut value: Value, extra: Value) -> Value {
    if let (Value::Object(v), Value::Object(e)) = (&mut value, extra) {
        v.extend(e);
    }
    value
}

fn message_json(m: &DynamicMessage) -> Value {
    let desc = m.descriptor();
    match desc.full_name() {
        "google.protobuf.Timestamp" => {
            let (s, n) = (int_field(m, "seconds"), int_field(m, "nanos"));
            return super::output::time(Some(&prost_types::Timestamp {
                seconds: s,
                nanos: n as i32,
            }));
        }
        "google.protobuf.Duration" => {
            let (s, n) = (int_field(m, "seconds"), int_field(m, "nanos"));
            return number(s as f64 + n as f64 / 1e9);
        }
        "google.protobuf.FieldMask" => {
            return match m.get_field_by_name("paths").as_deref() {
                Some(Field::List(paths)) => {
                    Value::Array(paths.iter().map(|p| value_json(&Kind::String, p)).collect())
                }
                _ => Value::Array(Vec::new()),
            };
        }
        _ => {}
    }
    let mut out = Map::new();
    for f in desc.fields() {
        let v = if f.supports_presence() && !m.has_field(&f) {
            Value::Null
        } else {
            value_json(&f.kind(), &m.get_field(&f))
        };
        out.insert(f.name().to_string(), v);
    }
    Value::Object(out)
}

fn int_field(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(Field::I64(v)) => *v,
        Some(Field::I32(v)) => i64::from(*v),
        _ => 0,
    }
}

fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn value_json(kind: &Kind, v: &Field) -> Value {
    match v {
        Field::Bool(b) => Value::Bool(*b),
        Field::I32(n) => json!(n),
        Field::I64(n) => json!(n),
        Field::U32(n) => json!(n),
        Field::U64(n) => json!(n),
        Field::F32(f) => number(f64::from(*f)),
        Field::F64(f) => number(*f),
        Field::String(s) => Value::String(s.clone()),
        Field::Bytes(b) => {
            use base64::Engine as _;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Field::EnumNumber(n) => match kind {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(value) => Value::String(super::output::enum_name(
                    value.name(),
                    &format!("{}_", screaming(e.name())),
                )),
                None => json!(n),
            },
            _ => json!(n),
        },
        Field::Message(m) => message_json(m),
        Field::List(items) => Value::Array(items.iter().map(|i| value_json(kind, i)).collect()),
        Field::Map(entries) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    prost_reflect::MapKey::Bool(b) => b.to_string(),
                    prost_reflect::MapKey::I32(n) => n.to_string(),
                    prost_reflect::MapKey::I64(n) => n.to_string(),
                    prost_reflect::MapKey::U32(n) => n.to_string(),
                    prost_reflect::MapKey::U64(n) => n.to_string(),
                    prost_reflect::MapKey::String(s) => s.clone(),
                };
                out.insert(key, value_json(&value_kind, v));
            }
            Value::Object(out)
        }
    }
}

/// `ItemState` -> `ITEM_STATE`, the prefix of its values.
fn screaming(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto as pb;

    #[test]
    fn every_field_is_there_with_readable_values() {
        let it = pb::Item {
            key: "web/1".into(),
            title: "One".into(),
            body: "text".into(),
            parent_key: "web/0".into(),
            state: pb::ItemState::Closed as i32,
            update_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = message("Item", &it);
        assert_eq!(v["state"], "closed");
        assert_eq!(v["body"], "text");
        assert_eq!(v["parent_key"], "web/0");
        assert_eq!(v["update_time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["estimate"], Value::Null, "unset optional");
        let desc = POOL.get_message_by_name("plumbline.v1.Item").unwrap();
        for f in desc.fields() {
            assert!(v.get(f.name()).is_some(), "{} missing", f.name());
        }
        assert_eq!(screaming("ScoreFlag"), "SCORE_FLAG");
    }
}
