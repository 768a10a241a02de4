//! gate-load: the Linux connection-flood generator that validates the gate.
//!
//! An open-loop generator ([`engine`]) drives scenarios ([`scenario`]) from
//! many source addresses ([`addrs`]) and records every attempt's outcome and
//! latency ([`report`]); [`model`] says what a token-bucket gate should have
//! accepted; [`plot`] draws the run; [`topology`] makes namespaces to run in;
//! [`listener`] is the plain target; [`peers`] and [`bench`] compare and
//! measure.

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
