//! Fuzzes the Arrow index-block decoders of containers and catalogs directly, past the
//! checksums that would stop most random inputs in front of them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sheaf::format::parse_untrusted_index(data);
});
