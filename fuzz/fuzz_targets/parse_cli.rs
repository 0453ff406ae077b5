//! Fuzzes what the command line parses from its arguments: sizes (`4MiB`, `1.5GiB`),
//! durations (`7d`) and dataset locations (a path, `file://`, or an `s3://`, `gs://` or
//! `az://` URI, whose client is configured without a request being made).
#![no_main]

use std::os::unix::ffi::OsStrExt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let location = std::ffi::OsStr::from_bytes(data);
    if let Ok(sheaf::store::Location::Uri(uri)) = sheaf::store::locate(location) {
        assert!(uri.contains("://"), "{uri:?} taken for a URI");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(size) = sheaf::units::parse_size(text) {
        // What a size parses to reads back as itself, in bytes and in its largest unit.
        assert_eq!(sheaf::units::parse_size(&size.to_string()), Ok(size));
        let shift = [40, 30, 20, 10, 0]
            .into_iter()
            .find(|&s| size % (1u64 << s) == 0)
            .unwrap_or(0);
        let unit = ["B", "KiB", "MiB", "GiB", "TiB"][shift / 10];
        assert_eq!(
            sheaf::units::parse_size(&format!("{}{unit}", size >> shift)),
            Ok(size)
        );
    }
    let _ = sheaf::units::parse_duration(text);
    // HDFS URIs are left out: configuring their client may look the name service up.
    if !text.starts_with("hdfs://") && !text.starts_with("viewfs://") {
        if let Ok(store) = sheaf::store::open(text) {
            let _ = store.uri("key");
        }
    }
});
