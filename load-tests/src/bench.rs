//! Bench (placeholder until written).
use anyhow::Result;
#[derive(clap::Args, Debug)]
pub struct Args {}
pub fn run(_a: &Args) -> Result<bool> {
    anyhow::bail!("not yet")
}
