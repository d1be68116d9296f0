//! Sizes and offsets on the command line: `4096`, `64K`, `1G`, `2GiB`.
//!
//! Units are powers of 1024 (`K` = `KiB` = 1024, `M`/`MiB`, `G`/`GiB`,
//! `T`/`TiB`, `P`/`PiB`, `E`/`EiB`), in either case. `KB`, `MB`… are refused:
//! they mean 1000 to some and 1024 to others.

/// The units, by the power of 1024 they stand for.
const UNITS: [(char, u32); 6] = [('K', 1), ('M', 2), ('G', 3), ('T', 4), ('P', 5), ('E', 6)];

/// A number of bytes, 0 allowed: an offset.
pub fn parse_offset(text: &str) -> Result<u64, String> {
    parse_bytes(text)
}

/// A number of bytes, at least 1: a size or a length.
pub fn parse_size(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        0 => Err(format!("{text:?} is zero: a size must be at least 1 byte")),
        n => Ok(n),
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a number of bytes (examples: 4096, 64K, 1G)"
        ));
    }
    let multiplier = unit_multiplier(text, digits, unit)?;
    let too_large = || {
        format!(
            "{text:?} is too large: the largest number of bytes is {} (16E - 1)",
            u64::MAX
        )
    };
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    number.checked_mul(multiplier).ok_or_else(too_large)
}

fn unit_multiplier(text: &str, digits: &str, unit: &str) -> Result<u64, String> {
    if unit.is_empty() {
        return Ok(1);
    }
    let mut chars = unit.chars();
    let letter = chars.next().map(|c| c.to_ascii_uppercase());
    let rest = chars.as_str();
    let power = UNITS
        .iter()
        .find(|(u, _)| Some(*u) == letter)
        .map(|&(_, power)| power);
    match (power, rest.to_ascii_lowercase().as_str()) {
        (Some(power), "" | "ib") => Ok(1u64 << (10 * power)),
        (Some(_), "b") => {
            let letter = letter.unwrap_or('K');
            Err(format!(
                "{text:?} is ambiguous ({unit} means 1000 to some, 1024 to others): \
                 write {digits}{letter} or {digits}{letter}iB (powers of 1024), or the number of bytes"
            ))
        }
        _ => Err(format!(
            "{text:?} has an unknown unit {unit:?}: use K, M, G, T, P or E \
             (powers of 1024, also written KiB, MiB…), or no unit for bytes"
        )),
    }
}

/// `n` the way [`parse_size`] reads it back: with the largest unit that
/// divides it exactly (`64K`, `1G`), else in bytes.
pub fn format_size(n: u64) -> String {
    for &(unit, power) in UNITS.iter().rev() {
        let scale = 1u64 << (10 * power);
        if n >= scale && n % scale == 0 {
            return format!("{}{unit}", n / scale);
        }
    }
    n.to_string()
}

/// `n` for people, rounded to one decimal of the largest unit it reaches:
/// `23.5G`, `512.0K`, `100` (bytes).
#[cfg_attr(not(unix), allow(dead_code))]
pub fn format_approx(n: u64) -> String {
    for &(unit, power) in UNITS.iter().rev() {
        let scale = 1u64 << (10 * power);
        if n >= scale {
            return format!("{:.1}{unit}", n as f64 / scale as f64);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_every_unit() {
        assert_eq!(parse_size("1"), Ok(1));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4kib"), Ok(4096));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        assert_eq!(parse_size("1E"), Ok(1 << 60));
        assert_eq!(parse_size("15E"), Ok(15 << 60));
        assert_eq!(parse_offset("0"), Ok(0));
        assert_eq!(parse_offset("0K"), Ok(0));
        assert_eq!(parse_offset("007"), Ok(7));
        assert_eq!(parse_offset(&u64::MAX.to_string()), Ok(u64::MAX));
    }

    #[test]
    fn zero_is_no_size() {
        assert!(parse_size("0").unwrap_err().contains("at least 1 byte"));
        assert!(parse_size("0G").unwrap_err().contains("at least 1 byte"));
    }

    #[test]
    fn overflow_is_refused() {
        assert!(parse_size("16E").unwrap_err().contains("too large"));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_offset("99999999999999999999999K")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn garbage_is_refused() {
        for text in ["", "K", "-1", "+1", " 1", "1 ", "1.5G", "0x10", "abc"] {
            assert!(parse_offset(text).is_err(), "{text:?} was accepted");
        }
        assert!(parse_size("4X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("4Kib2").unwrap_err().contains("unknown unit"));
        assert!(parse_size("4KB").unwrap_err().contains("ambiguous"));
        assert!(parse_size("4mb").unwrap_err().contains("ambiguous"));
        assert!(parse_size("4B").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_size(1), "1");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(4096), "4K");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(8 << 30), "8G");
        assert_eq!(format_size(1 << 60), "1E");
        for n in [1, 4095, 4096, 12345 << 20, u64::MAX, 15 << 60] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }

    #[test]
    fn approximations() {
        assert_eq!(format_approx(100), "100");
        assert_eq!(format_approx(1536), "1.5K");
        assert_eq!(format_approx(24684092 << 10), "23.5G");
        assert_eq!(format_approx(u64::MAX), "16.0E");
    }
}
