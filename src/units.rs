//! Sizes and durations as people write them (`4MiB`, `1.5GiB`, `7d`), parsed exactly: the
//! command line's options (kept in the library so the fuzz targets reach them).

/// Parses a size such as `4096`, `512KiB`, `4MiB`, `1.5GiB`, `1G` (units are binary:
/// K = KiB); a fraction must come to a whole number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let invalid = || format!("invalid size {text:?}: expected e.g. 4MiB or 1.5GiB");
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 18 {
        return Err(invalid());
    }
    let whole: u64 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| invalid())?,
    };
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, GiB or TiB"
            ))
        }
    };
    let too_large = || format!("size {text:?} is too large");
    let whole_bytes = whole.checked_mul(1 << shift).ok_or_else(too_large)?;
    if fraction.is_empty() {
        return Ok(whole_bytes);
    }
    // fraction / 10^digits of the unit, in whole bytes only.
    let numerator = u128::from(fraction.parse::<u64>().map_err(|_| invalid())?) << shift;
    let denominator = 10u128.pow(fraction.len() as u32);
    if numerator % denominator != 0 {
        return Err(format!("size {text:?} is not a whole number of bytes"));
    }
    let fraction_bytes = u64::try_from(numerator / denominator).map_err(|_| too_large())?;
    whole_bytes
        .checked_add(fraction_bytes)
        .ok_or_else(too_large)
}

/// A duration such as `7d`, `12h`, `30m`, `45s` or `0`, for `gc --keep`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 7d, 12h, 30m or 45s"))?;
    let seconds = match unit {
        "" if number == 0 => 0,
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: give a unit, s, m, h or d (as in 7d)")),
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("4 parsecs").is_err());
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size("0.25KiB").unwrap(), 256);
        assert_eq!(parse_size(".5K").unwrap(), 512);
        assert!(parse_size("1.1KiB")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_size("1.5")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_size("1.2.3MiB").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_need_a_unit_and_fit() {
        assert_eq!(
            parse_duration("7d"),
            Ok(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(parse_duration("0"), Ok(std::time::Duration::ZERO));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615d")
            .unwrap_err()
            .contains("too long"));
    }
}
