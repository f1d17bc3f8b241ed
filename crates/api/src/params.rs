//! Query-string parsing with Docker's conventions: booleans as 1/true/True, JSON filters.

use std::collections::{BTreeMap, HashMap};

use crate::error::ApiError;

/// The query string as a map.
pub type Query = HashMap<String, String>;

/// A boolean query parameter (`1`, `true`, `True` are true; absent is `default`).
pub fn flag(q: &Query, key: &str, default: bool) -> bool {
    match q.get(key) {
        Some(v) => matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "yes"),
        None => default,
    }
}

/// An integer query parameter.
pub fn int(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v}"))),
    }
}

/// The `filters` parameter: `{"key":["v"]}` or the older `{"key":{"v":true}}`.
pub fn filters(q: &Query) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let Some(raw) = q.get("filters").filter(|v| !v.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(obj) = v.as_object() {
        for (k, vals) in obj {
            let list: Vec<String> = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                serde_json::Value::Object(o) => o.keys().cloned().collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            out.insert(k.clone(), list);
        }
    }
    Ok(out)
}

/// Parses Docker's time parameters (`since`, `until`): unix seconds with optional fraction.
pub fn unix_time(q: &Query, key: &str) -> Option<f64> {
    q.get(key)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<f64>().ok())
}

/// The `h` and `w` parameters of a resize request, clamped to a terminal's range.
pub fn tty_size(q: &Query) -> Result<(u16, u16), ApiError> {
    let clamp = |v: Option<i64>| v.unwrap_or(0).clamp(0, i64::from(u16::MAX)) as u16;
    Ok((clamp(int(q, "h")?), clamp(int(q, "w")?)))
}
