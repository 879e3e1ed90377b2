//! Durations as pipelines write them (`"500ms"`, `"30s"`, `"15m"`, `"1h30m"`): the same rules as
//! the host's step limits, so one spelling works everywhere. Shared by `env-merge`,
//! `run-commands` and `health-check`.

use std::time::Duration;

/// Parses `text`: numbers with units `h`, `m`, `s`, `ms`, largest first, each at most once.
/// The error says what to write instead.
pub fn parse(text: &str) -> Result<Duration, String> {
    let hint = "write a duration like \"500ms\", \"30s\", \"15m\" or \"1h30m\"";
    let invalid = || format!("invalid duration `{text}`; {hint}");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, factor) = match unit {
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            "" => return Err(format!("duration `{text}` has no unit; {hint}")),
            _ => {
                return Err(format!(
                    "unknown unit `{unit}` in duration `{text}`; {hint}"
                ));
            }
        };
        if rank >= last_rank {
            return Err(format!(
                "invalid duration `{text}`: units go from largest to smallest, each once; {hint}"
            ));
        }
        last_rank = rank;
        total_ms = number
            .checked_mul(factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    if total_ms == 0 {
        return Err(format!("duration `{text}` is zero; {hint}"));
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("1m5s250ms", 65_250),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for (text, needle) in [
            ("", "invalid"),
            ("15", "no unit"),
            ("15 m", "no unit"),
            ("1.5s", "no unit"),
            ("5sec", "unknown unit"),
            ("30m1h", "largest to smallest"),
            ("1s1s", "largest to smallest"),
            ("m", "invalid"),
            ("0s", "zero"),
            ("-1s", "invalid"),
            ("99999999999999999999h", "invalid"),
            ("9999999999999999h", "invalid"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
