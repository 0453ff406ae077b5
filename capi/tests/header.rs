//! The checked-in C header must be what cbindgen makes of the current exports.

use std::path::Path;

#[test]
fn include_sheaf_h_matches_the_exports() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/sheaf.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("config");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    if std::env::var_os("SHEAF_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/sheaf.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/sheaf.h is out of date with capi/src: run \
         `SHEAF_BLESS=1 cargo test -p sheaf-capi --test header` and commit the result"
    );
}
