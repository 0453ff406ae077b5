//! Fuzzes the reading of a routes table version (JSON) and the routing built from it: every
//! prefix, a path below it and the directories above it routed, the longest prefix winning.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sheaf::read::routes::route_untrusted(data);
});
