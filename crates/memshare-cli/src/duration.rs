//! Durations on the command line: `500ms`, `2s`, `1.5s`, `3m`, `1h`; a
//! bare number is seconds.

use std::time::Duration;

/// The units, with how many seconds each stands for.
const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// The longest duration accepted: a day (longer waits are mistakes).
const MAX_SECONDS: f64 = 86_400.0;

/// A duration from 0 to a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    // `f64::from_str` also takes "inf", "1e3", "+1": only digits and one
    // point get here.
    let value: f64 = match number.parse() {
        Ok(value) if !number.starts_with('.') && !number.ends_with('.') => value,
        _ => {
            return Err(format!(
                "{text:?} is not a duration (examples: 500ms, 2s, 1.5s, 3m)"
            ))
        }
    };
    let scale = if unit.is_empty() {
        1.0
    } else {
        UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|&(_, scale)| scale)
            .ok_or_else(|| {
                format!(
                    "{text:?} has an unknown unit {unit:?}: use ms, s, m or h (no unit: seconds)"
                )
            })?
    };
    let seconds = value * scale;
    if seconds > MAX_SECONDS {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `d` for messages: `500ms`, `2s`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_bare_seconds() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn garbage_is_refused() {
        for text in ["", "s", "-1s", "+1s", "inf", "1.s", ".5s", "1.2.3s", " 1s"] {
            assert!(
                parse_duration(text).unwrap_err().contains("not a duration"),
                "{text:?}"
            );
        }
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("1e3").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5sec").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("25h")
            .unwrap_err()
            .contains("longer than a day"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
