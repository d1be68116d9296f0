//! `memshare rm NAME...`: remove names.

use memshare::Segment;

use crate::fail::{Failure, Failures};

/// Remove named segments
///
/// Like deleting a file: processes that hold a segment keep it and its
/// contents, but nobody can open it by name any more. Every name is tried;
/// each one that cannot be removed gets an error line.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The names to remove
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut failures = Failures::default();
    for name in &args.names {
        if let Err(e) = Segment::remove(name) {
            failures.add(e.into());
        }
    }
    failures.finish()
}
