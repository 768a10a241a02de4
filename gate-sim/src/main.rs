//! gate-sim: the project's Linux front. gate-driver's own code
//! (`DriverEntry`, its WSK callbacks and workers) runs unchanged on
//! gate-usersim in a network namespace; real SYNs reach it through
//! NFQUEUE and are decided before the handshake; accepted connections are
//! real Linux sockets behind the simulated WSK connection sockets.
//!
//! Modules: [`options`] (flags, registry values, TOML), [`rules`] (the
//! NFQUEUE rules it installs and removes), [`events`] (ETW events as
//! counts and JSON lines), [`run`] (the life cycle and the report).

mod events;
mod options;
mod rules;
mod run;

fn main() {
    let o = match options::parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gate-sim: {e:#}");
            std::process::exit(2);
        }
    };
    let code = match run::run(&o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gate-sim: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
