//! gate-load: the Linux connection-flood generator that validates the gate.
//!
//! An open-loop generator ([`engine`]) drives scenarios ([`scenario`], or
//! one-line runs: [`oneliner`]) from many source addresses ([`addrs`]) and
//! records every attempt's outcome and latency ([`report`]); attempts are
//! connect() calls, optionally followed by a payload exchange ([`payload`]),
//! or raw spoofed SYNs ([`synflood`]). [`model`] says what a token-bucket
//! gate should have accepted; [`plot`] draws runs and percentile spectra;
//! [`progress`] is the run's progress bar; [`topology`] makes namespaces to
//! run in; [`listener`] is the plain target (and the payload server);
//! [`peers`] and [`bench`](mod@bench) compare and measure.
//!
//! Other tools (the end-to-end demo) use the report and plot API directly:
//! [`report::Report::summary`] and its tables, [`report::LatencyStats`],
//! [`plot::write_run`] with [`plot::expected_from_model`],
//! [`plot::write_spectrum`] with [`plot::curves_of`].

pub mod addrs;
pub mod bench;
pub mod engine;
pub mod listener;
pub mod model;
pub mod oneliner;
pub mod payload;
pub mod peers;
pub mod plot;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod synflood;
pub mod sys;
pub mod topology;
