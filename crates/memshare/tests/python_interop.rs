//! A named segment is plain bytes: Python's `multiprocessing.shared_memory`
//! sees what Rust wrote, and the other way round.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::{in_dev_shm, unique_name};
use memshare::Segment;

/// Runs a Python script with the segment's name as `sys.argv[1]`.
fn python(script: &str, name: &str) {
    let status = Command::new("python3")
        .args(["-c", script, name])
        .status()
        .expect("python3 must be installed (.ci/run installs it)");
    assert!(status.success(), "python failed: {status}");
}

/// Python 3.8-3.12 registers every SharedMemory it opens with its resource
/// tracker, which removes the name when Python exits; unregister so that
/// the name's lifetime stays the creator's business.
const PRELUDE: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name = sys.argv[1]
def untrack(shm):
    resource_tracker.unregister(shm._name, "shared_memory")
"#;

#[test]
fn python_reads_what_rust_wrote_and_rust_reads_the_reply() {
    let name = unique_name("py1");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    view.write_at(0, b"written by rust").unwrap();
    let script = format!(
        "{PRELUDE}
shm = shared_memory.SharedMemory(name=name)
untrack(shm)
assert shm.size == 4096, shm.size
assert bytes(shm.buf[:15]) == b'written by rust', bytes(shm.buf[:15])
shm.buf[100:117] = b'written by python'
shm.close()
"
    );
    python(&script, &name);
    let mut buf = [0u8; 17];
    view.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"written by python");
    drop((view, segment));
    assert!(!in_dev_shm(&name));
}

#[test]
fn rust_reads_what_python_wrote_and_python_reads_the_reply() {
    let name = unique_name("py2");
    let create = format!(
        "{PRELUDE}
shm = shared_memory.SharedMemory(name=name, create=True, size=8192)
untrack(shm)
shm.buf[:17] = b'written by python'
shm.close()
"
    );
    python(&create, &name);

    let segment = Segment::open(&name).unwrap();
    assert_eq!(segment.len(), 8192);
    let view = segment.map(..).unwrap();
    let mut buf = [0u8; 17];
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"written by python");
    view.write_at(4000, b"written by rust").unwrap();
    drop((view, segment));
    // Python made it: memshare leaves its name alone.
    assert!(in_dev_shm(&name));

    let check = format!(
        "{PRELUDE}
shm = shared_memory.SharedMemory(name=name)
assert bytes(shm.buf[4000:4015]) == b'written by rust', bytes(shm.buf[4000:4015])
shm.close()
shm.unlink()
"
    );
    python(&check, &name);
    assert!(!in_dev_shm(&name));
}
