//! The driver's ETW events as gate-sim sees them: every event is counted by
//! name (and by `Reason`, for decisions) and, when asked, written as one
//! JSON line (`{"t_ms":..,"name":..,"level":..,"keyword":..,"fields":{..}}`;
//! addresses as "ip:port", byte strings as hex). The simulation keeps only
//! a small window of events itself, so memory stays flat however long the
//! run.

use gate_usersim::etw::{CapturedEvent, Value};
use serde_json::{json, Map};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Events of one name: total, and by `Reason` index.
type NameCounts = (u64, HashMap<u64, u64>);

/// Events counted by the simulation itself (no sink: events are not even
/// built), as "Name" and "Name/reason" -> count.
pub fn sim_counts() -> BTreeMap<String, u64> {
    let mut out = gate_usersim::etw::counts();
    for (name, by) in gate_usersim::etw::reason_counts() {
        for (r, n) in by {
            out.insert(format!("{name}/{}", reason_name(r)), n);
        }
    }
    out
}

/// Counts and the JSON-lines writer, shared with the ETW sink.
pub struct EventLog {
    start: Instant,
    /// Events by name, and by Reason index within a name (no allocation
    /// per event once a name was seen).
    counts: Mutex<HashMap<String, NameCounts>>,
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

/// The field `name` of `e` as text for a message: a string as it is (no
/// quotes), any other value as its JSON form; empty if the event has no
/// such field.
pub fn field_text(e: &CapturedEvent, name: &str) -> String {
    match e.fields.iter().find(|f| f.name == name) {
        None => String::new(),
        Some(f) => match value(f) {
            serde_json::Value::String(s) => s,
            v => v.to_string(),
        },
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

/// The name of reason index `r` (gate-core's `Reason::ALL` order).
pub fn reason_name(r: u64) -> String {
    usize::try_from(r)
        .ok()
        .and_then(|i| gate_core::Reason::ALL.get(i))
        .map_or_else(|| format!("reason{r}"), |r| r.name().to_string())
}

impl EventLog {
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Arc<EventLog> {
        Arc::new(EventLog {
            start: Instant::now(),
            counts: Mutex::new(HashMap::new()),
            out: out.map(Mutex::new),
            write_errors: Mutex::new(0),
        })
    }

    /// Counts `e` and writes it (the ETW sink).
    pub fn record(&self, e: &CapturedEvent) {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if !c.contains_key(&e.name) {
                c.insert(e.name.clone(), (0, HashMap::new()));
            }
            if let Some(slot) = c.get_mut(&e.name) {
                slot.0 += 1;
                if let Some(r) = e.u64("Reason") {
                    *slot.1.entry(r).or_insert(0) += 1;
                }
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
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for (name, (n, by_reason)) in c.iter() {
            out.insert(name.clone(), *n);
            for (r, k) in by_reason {
                out.insert(format!("{name}/{}", reason_name(*r)), *k);
            }
        }
        out
    }

    /// Count of events named `name` (0 if none).
    pub fn count(&self, name: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or(0, |c| c.0)
    }

    /// Flushes the JSON lines; returns how many lines could not be written.
    pub fn finish(&self) -> u64 {
        if let Some(out) = &self.out {
            let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        }
        *self.write_errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}
