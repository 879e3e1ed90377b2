//! Run timestamps: `YYYYMMDD-HHMMSS` (UTC, the backup folder's name) to ISO 8601 and to Unix
//! seconds, without a date library.

/// A checked `YYYYMMDD-HHMMSS` timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Stamp {
    /// Parses `YYYYMMDD-HHMMSS`; `None` when malformed or not a real date and time.
    pub fn parse(s: &str) -> Option<Stamp> {
        let b = s.as_bytes();
        if b.len() != 15 || b[8] != b'-' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[range];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let stamp = Stamp {
            year: i64::from(num(0..4)?),
            month: num(4..6)?,
            day: num(6..8)?,
            hour: num(9..11)?,
            minute: num(11..13)?,
            second: num(13..15)?,
        };
        let valid = (1..=12).contains(&stamp.month)
            && (1..=days_in_month(stamp.year, stamp.month)).contains(&stamp.day)
            && stamp.hour < 24
            && stamp.minute < 60
            && stamp.second < 60;
        valid.then_some(stamp)
    }

    /// ISO 8601 in UTC, e.g. `2026-11-26T10:15:00Z`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_unix_seconds() {
        let s = Stamp::parse("20261126-101500").unwrap();
        assert_eq!(s.iso8601(), "2026-11-26T10:15:00Z");
        assert_eq!(s.unix_seconds(), 1_795_688_100);
        let leap = Stamp::parse("20240229-235959").unwrap();
        assert_eq!(leap.unix_seconds(), 1_709_251_199);
        assert_eq!(Stamp::parse("19700101-000000").unwrap().unix_seconds(), 0);
    }

    #[test]
    fn malformed_stamps() {
        for bad in [
            "",
            "20261126101500",
            "20261126-10150",
            "2026-1126-101500",
            "20261326-101500",
            "20230229-101500",
            "20261100-101500",
            "20261126-241500",
            "20261126-106000",
            "2026112+-101500",
            "20261126-1015000",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }
}
