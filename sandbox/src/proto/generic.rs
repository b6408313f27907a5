//! Schema-driven decoding of any registered kind's protobuf message into the
//! JSON a JSON client would send, walking the wire format with the message
//! table in `schema.rs` (generated from Kubernetes' `generated.proto`).
//!
//! Go writes every non-pointer field, so the wire carries zero values a
//! JSON client would omit; empty strings, zero timestamps and zero scalars
//! of non-pointer `omitempty` fields (marked in the table from the Go
//! types) are dropped. Pointer fields are only written when set, so their
//! zeros (`replicas: 0`) survive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message as _;
use serde_json::{Map, Value, json};

use super::schema::MESSAGES;

/// One protobuf message: its full name and fields.
pub(crate) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// One field: number, JSON name, value type, label.
pub(crate) struct Field {
    pub number: u32,
    pub json: &'static str,
    pub ty: Ty,
    pub repeated: bool,
    /// `map<string, ty>`.
    pub map: bool,
    /// A non-pointer Go scalar tagged `omitempty`: JSON clients leave it
    /// out when zero, Go's protobuf writes it anyway.
    pub omit_zero: bool,
}

#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Str,
    I32,
    I64,
    Bool,
    Bytes,
    Msg(&'static str),
}

/// The message table entry for a full message name.
pub(crate) fn lookup(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

/// Why a message body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WireError(pub String);

const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";

/// A raw wire value.
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| WireError("truncated varint".into()))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError("truncated field".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next `(field number, value)`, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number =
            u32::try_from(key >> 3).map_err(|_| WireError("field number too large".into()))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| WireError("length too large".into()))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => return Err(WireError(format!("unsupported wire type {other}"))),
        };
        Ok(Some((number, wire)))
    }
}

/// Decodes the message `name` from `bytes` into JSON. `None` when the
/// message means "unset" (a zero timestamp).
pub(super) fn decode(name: &str, bytes: &[u8]) -> Result<Option<Value>, WireError> {
    match name {
        OBJECT_META => {
            let meta = super::ObjectMeta::decode(bytes).map_err(|e| WireError(e.to_string()))?;
            return Ok(Some(super::metadata_json(meta)));
        }
        TIME | MICRO_TIME => {
            let t = super::Time::decode(bytes).map_err(|e| WireError(e.to_string()))?;
            return Ok(super::time_json_precise(Some(t), name == MICRO_TIME));
        }
        _ => {}
    }
    let special = matches!(
        name,
        DURATION | FIELDS_V1 | QUANTITY | INT_OR_STRING | RAW_EXTENSION
    );
    let mut scalars: Vec<(u32, Wire)> = Vec::new();
    let message = if special {
        None
    } else {
        Some(lookup(name).ok_or_else(|| WireError(format!("no schema for {name}")))?)
    };
    let mut out = Map::new();
    let mut reader = Reader { buf: bytes };
    while let Some((number, wire)) = reader.next()? {
        let Some(message) = message else {
            scalars.push((number, wire));
            continue;
        };
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            continue;
        };
        if field.map {
            let Wire::Bytes(entry) = wire else {
                return Err(WireError(format!(
                    "map entry of {} is not length-delimited",
                    field.json
                )));
            };
            let (key, value) = map_entry(entry, field.ty)?;
            let slot = out
                .entry(field.json.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Value::Object(map), Some(value)) = (slot, value) {
                map.insert(key, value);
            }
        } else if field.repeated {
            let values = repeated_values(wire, field.ty)?;
            let slot = out
                .entry(field.json.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                items.extend(values);
            }
        } else if let Some(value) = single_value(wire, field.ty)? {
            let zero = value.as_str() == Some("")
                || (field.omit_zero && (value == json!(0) || value == json!(false)));
            if zero {
                out.remove(field.json);
            } else {
                out.insert(field.json.to_string(), value);
            }
        }
    }
    if special {
        return Ok(special_value(name, &scalars));
    }
    Ok(Some(Value::Object(out)))
}

fn map_entry(entry: &[u8], ty: Ty) -> Result<(String, Option<Value>), WireError> {
    let mut reader = Reader { buf: entry };
    let mut key = String::new();
    let mut value = None;
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => key = utf8(b)?,
            (2, wire) => value = single_value(wire, ty)?,
            _ => {}
        }
    }
    // A map value absent on the wire is the type's zero value.
    let value = value.or(match ty {
        Ty::Str => Some(json!("")),
        Ty::Bytes => Some(json!("")),
        _ => None,
    });
    Ok((key, value))
}

fn repeated_values(wire: Wire, ty: Ty) -> Result<Vec<Value>, WireError> {
    match (wire, ty) {
        // Packed scalars.
        (Wire::Bytes(b), Ty::I32 | Ty::I64 | Ty::Bool) => {
            let mut reader = Reader { buf: b };
            let mut out = Vec::new();
            while !reader.buf.is_empty() {
                let v = reader.varint()?;
                out.extend(single_value(Wire::Varint(v), ty)?);
            }
            Ok(out)
        }
        (wire, ty) => Ok(single_value(wire, ty)?.into_iter().collect()),
    }
}

fn single_value(wire: Wire, ty: Ty) -> Result<Option<Value>, WireError> {
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Bytes(b)) => Some(json!(utf8(b)?)),
        (Ty::Bytes, Wire::Bytes(b)) => Some(json!(BASE64.encode(b))),
        (Ty::I32, Wire::Varint(v)) => Some(json!(v as i64 as i32)),
        (Ty::I64, Wire::Varint(v)) => Some(json!(v as i64)),
        (Ty::Bool, Wire::Varint(v)) => Some(json!(v != 0)),
        (Ty::Msg(name), Wire::Bytes(b)) => decode(name, b)?,
        _ => {
            return Err(WireError(
                "a field has the wrong wire type for its schema".into(),
            ));
        }
    })
}

fn utf8(b: &[u8]) -> Result<String, WireError> {
    String::from_utf8(b.to_vec()).map_err(|_| WireError("a string field is not UTF-8".into()))
}

/// The JSON form of the messages Kubernetes serialises specially.
fn special_value(name: &str, fields: &[(u32, Wire)]) -> Option<Value> {
    let bytes = |n: u32| {
        fields.iter().find_map(|(num, w)| match w {
            Wire::Bytes(b) if *num == n => Some(*b),
            _ => None,
        })
    };
    let varint = |n: u32| {
        fields.iter().find_map(|(num, w)| match w {
            Wire::Varint(v) if *num == n => Some(*v),
            _ => None,
        })
    };
    match name {
        QUANTITY => Some(json!(String::from_utf8_lossy(bytes(1).unwrap_or_default()))),
        INT_OR_STRING => {
            if varint(1).unwrap_or(0) == 1 {
                Some(json!(String::from_utf8_lossy(bytes(3).unwrap_or_default())))
            } else {
                Some(json!(varint(2).unwrap_or(0) as i64 as i32))
            }
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = bytes(1).unwrap_or_default();
            Some(serde_json::from_slice(raw).unwrap_or_else(|_| json!(BASE64.encode(raw))))
        }
        DURATION => Some(json!(go_duration(varint(1).unwrap_or(0) as i64))),
        _ => None,
    }
}

/// A duration in nanoseconds as Go prints it (`1h2m3s`, `1.5s`, `0s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, rem) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let (s, frac) = (rem / 1_000_000_000, rem % 1_000_000_000);
    let mut secs = s.to_string();
    if frac != 0 {
        let f = format!("{frac:09}");
        secs = format!("{s}.{}", f.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete_for_registered_kinds() {
        assert!(MESSAGES.windows(2).all(|w| w[0].name < w[1].name));
        for rt in crate::registry::ALL {
            let name = super::super::message_name(rt.group, rt.version, rt.kind);
            assert!(
                lookup(&name).is_some(),
                "no protobuf schema for the registered kind {name}: regenerate sandbox/src/proto/schema.rs with generate_schema.py (see sandbox/src/proto/mod.rs)"
            );
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(-60_000_000_000), "-1m0s");
    }
}
