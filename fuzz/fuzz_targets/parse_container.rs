//! Fuzzes the footer, index and entry decoding of containers (and catalogs) with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sheaf::format::parse_untrusted(data);
});
