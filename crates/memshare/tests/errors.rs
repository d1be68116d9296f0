//! Errors a caller can match on, that fit `io::Result` code, and that keep
//! the operating system's error as their source.

mod common;

use std::error::Error as _;
use std::io;

use common::unique_name;
use memshare::{Error, Segment};

#[test]
fn an_os_error_stays_the_source_of_the_variant_it_became() {
    // NotFound from the system's ENOENT.
    let err = Segment::open(&unique_name("absent")).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let source = err.source().expect("NotFound keeps the OS error");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    // ENOENT on Unix; on Windows ERROR_FILE_NOT_FOUND, or
    // ERROR_INVALID_HANDLE where the name is another kind of object (and
    // always under Wine).
    let expected: &[i32] = if cfg!(windows) { &[2, 6] } else { &[2] };
    assert!(
        io.raw_os_error()
            .is_some_and(|code| expected.contains(&code)),
        "{io:?}"
    );

    // AlreadyExists from the system's EEXIST (Windows: ERROR_ALREADY_EXISTS).
    let name = unique_name("taken");
    let first = Segment::create_named(&name, 4096).unwrap();
    let err = Segment::create_named(&name, 4096).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        os_code(&err, "AlreadyExists"),
        if cfg!(windows) { 183 } else { 17 }
    );
    drop(first);

    #[cfg(target_os = "linux")]
    {
        // NotFound from ESRCH: no process has the largest pid there can be.
        let err = Segment::take_from_process(i32::MAX as u32, 3).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(os_code(&err, "NotFound (no process)"), 3);
        // NotFound from ENOENT, looking for who holds an absent name.
        let err = memshare::inspect::holder_pids(&unique_name("absent")).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(os_code(&err, "NotFound (holders)"), 2);
    }
}

/// The operating system's error code behind `err`, which must be its source.
fn os_code(err: &Error, what: &str) -> i32 {
    let source = err
        .source()
        .unwrap_or_else(|| panic!("{what} keeps the OS error: {err:?}"));
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    io.raw_os_error()
        .unwrap_or_else(|| panic!("{what}: not an OS error: {io:?}"))
}

#[test]
fn every_error_has_an_io_kind_and_converts_to_io_error() {
    let cases: Vec<(Error, io::ErrorKind)> = vec![
        (
            Segment::open(&unique_name("absent")).unwrap_err(),
            io::ErrorKind::NotFound,
        ),
        (Segment::create(0).unwrap_err(), io::ErrorKind::InvalidInput),
        (
            Segment::create_named("bad/name", 1).unwrap_err(),
            io::ErrorKind::InvalidInput,
        ),
        (
            Segment::inherited("no_such_key_here").unwrap_err(),
            io::ErrorKind::InvalidInput,
        ),
        (
            Segment::inherited("not a key").unwrap_err(),
            io::ErrorKind::InvalidInput,
        ),
    ];
    for (err, kind) in cases {
        assert_eq!(err.kind(), kind, "{err}");
        let message = err.to_string();
        let io: io::Error = err.into();
        assert_eq!(io.kind(), kind);
        assert_eq!(io.to_string(), message);
        // The memshare error is inside, for whoever wants it back.
        assert!(io.get_ref().unwrap().downcast_ref::<Error>().is_some());
    }
}

#[test]
fn an_unknown_inheritance_key_is_invalid_input_naming_the_key() {
    match Segment::inherited("no_such_key_either") {
        Err(e @ Error::InvalidInput { .. }) => {
            let text = e.to_string();
            assert!(text.contains("no_such_key_either"), "{text}");
            assert!(text.contains("no segment was shared"), "{text}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn io_result_code_can_use_question_mark() {
    fn open(name: &str) -> io::Result<Segment> {
        Ok(Segment::open(name)?)
    }
    assert_eq!(
        open(&unique_name("q")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}
