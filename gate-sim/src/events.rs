//! The driver's ETW events as gate-sim sees them: every event is counted by
//! name (and by `Reason`, for decisions) and, when asked, written as one
//! JSON line (`{"t_ms":..,"name":..,"level":..,"keyword":..,"fields":{..}}`;
//! addresses as "ip:port", byte strings as hex). The simulation keeps only
//! a small window of events itself, so memory stays flat however long the
//! run.

use gate_usersim::etw::{CapturedEvent, Value};
use serde_json::{json, Map};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counts and the JSON-lines writer, shared with the ETW sink.
pub struct EventLog {
    start: Instant,
    counts: Mutex<BTreeMap<String, u64>>,
    out: Option<Mutex<Box<dyn Write + Send>>>,
    write_errors: Mutex<u64>,
}

/// A field value as JSON.
fn value(f: &gate_usersim::etw::CapturedField) -> serde_json::Value {
    if let Some(a) = f.as_socket_addr() {
        return json!(a.to_string());
    }
    match &f.value {
        Value::U64(v) => json!(v),
        Value::I64(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::Str(s) => json!(s),
        Value::F64(v) => json!(v),
        Value::Bytes(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Value::Guid(g) => json!(g.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

/// One event as a JSON object.
pub fn to_json(e: &CapturedEvent, t_ms: u128) -> serde_json::Value {
    let mut fields = Map::new();
    for f in &e.fields {
        fields.insert(f.name.clone(), value(f));
    }
    let mut o = json!({
        "t_ms": t_ms as u64,
        "name": e.name,
        "level": e.level,
        "keyword": e.keyword,
        "fields": fields,
    });
    if let Some(err) = &e.error {
        o["error"] = json!(err);
    }
    o
}

/// "Name/reason" for a decision event with a `Reason` field.
fn reason_key(e: &CapturedEvent) -> Option<String> {
    let r = e.u64("Reason")?;
    let name = usize::try_from(r)
        .ok()
        .and_then(|i| gate_core::Reason::ALL.get(i))
        .map_or_else(|| format!("reason{r}"), |r| r.name().to_string());
    Some(format!("{}/{name}", e.name))
}

impl EventLog {
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Arc<EventLog> {
        Arc::new(EventLog {
            start: Instant::now(),
            counts: Mutex::new(BTreeMap::new()),
            out: out.map(Mutex::new),
            write_errors: Mutex::new(0),
        })
    }

    /// Counts `e` and writes it (the ETW sink).
    pub fn record(&self, e: &CapturedEvent) {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            *c.entry(e.name.clone()).or_insert(0) += 1;
            if let Some(k) = reason_key(e) {
                *c.entry(k).or_insert(0) += 1;
            }
        }
        if let Some(out) = &self.out {
            let line = to_json(e, self.start.elapsed().as_millis());
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            if writeln!(w, "{line}").is_err() {
                *self.write_errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            }
        }
    }

    /// Events by name and "name/reason".
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Count of one key (0 if absent).
    pub fn count(&self, key: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Flushes the JSON lines; returns how many lines could not be written.
    pub fn finish(&self) -> u64 {
        if let Some(out) = &self.out {
            let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        }
        *self.write_errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}
