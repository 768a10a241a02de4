//! gate-core
