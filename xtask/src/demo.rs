//! `cargo xtask demo`: fair clients and a flood through gate-core.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("the demo is not written yet")
}
