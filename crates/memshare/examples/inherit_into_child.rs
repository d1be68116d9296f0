//! A child inherits an anonymous segment: the parent shares it with the one
//! child it spawns (`CommandExt::share`, under a key), and the child (this
//! same program, started again with the argument `child`) takes it with
//! `Segment::inherited`. The segment has no name at any moment, so no
//! other process can open it; other children spawned at the same time get
//! nothing.
//!
//! ```text
//! cargo run -p memshare --example inherit_into_child
//! ```

use std::process::Command;

use memshare::{CommandExt, Result, Segment};

/// The key both sides agree on.
const KEY: &str = "frames";

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let segment = Segment::create(4096)?;
    let view = segment.map(..)?;
    view.write_at(0, b"frame 1 of 1")?;
    println!(
        "parent: created an anonymous segment ({} bytes) and wrote a frame",
        segment.len()
    );

    let exe = std::env::current_exe().expect("the path of this program");
    let status = Command::new(exe)
        .arg("child")
        .share(KEY, &segment)
        .status()
        .expect("start the child");
    assert!(status.success(), "the child failed: {status}");

    let mut reply = [0u8; 8];
    view.read_at(2048, &mut reply)?;
    println!(
        "parent: the child wrote back {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}

fn child() -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let segment = Segment::inherited(KEY)?;
    let view = segment.map(..)?;
    let mut frame = [0u8; 12];
    view.read_at(0, &mut frame)?;
    println!(
        "child:  inherited {} bytes under {KEY:?} and read {:?}",
        segment.len(),
        String::from_utf8_lossy(&frame)
    );
    // Each key is taken once: a second take is refused, with the reason.
    match Segment::inherited(KEY) {
        Ok(_) => panic!("the same inherited segment was taken twice"),
        Err(e) => println!("child:  taking it again is refused: {e}"),
    }
    view.write_at(2048, b"received")?;
    Ok(())
}
