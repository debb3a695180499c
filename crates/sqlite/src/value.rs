//! Lossless JSON encoding of SQLite values, used for query results and for parameters.
//!
//! | SQLite              | JSON                                                       |
//! |---------------------|------------------------------------------------------------|
//! | `NULL`              | `null`                                                     |
//! | `INTEGER`           | an integer, e.g. `42` (always without `.` or exponent)     |
//! | `REAL` (finite)     | a number that always reads as a float: `1.0`, `-0.0`, `1.5e+300` |
//! | `REAL` NaN / ±∞     | `{"$float": "NaN"}`, `{"$float": "Infinity"}`, `{"$float": "-Infinity"}` |
//! | `TEXT`              | a string                                                   |
//! | `BLOB`              | `{"$blob": "<standard base64, with padding>"}`             |
//!
//! A REAL that happens to be integral is still written as a float (`1.0`, never `1`), so a client
//! can always tell REAL from INTEGER. Decoding (for parameters, [`from_json`]) accepts exactly the
//! same forms, plus `true`/`false` → `1`/`0`; any other object, an array, or an integer outside the
//! 64-bit signed range is an `invalid_params` error.
//!
//! Notes: SQLite itself never stores NaN (binding or computing NaN yields `NULL`), so
//! `{"$float": "NaN"}` only appears if a custom function produces it. TEXT that is not valid UTF-8
//! (SQLite does not enforce the encoding) is written with U+FFFD replacement characters.
//! This module only converts values; binding is in [`super::params`], rows in [`super::query`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rusqlite::types::{Value, ValueRef};
use serde_json::{Map, Value as Json};
use trough_types::error::codes;

use trough_types::error::{Error, Result};

/// Appends the JSON encoding of `v` to `out`.
pub fn write_json(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        ValueRef::Real(f) => write_real(out, f),
        ValueRef::Text(t) => write_str(out, &String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => {
            out.extend_from_slice(b"{\"$blob\":\"");
            out.extend_from_slice(BASE64.encode(b).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Appends `s` as a JSON string (quoted and escaped).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_real(out: &mut Vec<u8>, f: f64) {
    if let Some(special) = special_float(f) {
        out.extend_from_slice(b"{\"$float\":\"");
        out.extend_from_slice(special.as_bytes());
        out.extend_from_slice(b"\"}");
    } else {
        // serde_json (ryu) always writes a finite f64 so that it reads back as a float:
        // 1.0 → "1.0", 1e300 → "1e+300", -0.0 → "-0.0".
        let _ = serde_json::to_writer(&mut *out, &f);
    }
}

fn special_float(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f == f64::INFINITY {
        Some("Infinity")
    } else if f == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// The JSON encoding of `v` as a [`serde_json::Value`] (same forms as [`write_json`]).
pub fn to_json(v: ValueRef<'_>) -> Json {
    match v {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(i) => Json::from(i),
        ValueRef::Real(f) => match special_float(f) {
            Some(s) => tagged("$float", s.to_owned()),
            // from_f64 only fails for non-finite values, handled above.
            None => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        },
        ValueRef::Text(t) => Json::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => tagged("$blob", BASE64.encode(b)),
    }
}

fn tagged(key: &str, value: String) -> Json {
    let mut m = Map::new();
    m.insert(key.to_owned(), Json::String(value));
    Json::Object(m)
}

/// Decodes a JSON parameter value into an SQLite value (see the module docs for the forms).
pub fn from_json(v: &Json) -> Result<Value> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Integer(i)
            } else if n.is_u64() {
                return Err(invalid(format!(
                    "integer {n} is outside SQLite's 64-bit signed range"
                )));
            } else {
                Value::Real(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(m) => match (m.len(), m.iter().next()) {
            (1, Some((k, Json::String(s)))) if k == "$blob" => {
                Value::Blob(BASE64.decode(s).map_err(|e| {
                    invalid(format!("\"$blob\" is not valid standard base64: {e}"))
                })?)
            }
            (1, Some((k, Json::String(s)))) if k == "$float" => Value::Real(match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => {
                    return Err(invalid(format!(
                        "\"$float\" must be \"NaN\", \"Infinity\" or \"-Infinity\", not {other:?}"
                    )))
                }
            }),
            _ => {
                return Err(invalid(
                    "an object parameter must be {\"$blob\": \"<base64>\"} or {\"$float\": \"NaN\"|\"Infinity\"|\"-Infinity\"}",
                ))
            }
        },
        Json::Array(_) => return Err(invalid("a parameter value cannot be an array")),
    })
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(codes::INVALID_PARAMS, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: ValueRef<'_>) -> String {
        let mut out = Vec::new();
        write_json(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_every_type() {
        assert_eq!(enc(ValueRef::Null), "null");
        assert_eq!(enc(ValueRef::Integer(-42)), "-42");
        assert_eq!(enc(ValueRef::Integer(i64::MIN)), "-9223372036854775808");
        assert_eq!(enc(ValueRef::Real(1.0)), "1.0");
        assert_eq!(enc(ValueRef::Real(-0.0)), "-0.0");
        assert_eq!(enc(ValueRef::Real(2.5)), "2.5");
        assert_eq!(enc(ValueRef::Real(1e300)), "1e+300");
        assert_eq!(enc(ValueRef::Real(1e-7)), "1e-7");
        assert_eq!(enc(ValueRef::Real(f64::NAN)), r#"{"$float":"NaN"}"#);
        assert_eq!(
            enc(ValueRef::Real(f64::INFINITY)),
            r#"{"$float":"Infinity"}"#
        );
        assert_eq!(
            enc(ValueRef::Real(f64::NEG_INFINITY)),
            r#"{"$float":"-Infinity"}"#
        );
        assert_eq!(enc(ValueRef::Text(b"a\"b\n\xc3\xa9")), r#""a\"b\né""#);
        assert_eq!(
            enc(ValueRef::Blob(&[0, 1, 2, 255])),
            r#"{"$blob":"AAEC/w=="}"#
        );
        assert_eq!(enc(ValueRef::Blob(&[])), r#"{"$blob":""}"#);
    }

    #[test]
    fn to_json_matches_write_json() {
        for v in [
            ValueRef::Null,
            ValueRef::Integer(7),
            ValueRef::Real(3.0),
            ValueRef::Real(f64::NAN),
            ValueRef::Text(b"x"),
            ValueRef::Blob(b"hi"),
        ] {
            assert_eq!(serde_json::to_string(&to_json(v)).unwrap(), enc(v));
        }
    }

    #[test]
    fn decodes_and_round_trips() {
        let cases = [
            Value::Null,
            Value::Integer(i64::MAX),
            Value::Integer(-1),
            Value::Real(1.0),
            Value::Real(0.1),
            Value::Real(f64::INFINITY),
            Value::Real(f64::NEG_INFINITY),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 159, 146, 150]),
        ];
        for v in cases {
            let json = to_json(ValueRef::from(&v));
            let text = serde_json::to_string(&json).unwrap();
            let back = from_json(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, v, "{text}");
        }
        // NaN != NaN, so check it separately.
        let nan = from_json(&to_json(ValueRef::Real(f64::NAN))).unwrap();
        assert!(matches!(nan, Value::Real(f) if f.is_nan()));
        assert_eq!(from_json(&json!(true)).unwrap(), Value::Integer(1));
        assert_eq!(from_json(&json!(false)).unwrap(), Value::Integer(0));
        // 1.0 in JSON stays REAL, 1 stays INTEGER.
        assert_eq!(
            from_json(&serde_json::from_str("1.0").unwrap()).unwrap(),
            Value::Real(1.0)
        );
        assert_eq!(from_json(&json!(1)).unwrap(), Value::Integer(1));
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            json!([1]),
            json!({"a": 1}),
            json!({"$blob": "not base64!"}),
            json!({"$blob": 5}),
            json!({"$float": "nan"}),
            json!({"$blob": "", "$float": "NaN"}),
            json!(u64::MAX),
        ] {
            let err = from_json(&bad).unwrap_err();
            assert_eq!(err.code(), "invalid_params", "{bad}");
            assert_eq!(err.kind(), trough_types::ErrorKind::InvalidInput);
        }
    }
}
