//! Two processes share a named segment: the parent writes, the child (this
//! same program, started again) opens the name, reads and replies.
//!
//! ```text
//! cargo run -p memshare --example share_by_name
//! ```

use std::process::Command;

use memshare::{Result, Segment};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if let (Some(role), Some(name)) = (args.next(), args.next()) {
        if role == "child" {
            return child(&name);
        }
    }
    let name = format!("example-{}", std::process::id());
    let segment = Segment::create_named(&name, 4096)?;
    let view = segment.map(..)?;
    view.write_at(0, b"hello from the parent")?;
    println!(
        "parent: created {name:?} ({} bytes) and wrote a greeting",
        segment.len()
    );

    let exe = std::env::current_exe().expect("the path of this program");
    let status = Command::new(exe)
        .args(["child", &name])
        .status()
        .expect("start the child");
    assert!(status.success(), "the child failed: {status}");

    let mut reply = [0u8; 20];
    view.read_at(1024, &mut reply)?;
    println!(
        "parent: the child replied {:?}",
        String::from_utf8_lossy(&reply)
    );
    drop((view, segment));
    println!(
        "parent: dropped the last handle; the name is gone: {:?}",
        Segment::open(&name).err()
    );
    Ok(())
}

fn child(name: &str) -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let segment = Segment::open(name)?;
    let view = segment.map(..)?;
    let mut greeting = [0u8; 21];
    view.read_at(0, &mut greeting)?;
    println!(
        "child:  opened {name:?} and read {:?}",
        String::from_utf8_lossy(&greeting)
    );
    view.write_at(1024, b"hello from the child")?;
    Ok(())
}
