//! The gate's ETW instrumentation manifest (`gate.man`) and WPR/WPA
//! profiles (`../wpr-profiles`), and the checks that keep them equal to the
//! driver's event table (`gate_driver::etw::SCHEMA`) and to the events the
//! simulation actually decodes.
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | parsing the manifest XML (roxmltree) into plain data |
//! | [`types`] | TraceLogging type codes <-> manifest type names; the code's value maps |
//! | [`check`] | manifest vs. schema, and [`check_captured`] for decoded events |
//! | [`render`] | generating a manifest skeleton and the README event table from the schema |
//! | [`guid`] | the ETW provider-name hash (provider GUID from its name) |
//! | [`profiles`] | reading the WPR (.wprp) and WPA (.wpaProfile) files |
//! | [`sim`] | the simulation's ETW (gate-usersim's `etw` module) |

pub mod check;
pub mod guid;
pub mod model;
pub mod profiles;
pub mod render;
pub mod types;

/// The simulation's ETW routines and decoded-event capture
/// (gate-usersim's `etw` module): the driver's tests and these checks share
/// one capture and one `CapturedEvent` type.
pub use gate_usersim::etw as sim;

pub use check::{check_all, check_captured, check_manifest};

/// The manifest text (`etw-manifest/gate.man`).
pub const MANIFEST_XML: &str = include_str!("../gate.man");
/// The WPR recording profile (`wpr-profiles/gate.wprp`).
pub const WPRP_XML: &str = include_str!("../../wpr-profiles/gate.wprp");
/// The WPA view profile (`wpr-profiles/gate.wpaProfile`).
pub const WPA_PROFILE_XML: &str = include_str!("../../wpr-profiles/gate.wpaProfile");
