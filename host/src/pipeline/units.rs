//! Sizes (`"512MiB"`) and durations (`"1h30m"`) as written in step limits, and as the host writes
//! them back for people (`512 MiB`, `1h30m`).

use std::time::Duration;

use super::spec::SizeValue;

/// What is wrong with a value, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) message: String,
    pub(crate) hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        hint: hint.into(),
    }
}

const SIZE_HINT: &str =
    "write a number of bytes, or a string like \"512MiB\" (units: B, KiB, MiB, GiB, KB, MB, GB)";

pub(crate) fn parse_size(value: &SizeValue) -> Result<u64, Problem> {
    let bytes = match value {
        SizeValue::Bytes(n) => u64::try_from(*n).unwrap_or(0),
        SizeValue::Text(text) => {
            let digits = text.bytes().take_while(u8::is_ascii_digit).count();
            let (number, unit) = text.split_at(digits);
            let unit = unit.strip_prefix(' ').unwrap_or(unit);
            if number.is_empty() {
                return Err(problem(format!("invalid size `{text}`"), SIZE_HINT));
            }
            let factor: u64 = match unit {
                "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                _ if unit.starts_with('.') => {
                    return Err(problem(
                        format!("size `{text}` is not a whole number"),
                        "use a smaller unit, e.g. \"1536MiB\" instead of \"1.5GiB\"",
                    ));
                }
                "" => {
                    return Err(problem(
                        format!("size `{text}` has no unit"),
                        format!(
                            "write \"{number}MiB\" or similar, or the integer {number} for bytes"
                        ),
                    ));
                }
                _ => {
                    return Err(problem(format!("unknown size unit `{unit}`"), SIZE_HINT));
                }
            };
            number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .ok_or_else(|| problem(format!("size `{text}` is too large"), SIZE_HINT))?
        }
    };
    if bytes == 0 {
        return Err(problem("size must be more than 0", SIZE_HINT));
    }
    Ok(bytes)
}

const DURATION_HINT: &str =
    "write a duration like \"500ms\", \"30s\", \"10m\", \"2h\" or \"1h30m\"";

pub(crate) fn parse_duration(text: &str) -> Result<Duration, Problem> {
    let invalid = || problem(format!("invalid duration `{text}`"), DURATION_HINT);
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Units must come largest first, each at most once: "1h30m", not "30m1h".
    let mut last_rank = usize::MAX;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, ms) = match unit {
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            "" => {
                return Err(problem(
                    format!("duration `{text}` has no unit"),
                    format!("add a unit: ms, s, m or h, e.g. \"{number}s\""),
                ));
            }
            _ => {
                return Err(problem(
                    format!("unknown duration unit `{unit}`"),
                    DURATION_HINT,
                ));
            }
        };
        if rank >= last_rank {
            return Err(problem(
                format!(
                    "invalid duration `{text}`: units must go from largest to smallest, each once"
                ),
                DURATION_HINT,
            ));
        }
        last_rank = rank;
        total_ms = number
            .checked_mul(ms)
            .and_then(|n| n.checked_add(total_ms))
            .ok_or_else(|| problem(format!("duration `{text}` is too long"), DURATION_HINT))?;
    }
    if total_ms == 0 {
        return Err(problem("duration must be more than 0", DURATION_HINT));
    }
    Ok(Duration::from_millis(total_ms))
}

/// The inverse of [`parse_duration`] (sub-millisecond parts are dropped): "1h30m", "500ms".
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1_000, rest % 1_000);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// Formats a byte count as `512 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || (v.fract() == 0.0) {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Formats a duration as `10m`, `1h30m`, `2.5s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(60) && d.subsec_millis() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_units() {
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5s");
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        let text = |s: &str| parse_size(&SizeValue::Text(s.to_owned()));
        assert_eq!(text("512MiB"), Ok(512 << 20));
        assert_eq!(text("1 GiB"), Ok(1 << 30));
        assert_eq!(text("2KB"), Ok(2000));
        assert_eq!(text("10B"), Ok(10));
        assert_eq!(parse_size(&SizeValue::Bytes(4096)), Ok(4096));
    }

    #[test]
    fn sizes_reject_zero_missing_or_unknown_units_and_overflow() {
        let text = |s: &str| {
            parse_size(&SizeValue::Text(s.to_owned()))
                .unwrap_err()
                .message
        };
        assert_eq!(text("512"), "size `512` has no unit");
        assert_eq!(text("512mb"), "unknown size unit `mb`");
        assert_eq!(text("1.5GiB"), "size `1.5GiB` is not a whole number");
        assert_eq!(text("0MiB"), "size must be more than 0");
        assert_eq!(text("MiB"), "invalid size `MiB`");
        assert_eq!(
            text("99999999999999GiB"),
            "size `99999999999999GiB` is too large"
        );
        assert!(parse_size(&SizeValue::Bytes(-1)).is_err());
    }

    #[test]
    fn durations_parse_compound_values() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s250ms"),
            Ok(Duration::from_millis(90_250))
        );
    }

    #[test]
    fn durations_reject_bad_forms() {
        let msg = |s: &str| parse_duration(s).unwrap_err().message;
        assert_eq!(msg("10"), "duration `10` has no unit");
        assert_eq!(msg("10min"), "unknown duration unit `min`");
        assert_eq!(msg("0s"), "duration must be more than 0");
        assert!(msg("30m1h").contains("largest to smallest"));
        assert!(msg("1m1m").contains("largest to smallest"));
        assert_eq!(msg(""), "invalid duration ``");
        assert_eq!(msg("1h 30m"), "invalid duration `1h 30m`");
    }

    #[test]
    fn durations_format_back() {
        for s in ["500ms", "30s", "10m", "2h", "1h30m", "1m30s250ms"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
