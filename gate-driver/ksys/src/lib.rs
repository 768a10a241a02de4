//! gate-ksys
