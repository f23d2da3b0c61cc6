//! What a device publishes, as pure functions: the topic says whose reading it is, the JSON
//! payload what it holds.
//!
//! - `sensor/<externalId>` with a whole reading in the ingest API's field names:
//!   `{"time": "2026-12-02T10:15:00Z", "pTotal": 39230.5, "v1": 230.4, "energyImportWh": 123456700}`;
//! - `sensor/<externalId>/<quantity>` with one quantity, the seed's form:
//!   `{"value": 39230.5, "unit": "W", "time": "…"}` (`unit` optional, and when given it must be
//!   the quantity's unit).
//!
//! `time` (RFC 3339) is optional; without it the reading is stamped with its arrival, to the
//! whole second. Anything else is refused with the reason, never guessed at.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::measurements::{Horizon, Quantity};

/// The topic filter the portal subscribes to.
pub const SUBSCRIPTION: &str = "sensor/#";

/// One message, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub external_id: String,
    pub time: DateTime<Utc>,
    pub values: Vec<(Quantity, Option<f64>)>,
}

/// The externalId and, for the single-quantity form, the quantity of a topic.
pub fn topic(topic: &str) -> Result<(&str, Option<&str>), String> {
    let mut parts = topic.split('/');
    let (Some("sensor"), Some(external_id)) = (parts.next(), parts.next()) else {
        return Err("not a device topic (expected sensor/<externalId> or sensor/<externalId>/<quantity>)".into());
    };
    if external_id.is_empty() {
        return Err("the topic names no device (sensor//…)".into());
    }
    match (parts.next(), parts.next()) {
        (None, _) => Ok((external_id, None)),
        (Some(q), None) if !q.is_empty() => Ok((external_id, Some(q))),
        _ => Err("too many levels (expected sensor/<externalId> or sensor/<externalId>/<quantity>)".into()),
    }
}

fn time(value: Option<&Value>, horizon: Horizon) -> Result<DateTime<Utc>, String> {
    let time = match value {
        None | Some(Value::Null) => horizon.now.trunc_subsecs(0),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("invalid time {s:?}: {e} (expected RFC 3339, e.g. 2026-12-02T10:15:00Z)"))?
            .with_timezone(&Utc),
        Some(other) => return Err(format!("time must be an RFC 3339 string, got {other}")),
    };
    horizon.check(time)?;
    Ok(time)
}

fn number(name: &str, value: &Value) -> Result<Option<f64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| format!("{name}: not a number")),
        other => Err(format!("{name} must be a number or null, got {other}")),
    }
}

/// Reads one message published on `topic`, arrived at `horizon.now`.
pub fn parse(topic_name: &str, payload: &[u8], horizon: Horizon) -> Result<Message, String> {
    let (external_id, quantity) = topic(topic_name)?;
    let object: Map<String, Value> = match serde_json::from_slice(payload) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("the payload is not a JSON object".into()),
        Err(e) => return Err(format!("the payload is not JSON: {e}")),
    };
    let time = time(object.get("time"), horizon)?;
    let mut values = Vec::new();
    match quantity {
        Some(q) => {
            let slot = Quantity::named(q).ok_or_else(|| {
                format!("unknown quantity {q:?} in the topic (the quantities are {})", Quantity::names())
            })?;
            let expected = slot.unit();
            for (key, value) in &object {
                match key.as_str() {
                    "time" => {}
                    "value" => values.push((slot, number(q, value)?)),
                    "unit" => match value {
                        Value::String(u) if u.eq_ignore_ascii_case(expected) => {}
                        Value::Null => {}
                        other => {
                            let unit = if expected.is_empty() { "no unit" } else { expected };
                            return Err(format!("{q} is stored in {unit}, the message says {other}; convert it first"));
                        }
                    },
                    other => return Err(format!("unknown field {other:?} (expected value, unit, time)")),
                }
            }
            if values.is_empty() {
                return Err("no value (expected {\"value\": <number>})".into());
            }
        }
        None => {
            for (key, value) in &object {
                match key.as_str() {
                    "time" => {}
                    "externalId" => {
                        if value.as_str() != Some(external_id) {
                            return Err(format!("externalId {value} differs from the topic's {external_id:?}"));
                        }
                    }
                    name => match Quantity::named(name) {
                        Some(slot) => values.push((slot, number(name, value)?)),
                        None => {
                            return Err(format!("unknown field {name:?} (the fields are time, {})", Quantity::names()));
                        }
                    },
                }
            }
            if values.is_empty() {
                return Err("no quantity in the reading".into());
            }
        }
    }
    Ok(Message { external_id: external_id.to_string(), time, values })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::measurements::{COUNTER_QUANTITIES, REAL_QUANTITIES};

    fn now() -> Horizon {
        let at = |s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        Horizon { earliest: at("2000-01-01T00:00:00Z"), now: at("2026-12-02T10:15:00.750Z") }
    }

    #[test]
    fn a_whole_reading_in_the_ingest_field_names() {
        let m = parse(
            "sensor/main-incomer",
            br#"{"time": "2026-12-02T10:14:00+02:00", "pTotal": 39230.5, "v1": null, "energyImportWh": 123456700}"#,
            now(),
        )
        .unwrap();
        assert_eq!(m.external_id, "main-incomer");
        assert_eq!(m.time.to_rfc3339(), "2026-12-02T08:14:00+00:00");
        assert!(m.values.contains(&(Quantity::named("pTotal").unwrap(), Some(39230.5))));
        assert!(m.values.contains(&(Quantity::named("v1").unwrap(), None)));
        assert_eq!(m.values.len(), 3);
    }

    #[test]
    fn the_seeds_single_quantity_form() {
        let m = parse("sensor/device001/v1", br#"{"value": 231.5, "unit": "V"}"#, now()).unwrap();
        assert_eq!(m.time.to_rfc3339(), "2026-12-02T10:15:00+00:00", "arrival, to the second");
        assert_eq!(m.values, vec![(Quantity::named("v1").unwrap(), Some(231.5))]);
        // The seed's own example names a quantity this portal does not store.
        let e = parse("sensor/device001/temperature", br#"{"value": 22.5, "unit": "C"}"#, now()).unwrap_err();
        assert!(e.contains("unknown quantity \"temperature\"") && e.contains("pTotal"), "{e}");
        let e = parse("sensor/d/pTotal", br#"{"value": 39.2, "unit": "kW"}"#, now()).unwrap_err();
        assert!(e.contains("pTotal is stored in W"), "{e}");
        assert!(parse("sensor/d/pfTotal", br#"{"value": 0.97, "unit": ""}"#, now()).is_ok());
    }

    #[test]
    fn bad_messages_say_why() {
        for (topic, payload, why) in [
            ("sensor/d", &b"not json"[..], "not JSON"),
            ("sensor/d", b"[1,2]", "not a JSON object"),
            ("sensor/d", br#"{"ptotal": 1}"#, "unknown field \"ptotal\""),
            ("sensor/d", br#"{"pTotal": "1"}"#, "must be a number"),
            ("sensor/d", br#"{"time": "yesterday", "pTotal": 1}"#, "invalid time"),
            ("sensor/d", br#"{"time": "2026-12-02T11:15:00Z", "pTotal": 1}"#, "future"),
            ("sensor/d", br#"{"time": "1999-12-31T23:59:59Z", "pTotal": 1}"#, "before 2000-01-01"),
            ("sensor/d", br#"{"externalId": "other", "pTotal": 1}"#, "differs from the topic"),
            ("sensor/d", br#"{}"#, "no quantity"),
            ("sensor/d/v1", br#"{"unit": "V"}"#, "no value"),
            ("sensor/d/v1/x", br#"{"value": 1}"#, "too many levels"),
            ("command/d", br#"{"value": 1}"#, "not a device topic"),
            ("sensor//v1", br#"{"value": 1}"#, "names no device"),
        ] {
            let e = parse(topic, payload, now()).unwrap_err();
            assert!(e.contains(why), "{topic} {:?}: {e}", String::from_utf8_lossy(payload));
        }
    }

    proptest! {
        /// Whatever bytes arrive, parsing answers (never panics), and what it accepts only holds
        /// quantities the store knows.
        #[test]
        fn any_payload_is_answered(payload in proptest::collection::vec(any::<u8>(), 0..200), q in 0usize..40) {
            let names: Vec<&str> = REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| q.0).collect();
            let topic = format!("sensor/dev/{}", names.get(q).copied().unwrap_or("x"));
            if let Ok(m) = parse(&topic, &payload, now()) {
                prop_assert_eq!(m.values.len(), 1);
            }
            let _ = parse("sensor/dev", &payload, now());
        }

        /// A generated whole reading comes back with every value it carried.
        #[test]
        fn whole_readings_keep_their_values(values in proptest::collection::btree_map(0usize..35, -1e9f64..1e9, 1..10)) {
            let names: Vec<&str> = REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| q.0).collect();
            let object: serde_json::Map<String, Value> =
                values.iter().map(|(i, v)| (names[*i].to_string(), serde_json::json!(v))).collect();
            let m = parse("sensor/dev", serde_json::to_string(&object).unwrap().as_bytes(), now()).unwrap();
            prop_assert_eq!(m.values.len(), values.len());
            for (i, v) in values {
                prop_assert!(m.values.contains(&(Quantity::named(names[i]).unwrap(), Some(v))));
            }
        }
    }
}
