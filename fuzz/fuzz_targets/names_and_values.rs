//! Segment names and inheritance values (`MEMSHARE_SEGMENT_<KEY>`) on
//! arbitrary strings: clean errors, never a panic. The inheritance value
//! goes through the pure parser only (no descriptor is ever adopted: that
//! would take over the fuzzer's own file descriptors).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memshare::share::__fuzz_parse_inherit_value as parse_value;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if memshare::validate_name(s).is_ok() {
        // What the rules promise about an accepted name.
        assert!(!s.is_empty() && s.len() <= memshare::MAX_NAME_LEN);
        assert!(!s.starts_with('.'));
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
    }
    if let Some(canonical) = parse_value(s) {
        // The canonical form is accepted again, unchanged.
        assert_eq!(parse_value(&canonical).as_deref(), Some(canonical.as_str()));
    }
    // A name field made of the input: the value parser checks it like
    // validate_name does.
    let with_name = format!("v1;handle=3;id=1:2;len=4096;access=rw;parent=1;name={s}");
    if !s.contains(';') {
        assert_eq!(
            parse_value(&with_name).is_some(),
            memshare::validate_name(s).is_ok(),
            "{with_name:?}"
        );
    }
});
