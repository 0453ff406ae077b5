//! Fuzzes the reading of a generation file (a catalog with generation metadata, levels and
//! path filters) and the filter's questions, on bytes whose catalog checksum holds or not.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sheaf::format::parse_untrusted_generation(data);
});
