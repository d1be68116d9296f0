//! The Windows backend with real processes, run under Wine in CI
//! (`scripts/windows-test`): inheritance through the broker scoped to one
//! child, `DuplicateHandle` into a running process, read-only handles the
//! kernel enforces, and handle values from elsewhere validated.
#![cfg(windows)]

mod common;

use std::io::{BufRead, Write};
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::process::Stdio;

use common::{child, invalid_handle, role, unique_name, Reaped, TIMEOUT};
use memshare::{CommandExt, Error, Segment};
use windows_sys::Win32::Foundation::{GetLastError, ERROR_ACCESS_DENIED, HANDLE};
use windows_sys::Win32::System::Memory::{MapViewOfFile, FILE_MAP_READ, FILE_MAP_WRITE};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// Where children report back in the shared segment: a length, then text.
const REPORT: u64 = 1024;

fn write_report(segment: &Segment, text: &str) {
    let view = segment.map(REPORT..REPORT + 512).unwrap();
    view.write_at(0, &(text.len() as u32).to_le_bytes())
        .unwrap();
    view.write_at(4, text.as_bytes()).unwrap();
}

fn read_report(segment: &Segment) -> String {
    let view = segment.map_readonly(REPORT..REPORT + 512).unwrap();
    let mut len = [0u8; 4];
    view.read_at(0, &mut len).unwrap();
    let mut text = vec![0u8; u32::from_le_bytes(len) as usize];
    view.read_at(4, &mut text).unwrap();
    String::from_utf8(text).unwrap()
}

/// The value that would hand `segment`'s handle in this process to
/// process `to`, as `Segment::duplicate_into` writes it.
fn value_for_handle(raw: usize, len: u64, access: &str, to: u32) -> String {
    format!(
        "v1;handle={raw};id=0:0;len={len};access={access};parent={};to={to}",
        std::process::id()
    )
}

#[test]
fn a_child_takes_its_segment_from_the_parent_broker() {
    if role().as_deref() == Some("taker") {
        let segment = Segment::inherited("frames").unwrap();
        let mut buf = [0u8; 6];
        segment
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"parent");
        segment
            .map(..)
            .unwrap()
            .write_at(100, b"child was here")
            .unwrap();
        // A key is taken once.
        let again = invalid_handle(Segment::inherited("frames"));
        assert!(again.contains("taken already"), "{again}");
        return;
    }
    let segment = Segment::create(1 << 20).unwrap();
    segment.map(..).unwrap().write_at(0, b"parent").unwrap();
    let mut cmd = child("a_child_takes_its_segment_from_the_parent_broker", "taker");
    cmd.share("frames", &segment);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    let mut buf = [0u8; 14];
    segment
        .map_readonly(..)
        .unwrap()
        .read_at(100, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"child was here");
}

#[test]
fn inheritance_is_scoped_to_one_child() {
    const TEST: &str = "inheritance_is_scoped_to_one_child";
    match role().as_deref() {
        Some("first") => {
            let segment = Segment::inherited("data").unwrap();
            // Report this process's handle value, as a sibling would be
            // told it.
            let raw = segment.as_handle().as_raw_handle() as usize;
            let value = value_for_handle(raw, segment.len(), "rw", std::process::id());
            write_report(&segment, &value);
            // Stay alive (the handle stays open) until the parent is done.
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            return;
        }
        Some("sibling") => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            let (env_value, first_value) = line.trim_end().split_once('|').unwrap();
            // The first child's environment value: its token is spent.
            let err = invalid_handle(Segment::inherited_from("stolen", env_value));
            assert!(err.contains("taken already"), "{err}");
            // The first child's handle value, as made for it: refused.
            let err = invalid_handle(Segment::inherited_from("stolen", first_value));
            assert!(err.contains("duplicated into process"), "{err}");
            // The same value re-addressed to this process: its token (the
            // first child's value carries none) gets nothing from the
            // parent, and the handle number is never taken as such.
            let (front, _) = first_value.rsplit_once(";to=").unwrap();
            let forged = format!("{front};to={}", std::process::id());
            let err = invalid_handle(Segment::inherited_from("stolen", &forged));
            assert!(
                err.contains("offers no segments") || err.contains("no segment under this token"),
                "{err}"
            );
            println!("sibling refused all three");
            return;
        }
        _ => {}
    }
    let segment = Segment::create(1 << 16).unwrap();
    let mut first_cmd = child(TEST, "first");
    first_cmd.share("data", &segment).stdin(Stdio::piped());
    let env_value = first_cmd
        .get_envs()
        .find(|(k, _)| *k == "MEMSHARE_SEGMENT_DATA")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // Both children are spawned at the same moment.
    let mut sibling_cmd = child(TEST, "sibling");
    sibling_cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut first = Reaped::spawn(first_cmd);
    let mut sibling = Reaped::spawn(sibling_cmd);
    let first_value = common::wait_for(TIMEOUT, || {
        let v = read_report(&segment);
        (!v.is_empty()).then_some(v)
    });
    let sibling_child = sibling.0.as_mut().unwrap();
    writeln!(
        sibling_child.stdin.take().unwrap(),
        "{env_value}|{first_value}"
    )
    .unwrap();
    let out = sibling.0.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "sibling failed: {}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sibling refused all three"));
    drop(first.0.as_mut().unwrap().stdin.take());
    first.wait_success(TIMEOUT);
}

#[test]
fn a_segment_is_duplicated_into_a_running_process() {
    if role().as_deref() == Some("receiver") {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
        let segment = Segment::inherited_from("pipe", line.trim_end()).unwrap();
        assert_eq!(segment.len(), 3 * 4096 + 7);
        let mut buf = [0u8; 5];
        segment
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"hello");
        segment.map(..).unwrap().write_at(5, b", parent").unwrap();
        return;
    }
    let name = unique_name("dup");
    let segment = Segment::create_named(&name, 3 * 4096 + 7).unwrap();
    segment.map(..).unwrap().write_at(0, b"hello").unwrap();
    let mut cmd = child("a_segment_is_duplicated_into_a_running_process", "receiver");
    cmd.stdin(Stdio::piped());
    let mut receiver = Reaped::spawn(cmd);
    let process = receiver.0.as_mut().unwrap();
    // The child is running; it gets the handle and, over its stdin, the value.
    let value = segment.duplicate_into(&*process).unwrap();
    assert!(value.contains(&format!(";to={}", process.id())), "{value}");
    assert!(value.ends_with(&format!(";name={name}")), "{value}");
    writeln!(process.stdin.take().unwrap(), "{value}").unwrap();
    receiver.wait_success(TIMEOUT);
    let mut buf = [0u8; 13];
    segment
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"hello, parent");
}

#[test]
fn a_readonly_handle_cannot_be_mapped_or_duplicated_writable() {
    let segment = Segment::create(1 << 16).unwrap();
    let writer = segment.map(..).unwrap();
    let readonly = segment.to_readonly().unwrap();
    assert!(readonly.is_readonly());
    assert!(matches!(
        readonly.map(..),
        Err(Error::PermissionDenied { .. })
    ));
    writer.write_at(0, b"still writable").unwrap();
    let mut buf = [0u8; 14];
    readonly
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"still writable");

    let raw = readonly.as_handle().as_raw_handle() as HANDLE;
    // Past memshare: the kernel refuses a writable view of the handle...
    // SAFETY: a view the kernel refuses; on success it would be leaked,
    // which the assertion reports.
    let view = unsafe { MapViewOfFile(raw, FILE_MAP_WRITE, 0, 0, 4096) };
    assert!(
        view.Value.is_null(),
        "a writable view of a read-only handle"
    );
    // SAFETY: reads this thread's last error.
    assert_eq!(unsafe { GetLastError() }, ERROR_ACCESS_DENIED);
    // ...and a duplicate of it with write access.
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates within this process; a handle made by mistake is
    // reported by the assertion.
    let ok = unsafe {
        let me = GetCurrentProcess();
        windows_sys::Win32::Foundation::DuplicateHandle(
            me,
            raw,
            me,
            &mut dup,
            FILE_MAP_READ | FILE_MAP_WRITE,
            0,
            0,
        )
    };
    assert_eq!(ok, 0, "a read-only handle was duplicated with write access");
    // SAFETY: reads this thread's last error.
    assert_eq!(unsafe { GetLastError() }, ERROR_ACCESS_DENIED);

    // A named segment opened read-only: the same refusal from the kernel.
    let name = unique_name("ro");
    let creator = Segment::create_named(&name, 4096).unwrap();
    let reader = Segment::open_readonly(&name).unwrap();
    let raw = reader.as_handle().as_raw_handle() as HANDLE;
    // SAFETY: as above.
    let view = unsafe { MapViewOfFile(raw, FILE_MAP_WRITE, 0, 0, 4096) };
    assert!(view.Value.is_null());
    // Named segments have no read-only handles: anyone with the name may
    // open them writable.
    assert!(matches!(
        creator.to_readonly(),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn handle_values_that_are_not_the_claimed_section_are_refused() {
    let me = std::process::id();
    let segment = Segment::create(8192).unwrap();
    let raw = segment.as_handle().as_raw_handle() as usize;
    // Values are claims on a broker's offer, never raw handles to take:
    // a value naming a handle this process already owns gets nothing.
    for (value, expect) in [
        (
            value_for_handle(raw, 8192, "rw", me),
            "has no segment under this token",
        ),
        (
            value_for_handle(raw, 8192, "rw", me + 1),
            "duplicated into process",
        ),
        (
            "v1;handle=x;id=0:0;len=1;access=rw;parent=1;to=1".to_owned(),
            "not a number",
        ),
        (
            "error;the parent ran out of handles".to_owned(),
            "could not share it",
        ),
    ] {
        let err = invalid_handle(Segment::inherited_from("test", &value));
        assert!(err.contains(expect), "{value}: {err}");
    }
    // A real offer with a lying claim: the handle the broker made is
    // checked against it, refused, and closed.
    // SAFETY: the current-process pseudo-handle, valid for the call.
    let here = unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(-1isize as _) };
    for (from, to, expect) in [
        ("access=rw", "access=ro", "claimed read-only"),
        ("len=8192", "len=4096", "not the 4096"),
    ] {
        let value = segment.duplicate_into(&here).unwrap().replace(from, to);
        let err = invalid_handle(Segment::inherited_from("test", &value));
        assert!(err.contains(expect), "{value}: {err}");
    }
    // Taking a handle from a process: pseudo-handles, closed values and
    // handles to other kinds of objects are refused, and left alone.
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    for (value, expect) in [
        (-1, "not a handle value"),
        (0, "not a handle value"),
        (0x7ff0, "no such handle"),
        (file.as_raw_handle() as i32, "File handle, not a section"),
    ] {
        let err = invalid_handle(Segment::take_from_process(me, value));
        assert!(err.contains(expect), "{value}: {err}");
    }
    assert!(file.metadata().is_ok());
    segment.map(..).unwrap().write_at(0, b"ok").unwrap();
    // What is taken carries memshare's access only, and a section that was
    // not made here gets no read-only handle (its DACL is not memshare's).
    let taken = Segment::take_from_process(me, raw as i32).unwrap();
    assert!(matches!(
        taken.to_readonly(),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn names_live_with_their_holders_and_cannot_persist_or_be_removed() {
    let name = unique_name("life");
    assert!(matches!(
        Segment::options().persist(true).create_named(&name, 4096),
        Err(Error::Unsupported { .. })
    ));
    let segment = Segment::create_named(&name, 4096).unwrap();
    assert!(matches!(
        Segment::remove(&name),
        Err(Error::Unsupported { .. })
    ));
    drop(segment);
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    assert_eq!(memshare::allocation_granularity(), 65536);
}

#[test]
fn a_named_segment_is_opened_by_name_in_another_process_and_outlives_its_creator_handle() {
    const TEST: &str =
        "a_named_segment_is_opened_by_name_in_another_process_and_outlives_its_creator_handle";
    if let Some(name) = role().as_deref().and_then(|r| r.strip_prefix("opener:")) {
        let segment = Segment::open(name).unwrap();
        // Sizes of opened sections are whole pages on Windows.
        assert_eq!(segment.len(), 8192);
        let mut buf = [0u8; 7];
        segment
            .map_readonly(..)
            .unwrap()
            .read_at(5000, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"creator");
        segment.map(..).unwrap().write_at(6000, b"opener").unwrap();
        assert!(matches!(
            Segment::create_named(name, 4096),
            Err(Error::AlreadyExists { .. })
        ));
        return;
    }
    let name = unique_name("byname");
    let creator = Segment::create_named(&name, 5000 + 3000).unwrap();
    let view = creator.map(..).unwrap();
    view.write_at(5000, b"creator").unwrap();
    // The creator's handle goes; its view keeps the section and the name.
    drop(creator);
    Reaped::spawn(child(TEST, &format!("opener:{name}"))).wait_success(TIMEOUT);
    let mut buf = [0u8; 6];
    view.read_at(6000, &mut buf).unwrap();
    assert_eq!(&buf, b"opener");
    drop(view);
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn a_segment_is_taken_from_a_process_that_did_not_offer_it() {
    const TEST: &str = "a_segment_is_taken_from_a_process_that_did_not_offer_it";
    if role().as_deref() == Some("holder") {
        let segment = Segment::create(3 * 4096).unwrap();
        segment
            .map(..)
            .unwrap()
            .write_at(0, b"from the child")
            .unwrap();
        let raw = segment.as_handle().as_raw_handle() as usize;
        let stdin = std::io::stdin();
        let other = stdin.as_handle().as_raw_handle() as usize;
        println!("HANDLES {raw} {other}");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        stdin.lock().read_line(&mut line).unwrap();
        let mut buf = [0u8; 6];
        segment
            .map_readonly(..)
            .unwrap()
            .read_at(100, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"parent");
        return;
    }
    let mut cmd = child(TEST, "holder");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut holder = Reaped::spawn(cmd);
    let process = holder.0.as_mut().unwrap();
    let pid = process.id();
    let mut out = std::io::BufReader::new(process.stdout.take().unwrap());
    let mut line = String::new();
    // libtest's own output comes first and around ("test name ... " on the
    // same line): the values follow the marker.
    let (raw, other) = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child said nothing"
        );
        let Some((_, values)) = line.split_once("HANDLES ") else {
            continue;
        };
        let mut words = values.split_whitespace().map(str::parse::<i32>);
        if let (Some(Ok(a)), Some(Ok(b)), None) = (words.next(), words.next(), words.next()) {
            break (a, b);
        }
    };
    let taken = Segment::take_from_process(pid, raw).unwrap();
    assert_eq!(taken.len(), 3 * 4096);
    assert!(!taken.is_readonly());
    let mut buf = [0u8; 14];
    taken
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"from the child");
    taken.map(..).unwrap().write_at(100, b"parent").unwrap();
    // Its stdin is a pipe, not a section; a made-up value is not a handle.
    let err = invalid_handle(Segment::take_from_process(pid, other));
    assert!(err.contains("not a section"), "{err}");
    assert!(matches!(
        Segment::take_from_process(pid, -1),
        Err(Error::InvalidHandle { .. })
    ));
    writeln!(process.stdin.take().unwrap()).unwrap();
    holder.wait_success(TIMEOUT);
}
