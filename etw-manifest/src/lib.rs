//! Checks of the instrumentation manifest against the driver events.
