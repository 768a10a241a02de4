//! gate-driver
