//! When a scheduled pipeline is due: cadences (`daily 03:00`, `weekly sun 04:30 +03:00`,
//! `every 6h`), a start window, a per-customer jitter and catch-up once, as a pure function of
//! the time and what was last done, so every rule is tested with a clock the test controls.
//!
//! A cadence names **slots**: nominal start times (UTC milliseconds). A customer's slot fires at
//! the slot plus its jitter (a fixed offset from a hash of the customer and the pipeline, below
//! `jitter`, so a thousand shops scheduled at 03:00 do not all start at 03:00:00). A slot is
//! handled once: run, skipped or missed. When several slots passed unhandled (the host was down),
//! only the newest counts: it runs once as a catch-up, the older ones are just counted.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How often a schedule's slots come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every day at a minute of the day (in the schedule's UTC offset).
    Daily {
        /// Minutes after local midnight.
        minute: u32,
    },
    /// Every week on a weekday at a minute of that day.
    Weekly {
        /// 0 = Monday … 6 = Sunday.
        weekday: u32,
        /// Minutes after local midnight.
        minute: u32,
    },
    /// Every period, counted from the Unix epoch (so slots are the same on every host).
    Every(Duration),
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The slots.
    pub cadence: Cadence,
    /// Offset of the times from UTC, in minutes (`+03:00` → 180).
    pub utc_offset_min: i32,
    /// How long after its firing time a slot still starts "on time"; later it is a catch-up.
    pub window: Duration,
    /// Upper bound of the per-customer offset added to each slot.
    pub jitter: Duration,
    /// Whether a slot found past its window runs once (true) or is recorded as missed.
    pub catch_up: bool,
}

/// What is wrong with a schedule's text, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// What is wrong.
    pub message: String,
    /// How to write it instead.
    pub hint: &'static str,
}

/// How schedules are written, for errors.
pub const SCHEDULE_HINT: &str = "write \"daily HH:MM\", \"weekly mon|tue|wed|thu|fri|sat|sun HH:MM\" or \"every <duration>\" (e.g. \"every 6h\"), optionally followed by a UTC offset like \"+03:00\"; times are UTC unless an offset is given";

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn bad(message: String) -> ScheduleError {
    ScheduleError {
        message,
        hint: SCHEDULE_HINT,
    }
}

/// Parses `HH:MM` into minutes of the day.
fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Parses `+HH:MM` / `-HH:MM` / `Z` into minutes east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    if text == "Z" || text == "UTC" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let minutes = parse_hhmm(rest)?;
    (minutes <= 14 * 60).then_some(sign * minutes as i32)
}

/// Parses a duration for the schedule's options: the pipeline units, plus `0`/`0s`/`off` for none.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    match text {
        "0" | "0s" | "off" => Ok(Duration::ZERO),
        _ => crate::pipeline::units::parse_duration(text)
            .map_err(|p| format!("{}; {}", p.message, p.hint)),
    }
}

impl Cadence {
    /// Parses the cadence text (without options): `daily 03:00`, `weekly sun 04:30 +03:00`,
    /// `every 6h`. Returns the cadence and the UTC offset in minutes.
    pub fn parse(text: &str) -> Result<(Cadence, i32), ScheduleError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (cadence, rest) = match words.as_slice() {
            ["daily", at, rest @ ..] => {
                let minute = parse_hhmm(at).ok_or_else(|| {
                    bad(format!("`{at}` is not a time of day (HH:MM, 00:00–23:59)"))
                })?;
                (Cadence::Daily { minute }, rest)
            }
            ["weekly", day, at, rest @ ..] => {
                let weekday = WEEKDAYS
                    .iter()
                    .position(|d| day.eq_ignore_ascii_case(d))
                    .ok_or_else(|| bad(format!("`{day}` is not a weekday (mon … sun)")))?
                    as u32;
                let minute = parse_hhmm(at).ok_or_else(|| {
                    bad(format!("`{at}` is not a time of day (HH:MM, 00:00–23:59)"))
                })?;
                (Cadence::Weekly { weekday, minute }, rest)
            }
            ["every", period, rest @ ..] => {
                let d = crate::pipeline::units::parse_duration(period)
                    .map_err(|p| bad(format!("`{period}`: {}", p.message)))?;
                if d < Duration::from_secs(60) {
                    return Err(bad(format!(
                        "`every {period}` is too often: at least every 1m"
                    )));
                }
                if d.as_millis() as i64 > WEEK_MS {
                    return Err(bad(format!(
                        "`every {period}` is longer than a week: use \"weekly <day> HH:MM\""
                    )));
                }
                (Cadence::Every(d), rest)
            }
            _ => return Err(bad(format!("cannot read the schedule `{text}`"))),
        };
        let offset = match rest {
            [] => 0,
            [offset] => parse_offset(offset)
                .ok_or_else(|| bad(format!("`{offset}` is not a UTC offset like +03:00")))?,
            _ => return Err(bad(format!("unexpected `{}` in `{text}`", rest.join(" ")))),
        };
        if matches!(cadence, Cadence::Every(_)) && offset != 0 {
            return Err(bad("`every` schedules take no UTC offset".into()));
        }
        Ok((cadence, offset))
    }

    /// The cadence's period.
    pub fn period_ms(self) -> i64 {
        match self {
            Cadence::Daily { .. } => DAY_MS,
            Cadence::Weekly { .. } => WEEK_MS,
            Cadence::Every(d) => d.as_millis() as i64,
        }
    }
}

impl Schedule {
    /// A schedule from its cadence text and options; `None` options take the defaults: window
    /// 2 h (for `every`, its period when shorter), jitter a quarter of the window up to 30 min,
    /// catch-up on.
    pub fn new(
        text: &str,
        window: Option<Duration>,
        jitter: Option<Duration>,
        catch_up: Option<bool>,
    ) -> Result<Schedule, ScheduleError> {
        let (cadence, utc_offset_min) = Cadence::parse(text)?;
        let period = Duration::from_millis(cadence.period_ms() as u64);
        let window = window.unwrap_or(Duration::from_secs(2 * 3600).min(period));
        if window.is_zero() || window > period {
            return Err(ScheduleError {
                message: format!(
                    "window must be more than 0 and at most the schedule's period ({})",
                    crate::pipeline::units::format_duration(period)
                ),
                hint: "e.g. window = \"2h\" for a daily schedule",
            });
        }
        let jitter = jitter.unwrap_or((window / 4).min(Duration::from_secs(30 * 60)));
        if jitter >= window {
            return Err(ScheduleError {
                message: "jitter must be shorter than the window".into(),
                hint: "jitter spreads customers' starts inside the window, e.g. window = \"2h\", jitter = \"30m\"",
            });
        }
        Ok(Schedule {
            cadence,
            utc_offset_min,
            window,
            jitter,
            catch_up: catch_up.unwrap_or(true),
        })
    }

    /// The newest slot at or before `t` (UTC ms).
    pub fn slot_at_or_before(&self, t: i64) -> i64 {
        let off = i64::from(self.utc_offset_min) * 60_000;
        match self.cadence {
            Cadence::Every(_) => t.div_euclid(self.cadence.period_ms()) * self.cadence.period_ms(),
            Cadence::Daily { minute } => {
                let at = i64::from(minute) * 60_000 - off;
                (t - at).div_euclid(DAY_MS) * DAY_MS + at
            }
            Cadence::Weekly { weekday, minute } => {
                // 1970-01-01 was a Thursday (weekday 3 counting from Monday = 0).
                let at = (i64::from(weekday) - 3) * DAY_MS + i64::from(minute) * 60_000 - off;
                (t - at).div_euclid(WEEK_MS) * WEEK_MS + at
            }
        }
    }

    /// The first slot after `t`.
    pub fn slot_after(&self, t: i64) -> i64 {
        self.slot_at_or_before(t) + self.cadence.period_ms()
    }

    /// The fixed offset `key` (customer and pipeline) adds to each slot: below `jitter`.
    pub fn jitter_for(&self, key: &str) -> i64 {
        let jitter = self.jitter.as_millis() as u64;
        if jitter == 0 {
            return 0;
        }
        let digest = Sha256::digest(key.as_bytes());
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        (n % jitter) as i64
    }

    /// What to do at `now` for `key`, given the newest slot handled (`last_slot`) and since when
    /// the schedule applies (`since`: slots whose window closed before it are not due, so a new
    /// schedule or customer does not start with a catch-up).
    pub fn evaluate(&self, key: &str, now: i64, last_slot: Option<i64>, since: i64) -> Due {
        let jitter = self.jitter_for(key);
        let slot = self.slot_at_or_before(now - jitter);
        let fires = slot + jitter;
        let handled = last_slot.is_some_and(|last| slot <= last);
        // A slot whose window had closed before the schedule applied is not due.
        let window = self.window.as_millis() as i64;
        let before_since = fires + window < since && last_slot.is_none_or(|last| last < slot);
        if handled || before_since {
            // Not due: the next slot after the newest of what was handled and `now`.
            let next = self.slot_after(slot) + jitter;
            return Due::No { next };
        }
        // Older slots that passed unhandled: after the last handled one (or, for a schedule
        // without one, firing at or after `since`), before this one.
        let first_unhandled = match last_slot {
            Some(last) => self.slot_after(last),
            None => {
                let s = self.slot_at_or_before(since - jitter);
                if s + jitter + window < since {
                    self.slot_after(s)
                } else {
                    s
                }
            }
        };
        let missed = ((slot - first_unhandled) / self.cadence.period_ms()).max(0) as u64;
        if now <= fires + window {
            Due::OnTime {
                slot,
                fires,
                missed,
            }
        } else if self.catch_up {
            Due::CatchUp {
                slot,
                fires,
                missed,
            }
        } else {
            Due::Missed {
                slot,
                fires,
                missed,
            }
        }
    }
}

/// What [`Schedule::evaluate`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do; the next slot fires at `next`.
    No {
        /// UTC ms.
        next: i64,
    },
    /// The slot fired and its window is open: start now.
    OnTime {
        /// The slot (nominal time).
        slot: i64,
        /// When it fired for this customer (slot + jitter).
        fires: i64,
        /// Older slots that passed unhandled (host down) and are not run.
        missed: u64,
    },
    /// The slot's window passed unhandled (host down or busy): start once now.
    CatchUp {
        /// The slot.
        slot: i64,
        /// When it fired.
        fires: i64,
        /// Older slots that passed unhandled and are not run.
        missed: u64,
    },
    /// The window passed and the schedule does not catch up: record it as missed.
    Missed {
        /// The slot.
        slot: i64,
        /// When it fired.
        fires: i64,
        /// Older slots that passed unhandled.
        missed: u64,
    },
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        match self.cadence {
            Cadence::Daily { minute } => write!(f, "daily {}", hhmm(minute))?,
            Cadence::Weekly { weekday, minute } => {
                write!(f, "weekly {} {}", WEEKDAYS[weekday as usize], hhmm(minute))?
            }
            Cadence::Every(d) => write!(f, "every {}", crate::pipeline::units::format_duration(d))?,
        }
        if self.utc_offset_min != 0 {
            let m = self.utc_offset_min.unsigned_abs();
            let sign = if self.utc_offset_min < 0 { '-' } else { '+' };
            write!(f, " {sign}{}", hhmm(m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UTC ms of an RFC 3339 time.
    fn t(s: &str) -> i64 {
        let dt =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        (dt.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn daily(at: &str) -> Schedule {
        Schedule::new(
            at,
            Some(Duration::from_secs(7200)),
            Some(Duration::ZERO),
            None,
        )
        .unwrap()
    }

    #[test]
    fn parses_each_cadence_and_prints_it_back() {
        for text in [
            "daily 03:00",
            "daily 23:59 +03:00",
            "weekly sun 04:30",
            "weekly mon 00:00 -05:30",
            "every 6h",
            "every 1m",
        ] {
            let s = Schedule::new(text, None, None, None).unwrap();
            assert_eq!(s.to_string(), text);
        }
        assert_eq!(
            Cadence::parse("weekly SUN 4:30").unwrap(),
            (
                Cadence::Weekly {
                    weekday: 6,
                    minute: 270
                },
                0
            )
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |text: &str| Schedule::new(text, None, None, None).unwrap_err().message;
        assert_eq!(
            err("daily 25:00"),
            "`25:00` is not a time of day (HH:MM, 00:00–23:59)"
        );
        assert_eq!(
            err("weekly sunday 03:00"),
            "`sunday` is not a weekday (mon … sun)"
        );
        assert_eq!(err("hourly"), "cannot read the schedule `hourly`");
        assert_eq!(
            err("every 30s"),
            "`every 30s` is too often: at least every 1m"
        );
        assert_eq!(
            err("daily 03:00 +3"),
            "`+3` is not a UTC offset like +03:00"
        );
        assert_eq!(
            err("every 2h +01:00"),
            "`every` schedules take no UTC offset"
        );
        let e = Schedule::new(
            "daily 03:00",
            Some(Duration::from_secs(3600)),
            Some(Duration::from_secs(3600)),
            None,
        )
        .unwrap_err();
        assert_eq!(e.message, "jitter must be shorter than the window");
        let e =
            Schedule::new("every 10m", Some(Duration::from_secs(3600)), None, None).unwrap_err();
        assert!(e.message.starts_with("window must be"), "{}", e.message);
    }

    #[test]
    fn slots_of_daily_weekly_and_every() {
        let s = daily("daily 03:00");
        assert_eq!(
            s.slot_at_or_before(t("2026-12-07T05:00:00Z")),
            t("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            s.slot_at_or_before(t("2026-12-07T02:59:59Z")),
            t("2026-12-06T03:00:00Z")
        );
        assert_eq!(
            s.slot_after(t("2026-12-07T03:00:00Z")),
            t("2026-12-08T03:00:00Z")
        );
        // 03:00 at +03:00 is midnight UTC.
        let s = daily("daily 03:00 +03:00");
        assert_eq!(
            s.slot_at_or_before(t("2026-12-07T05:00:00Z")),
            t("2026-12-07T00:00:00Z")
        );
        // 2026-12-06 is a Sunday.
        let s = daily("weekly sun 04:30");
        assert_eq!(
            s.slot_at_or_before(t("2026-12-09T12:00:00Z")),
            t("2026-12-06T04:30:00Z")
        );
        assert_eq!(
            s.slot_at_or_before(t("2026-12-06T04:29:00Z")),
            t("2026-11-29T04:30:00Z")
        );
        let s = Schedule::new("every 6h", None, Some(Duration::ZERO), None).unwrap();
        assert_eq!(
            s.slot_at_or_before(t("2026-12-07T05:00:00Z")),
            t("2026-12-07T00:00:00Z")
        );
        assert_eq!(
            s.slot_after(t("2026-12-07T05:00:00Z")),
            t("2026-12-07T06:00:00Z")
        );
    }

    #[test]
    fn runs_at_the_right_times_once_per_slot() {
        let s = daily("daily 03:00");
        let since = t("2026-12-01T12:00:00Z");
        // Before the first slot after `since`: not due, next is that slot.
        assert_eq!(
            s.evaluate("c", t("2026-12-02T02:59:00Z"), None, since),
            Due::No {
                next: t("2026-12-02T03:00:00Z")
            }
        );
        // At the slot: due on time.
        let due = s.evaluate("c", t("2026-12-02T03:00:00Z"), None, since);
        assert_eq!(
            due,
            Due::OnTime {
                slot: t("2026-12-02T03:00:00Z"),
                fires: t("2026-12-02T03:00:00Z"),
                missed: 0
            }
        );
        // Once handled, not again that day.
        let last = Some(t("2026-12-02T03:00:00Z"));
        assert_eq!(
            s.evaluate("c", t("2026-12-02T03:30:00Z"), last, since),
            Due::No {
                next: t("2026-12-03T03:00:00Z")
            }
        );
        // The next day, on time again.
        assert!(matches!(
            s.evaluate("c", t("2026-12-03T04:59:00Z"), last, since),
            Due::OnTime { missed: 0, .. }
        ));
    }

    #[test]
    fn a_new_schedule_does_not_start_with_a_catch_up() {
        let s = daily("daily 03:00");
        // Seen first at noon: the morning's slot is not due; tomorrow's is.
        let since = t("2026-12-07T12:00:00Z");
        assert_eq!(
            s.evaluate("c", t("2026-12-07T12:00:00Z"), None, since),
            Due::No {
                next: t("2026-12-08T03:00:00Z")
            }
        );
        // Seen first inside the window: the slot is still on time.
        let since = t("2026-12-07T03:30:00Z");
        assert!(matches!(
            s.evaluate("c", since, None, since),
            Due::OnTime { .. }
        ));
    }

    #[test]
    fn catches_up_once_after_downtime_not_once_per_missed_slot() {
        let s = daily("daily 03:00");
        let since = t("2026-12-01T00:00:00Z");
        let last = Some(t("2026-12-02T03:00:00Z"));
        // Down from the 2nd until the 5th at noon: the slots of the 3rd, 4th and 5th passed.
        let due = s.evaluate("c", t("2026-12-05T12:00:00Z"), last, since);
        assert_eq!(
            due,
            Due::CatchUp {
                slot: t("2026-12-05T03:00:00Z"),
                fires: t("2026-12-05T03:00:00Z"),
                missed: 2
            }
        );
        // After it ran, nothing until the 6th.
        let last = Some(t("2026-12-05T03:00:00Z"));
        assert_eq!(
            s.evaluate("c", t("2026-12-05T12:00:01Z"), last, since),
            Due::No {
                next: t("2026-12-06T03:00:00Z")
            }
        );
        // Without catch-up the slot is recorded as missed instead.
        let strict = Schedule::new("daily 03:00", None, Some(Duration::ZERO), Some(false)).unwrap();
        assert!(matches!(
            strict.evaluate(
                "c",
                t("2026-12-05T12:00:00Z"),
                Some(t("2026-12-02T03:00:00Z")),
                since
            ),
            Due::Missed { missed: 2, .. }
        ));
    }

    #[test]
    fn jitter_is_fixed_per_key_and_below_the_bound() {
        let s = Schedule::new(
            "daily 03:00",
            Some(Duration::from_secs(7200)),
            Some(Duration::from_secs(1800)),
            None,
        )
        .unwrap();
        let a = s.jitter_for("cust-a/backup");
        assert_eq!(a, s.jitter_for("cust-a/backup"));
        let offsets: std::collections::BTreeSet<i64> = (0..200)
            .map(|i| s.jitter_for(&format!("cust-{i}/backup")))
            .collect();
        assert!(offsets.iter().all(|o| (0..1_800_000).contains(o)));
        // Spread: 200 customers land on many different offsets.
        assert!(offsets.len() > 150, "{}", offsets.len());
        // A customer's slot fires at slot + its offset, not before.
        let since = t("2026-12-01T00:00:00Z");
        let slot = t("2026-12-07T03:00:00Z");
        assert!(matches!(
            s.evaluate(
                "cust-a/backup",
                slot + a - 1,
                Some(t("2026-12-06T03:00:00Z")),
                since
            ),
            Due::No { .. }
        ));
        assert_eq!(
            s.evaluate(
                "cust-a/backup",
                slot + a,
                Some(t("2026-12-06T03:00:00Z")),
                since
            ),
            Due::OnTime {
                slot,
                fires: slot + a,
                missed: 0
            }
        );
    }

    #[test]
    fn every_minute_fires_each_minute() {
        let s = Schedule::new("every 1m", None, Some(Duration::ZERO), None).unwrap();
        let since = t("2026-12-07T10:00:30Z");
        let mut last = None;
        let mut fired = Vec::new();
        // A tick every 5 s for 3 minutes.
        for i in 0..36 {
            let now = since + i * 5_000;
            if let Due::OnTime { slot, .. } = s.evaluate("c", now, last, since) {
                fired.push(slot);
                last = Some(slot);
            }
        }
        // The 10:00 slot's window (1m) is still open when the schedule is first seen.
        assert_eq!(
            fired,
            vec![
                t("2026-12-07T10:00:00Z"),
                t("2026-12-07T10:01:00Z"),
                t("2026-12-07T10:02:00Z"),
                t("2026-12-07T10:03:00Z")
            ]
        );
    }
}
