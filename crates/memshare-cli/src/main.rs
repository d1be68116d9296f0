//! The `memshare` command-line tool.

use clap::Parser;

/// Shared memory between processes: benchmark, demonstrate and inspect it.
#[derive(Parser, Debug)]
#[command(name = "memshare", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
