//! `decode_message` on arbitrary bytes: a clean `Ok` or `Err`, never a
//! panic; whatever it accepts, `encode_message` gives back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = memshare::share::decode_message(data) {
        let encoded =
            memshare::share::encode_message(&entries).expect("a decoded message must encode again");
        assert_eq!(encoded, data, "decode then encode must round-trip");
    }
});
