//! The project's commands: `cargo xtask <command>`.
//!
//! | command | what it does |
//! |---|---|
//! | `demo` | the main job: real clients, the driver's code (gate-sim) and nginx in namespaces, checked against the model (as root; otherwise the in-process gate-core demo); `--wine`: the same clients against the shipped gate.sys under Wine |
//! | `ci` | every check and test (what CI runs) |
//! | `driver` | builds gate.sys (and gate.pdb) for x86_64-pc-windows-msvc |
//! | `package` | the Windows operator's package (gate.sys, INF, install/uninstall scripts, guide) and its zip |
//!
//! Each command lives in its own module; `wine` is the Wine session the
//! driver's, the package's and the demo's Wine runs share; `deps` installs the Debian packages
//! a command needs (when root) or names exactly what is missing.

mod ci;
mod demo;
mod deps;
mod driver;
mod leakcheck;
mod package;
mod wine;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "The gate project's commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: fair clients and a flood through the gate, against the model.
    Demo(demo::Args),
    /// Run every check and test (rustfmt, clippy, tests, driver image checks).
    Ci(ci::Args),
    /// Build the Windows kernel driver gate.sys.
    Driver(driver::Args),
    /// Build the Windows operator's package (target/package/gate-<version>/ and its zip).
    Package(package::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(a) => demo::run(a),
        Command::Ci(a) => ci::run(a),
        Command::Driver(a) => driver::run(a),
        Command::Package(a) => package::run(a),
    }
}
