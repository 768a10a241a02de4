//! ETW (TraceLogging) events of the gate: one definition per event.
