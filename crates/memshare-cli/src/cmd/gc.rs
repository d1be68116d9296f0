//! `memshare gc`: remove stale names.

use crate::fail::{Failure, Failures};

/// Remove stale names: segments with a shared lifetime whose holders all died
///
/// A segment with the shared lifetime is removed by its last holder when
/// that holder drops it. If its last holders die instead (killed, crashed),
/// the name is already gone for memshare (opening it says not found), but
/// the object stays in /dev/shm until someone opens or creates that name
/// again. `gc` removes such stale names now. Persistent and foreign
/// segments are never touched, and a name that a process holds is never
/// removed: each one is checked again under an exclusive lock. Prints each
/// name removed, or `nothing to collect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only print the names that would be removed
    #[arg(long)]
    dry_run: bool,
    /// Only look at these names (default: every named segment)
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut failures = Failures::default();
    let candidates = if args.names.is_empty() {
        memshare::inspect::list_named()?
    } else {
        args.names
            .iter()
            .filter_map(|name| {
                memshare::inspect::named_info(name)
                    .map_err(|e| failures.add(e.into()))
                    .ok()
            })
            .collect()
    };
    let mut collected = 0;
    // A name memshare cannot open is another program's, even if it carries
    // memshare's lifetime marker: never memshare's to collect.
    let stale = candidates
        .iter()
        .filter(|info| info.valid_name && info.is_stale());
    for info in stale {
        if args.dry_run {
            super::print_stdout(&format!("would remove {}\n", info.name))?;
            collected += 1;
            continue;
        }
        match memshare::inspect::reclaim_stale(&info.name) {
            Ok(true) => {
                super::print_stdout(&format!("removed {}\n", info.name))?;
                collected += 1;
            }
            // Opened (or removed) by someone else since it was listed.
            Ok(false) => {}
            Err(e) => failures.add(e.into()),
        }
    }
    if collected == 0 && failures.is_empty() {
        super::print_stdout("nothing to collect\n")?;
    }
    failures.finish()
}
