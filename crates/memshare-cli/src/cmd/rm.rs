//! `memshare rm NAME...`: remove names.

use memshare::Segment;

use crate::fail::{Failure, Failures};

/// Remove named segments
///
/// Like deleting a file: processes that hold a segment keep it and its
/// contents, but nobody can open it by name any more. Every name is tried:
/// each one removed gets a line on standard output (none with --quiet),
/// each one that cannot be removed an error line. A name that holds
/// something other than a shared-memory object is refused, and so is
/// another user's object unless --any-owner.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The names to remove
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Also remove names whose objects belong to another user (where the
    /// system allows it: root, or the owner of /dev/shm)
    #[arg(long)]
    any_owner: bool,
    /// Print nothing but errors (by default, one line per name removed)
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut failures = Failures::default();
    for name in &args.names {
        let removed = Segment::options()
            .allow_foreign_owner(args.any_owner)
            .remove(name);
        match removed {
            Ok(()) if args.quiet => {}
            Ok(()) => super::print_stdout(&format!("removed {name}\n"))?,
            Err(e) => failures.add(e.into()),
        }
    }
    failures.finish()
}
