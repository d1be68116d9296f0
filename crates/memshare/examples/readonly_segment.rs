//! A read-only segment: the parent writes, then gives a child a handle
//! through which nobody can write (`Segment::to_readonly`). The child
//! (this same program, started again with the argument `child`) can map it
//! only read-only: memshare refuses a writable view, and so would the
//! kernel, since the handle itself carries no write access.
//!
//! On Linux the segment is then write-sealed: no process can ever make a
//! writable view of it again, through any handle. On Windows holders of
//! writable handles (here the parent) still can (see
//! `Segment::is_write_sealed`).
//!
//! ```text
//! cargo run -p memshare --example readonly_segment
//! ```

use std::process::Command;

use memshare::{CommandExt, Result, Segment};

/// The key both sides agree on.
const KEY: &str = "config";

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let segment = Segment::create(4096)?;
    // Map what you will write first: once the read-only handle exists, no
    // new writable view can be made (Linux).
    let writer = segment.map(..)?;
    writer.write_at(0, b"configuration v1")?;
    let readonly = segment.to_readonly()?;
    println!("parent: wrote the configuration and made a read-only handle");

    let exe = std::env::current_exe().expect("the path of this program");
    let status = Command::new(exe)
        .arg("child")
        .share(KEY, &readonly)
        .status()
        .expect("start the child");
    assert!(status.success(), "the child failed: {status}");

    // The writable view made before still writes.
    writer.write_at(0, b"configuration v2")?;
    let mut now = [0u8; 16];
    readonly.map_readonly(..)?.read_at(0, &mut now)?;
    println!(
        "parent: its own earlier view still writes: {:?}",
        String::from_utf8_lossy(&now)
    );
    Ok(())
}

fn child() -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let config = Segment::inherited(KEY)?;
    println!(
        "child:  inherited a read-only handle: {}, write-sealed: {}",
        config.is_readonly(),
        config.is_write_sealed()
    );
    match config.map(..) {
        Ok(_) => panic!("a read-only segment was mapped writable"),
        Err(e) => println!("child:  a writable view is refused: {e}"),
    }
    let mut text = [0u8; 16];
    config.map_readonly(..)?.read_at(0, &mut text)?;
    println!("child:  read {:?}", String::from_utf8_lossy(&text));
    Ok(())
}
