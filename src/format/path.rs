//! Entry paths: validation of untrusted names and the component order indexes are sorted by.
//!
//! See formats/SPEC.md, "Paths and their order".

use std::cmp::Ordering;

/// The byte that separates path components.
pub const SEPARATOR: u8 = b'/';

/// Compares two paths component by component.
///
/// This equals a byte-wise comparison in which `/` sorts before every other byte, so a
/// directory is immediately followed by its whole subtree (pre-order), and every subtree is one
/// contiguous run of an index.
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let rank = |byte: u8| {
        if byte == SEPARATOR {
            0u16
        } else {
            u16::from(byte) + 1
        }
    };
    match first_difference(a, b) {
        Some(i) => rank(a[i]).cmp(&rank(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

/// The first position at which `a` and `b` differ within their common length. Eight bytes at
/// a time: lookups compare paths that share long prefixes (`train/class_017/...`).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let common = a.len().min(b.len());
    let (a, b) = (&a[..common], &b[..common]);
    let mut start = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_le_bytes(x.try_into().expect("chunks of 8"));
        let y = u64::from_le_bytes(y.try_into().expect("chunks of 8"));
        if x != y {
            return Some(start + (x ^ y).trailing_zeros() as usize / 8);
        }
        start += 8;
    }
    (start..common).find(|&i| a[i] != b[i])
}

/// True when `path` lies strictly inside the directory `dir` (`dir` empty means the root).
pub fn is_inside(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() + 1 && path.starts_with(dir) && path[dir.len()] == SEPARATOR
}

/// Checks that `path` is a relative path that cannot step outside the dataset root.
///
/// Returns the reason it is not, for error messages.
pub fn check_entry_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.contains(&0) {
        return Err("contains a NUL byte");
    }
    if path[0] == SEPARATOR {
        return Err("absolute path");
    }
    for component in path.split(|&b| b == SEPARATOR) {
        match component {
            b"" => return Err("empty component (`//` or a trailing `/`)"),
            b"." => return Err("`.` component"),
            b".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Turns a user-supplied path into the form an index stores.
///
/// Leading `/` and `./`, repeated and trailing separators are dropped; `""`, `"."` and `"/"`
/// name the root (returned as an empty vector). `..` is rejected rather than resolved, because a
/// dataset path never refers outside its own tree.
pub fn normalize_user_path(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    if path.contains(&0) {
        return Err("contains a NUL byte");
    }
    let mut out = Vec::with_capacity(path.len());
    for component in path.split(|&b| b == SEPARATOR) {
        match component {
            b"" | b"." => continue,
            b".." => return Err("`..` component"),
            name => {
                if !out.is_empty() {
                    out.push(SEPARATOR);
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(out)
}

/// [`normalize_user_path`], its refusal an [`Error::InvalidPath`](crate::error::Error) naming
/// the path.
pub fn normalize(user_path: &[u8]) -> crate::error::Result<Vec<u8>> {
    normalize_user_path(user_path).map_err(|reason| crate::error::Error::InvalidPath {
        path: display(user_path),
        reason,
    })
}

/// The last component of a path (the whole path when it has no separator).
pub fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == SEPARATOR) {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// The parent directory of a path (empty for top-level entries).
pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == SEPARATOR) {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// Displays a byte path for messages, replacing invalid UTF-8.
pub fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The order SPEC.md defines, spelt out: byte-wise, with `/` before every other byte.
    fn reference_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        let rank = |x: &u8| if *x == b'/' { 0u16 } else { u16::from(*x) + 1 };
        a.iter().map(rank).cmp(b.iter().map(rank))
    }

    proptest! {
        #[test]
        fn cmp_paths_is_the_specified_order(
            prefix in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), Just(b'.'), Just(0xffu8)], 0..20),
            a in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), Just(b'-'), Just(b'b')], 0..20),
            b in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), Just(b'-'), Just(b'b')], 0..20),
        ) {
            let a = [prefix.as_slice(), &a].concat();
            let b = [prefix.as_slice(), &b].concat();
            prop_assert_eq!(super::cmp_paths(&a, &b), reference_order(&a, &b));
        }
    }

    proptest! {
        #[test]
        fn a_path_in_index_form_normalizes_to_itself(
            path in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(0u8)], 0..12),
        ) {
            if super::check_entry_path(&path).is_ok() {
                prop_assert_eq!(super::normalize_user_path(&path), Ok(path.clone()));
            }
        }
    }

    #[test]
    fn first_difference_finds_the_first_differing_byte_at_any_position() {
        let base: Vec<u8> = (0..40).map(|i| b'a' + i % 26).collect();
        for at in 0..base.len() {
            let mut other = base.clone();
            other[at] = b'/';
            assert_eq!(super::first_difference(&base, &other), Some(at));
            assert_eq!(super::first_difference(&base[..at], &other), None);
        }
        assert_eq!(super::first_difference(&base, &base), None);
    }

    use super::*;

    #[test]
    fn component_order_puts_subtrees_right_after_their_directory() {
        let mut paths: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a", b"a-b", b"a/b/c", b"a/c", b"b"];
        paths.sort_by(|a, b| cmp_paths(a, b));
        let expected: Vec<&[u8]> = vec![b"a", b"a/b", b"a/b/c", b"a/c", b"a-b", b"a.txt", b"b"];
        assert_eq!(paths, expected);
    }

    #[test]
    fn hostile_entry_paths_are_rejected() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"../x",
            b"a/../b",
            b"a/./b",
            b"a//b",
            b"a/",
            b"a\0b",
            b".",
            b"..",
        ] {
            assert!(
                check_entry_path(bad).is_err(),
                "{:?} accepted",
                display(bad)
            );
        }
        for good in [&b"a"[..], b"a/b.c", b"..a/b", b"a/.hidden", b"\xff\xfe/x"] {
            assert!(
                check_entry_path(good).is_ok(),
                "{:?} rejected",
                display(good)
            );
        }
    }

    #[test]
    fn user_paths_normalize_to_index_form() {
        assert_eq!(normalize_user_path(b"/").unwrap(), b"");
        assert_eq!(normalize_user_path(b".").unwrap(), b"");
        assert_eq!(normalize_user_path(b"./a//b/").unwrap(), b"a/b");
        assert!(normalize_user_path(b"a/../b").is_err());
    }

    #[test]
    fn inside_is_strict_and_component_aware() {
        assert!(is_inside(b"a/b", b"a"));
        assert!(!is_inside(b"a", b"a"));
        assert!(!is_inside(b"ab/c", b"a"));
        assert!(is_inside(b"x", b""));
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(file_name(b"a/b/c"), b"c");
        assert_eq!(parent(b"c"), b"");
    }
}
