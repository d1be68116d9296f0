//! `memshare create NAME SIZE`: a persistent named segment.

use memshare::Segment;

use crate::fail::Failure;
#[cfg(unix)]
use crate::size::format_approx;
use crate::size::{format_size, parse_size};

/// Create a named segment of SIZE zero bytes; it stays until `memshare rm`
///
/// A name made from the command line outlives the command: it persists,
/// like a file, until `memshare rm NAME` removes it. (A segment with the
/// usual shared lifetime would vanish as soon as this command exits, its
/// only holder.) The segment is readable and writable by your user only
/// (mode 0600); programs open it by name (memshare's `Segment::open`,
/// Python's `shared_memory.SharedMemory(NAME)`), and `memshare write` fills it.
/// One line on standard output says what was created (none with --quiet).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The name: 1 to 30 of A-Z a-z 0-9 . _ -, not starting with '.'
    name: String,
    /// The size: bytes, or with a unit: K, M, G, T, P, E (powers of 1024;
    /// KiB, MiB… also accepted)
    #[arg(value_parser = parse_size)]
    size: u64,
    /// Make it persistent. This is what `create` always does (see above);
    /// the flag is accepted so that a command can say so
    #[arg(long)]
    persist: bool,
    /// Print nothing on success (by default, one line says what was created)
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    // Every name made here persists, with or without --persist.
    let _ = args.persist;
    memshare::validate_name(&args.name)?;
    // Named segments are sparse: a size beyond the file system that holds
    // them is accepted by the system, but could never be filled.
    #[cfg(unix)]
    if let Ok(capacity) = memshare::inspect::named_capacity() {
        if args.size > capacity {
            return Err(Failure::usage(format!(
                "size {} ({} bytes) is larger than the whole shared-memory file system \
                 ({}): the segment could never be filled",
                format_size(args.size),
                args.size,
                format_approx(capacity)
            )));
        }
    }
    Segment::options()
        .persist(true)
        .create_named(&args.name, args.size)?;
    if args.quiet {
        return Ok(());
    }
    let size = match format_size(args.size) {
        bytes if bytes == args.size.to_string() => format!("{bytes} bytes"),
        with_unit => format!("{with_unit} = {} bytes", args.size),
    };
    super::print_stdout(&format!(
        "created {} ({size}), persists until memshare rm\n",
        args.name
    ))
}
