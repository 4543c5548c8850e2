//! The weekly schedule: for each day of the week, the intervals of local
//! wall-clock time an inbox is open, and its text form
//! `mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00`.
//!
//! The text is parts separated by `;`, each days then intervals. Days are
//! `mon` … `sun`, ranges (`mon-fri`) and lists of both (`mon,wed-fri`);
//! intervals are `HH:MM-HH:MM` separated by `,`, and one may end at
//! `24:00`. Days named twice get the intervals of every part (so
//! `mon-sun 10:00-14:00; mon-fri 08:00-10:00` is allowed), and intervals of
//! a day may touch but not overlap. `closed` is the schedule with no hours.
//! Case and spaces are free on input; the text written back is canonical:
//! days with the same intervals together, Monday first.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime, Time, Weekday};

use super::HoursError;

/// The days of the week in the order of the schedule and its text.
const DAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// Each day's short name in the text form, Monday first.
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Minutes in a day: the end of a day is 24:00.
const MINUTES_PER_DAY: u16 = 24 * 60;

/// Milliseconds in a minute.
const MS_PER_MINUTE: i64 = 60_000;

/// When an inbox is open in an ordinary week: for every day, intervals of
/// local wall-clock time in order, touching perhaps but never overlapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WeeklySchedule {
    /// Each day's intervals in order, Monday first.
    days: [Vec<Interval>; 7],
}

/// A stretch of a day the inbox is open, from `start` to just before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    /// When it opens.
    start: TimeOfDay,
    /// When it closes; after `start`.
    end: TimeOfDay,
}

/// A wall-clock time of day to the minute, from 00:00 to 24:00 (the
/// midnight that ends the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimeOfDay {
    /// Minutes since the day's first midnight, at most [`MINUTES_PER_DAY`].
    minutes: u16,
}

impl WeeklySchedule {
    /// The schedule of `intervals`, each a day with a start and an end, in
    /// any order; refused if one does not start before it ends or two of a
    /// day overlap.
    pub(crate) fn from_intervals(
        intervals: impl IntoIterator<Item = (Weekday, TimeOfDay, TimeOfDay)>,
    ) -> Result<Self, HoursError> {
        let mut days: [Vec<Interval>; 7] = Default::default();
        for (day, start, end) in intervals {
            let interval = Interval { start, end };
            if start >= end {
                return Err(HoursError::StartNotBeforeEnd { day, interval });
            }
            days[index(day)].push(interval);
        }
        for (day, intervals) in DAYS.into_iter().zip(&mut days) {
            intervals.sort_by_key(|interval| interval.start);
            if let Some(pair) = intervals.windows(2).find(|w| w[1].start < w[0].end) {
                return Err(HoursError::Overlap {
                    day,
                    first: pair[0],
                    second: pair[1],
                });
            }
        }
        Ok(Self { days })
    }

    /// Open all day, every day.
    pub(super) fn all_day_every_day() -> Self {
        Self {
            days: std::array::from_fn(|_| vec![Interval::ALL_DAY]),
        }
    }

    /// Whether it is open all day, every day.
    pub(super) fn is_all_day_every_day(&self) -> bool {
        self.days.iter().all(|day| *day == [Interval::ALL_DAY])
    }

    /// The intervals of `day`, in order.
    pub(super) fn on(&self, day: Weekday) -> &[Interval] {
        &self.days[index(day)]
    }

    /// Business ms in a week whose clocks do not change: the sum of the
    /// intervals' wall-clock lengths.
    pub(super) fn week_ms(&self) -> i64 {
        self.days
            .iter()
            .flatten()
            .map(|interval| i64::from(interval.end.minutes - interval.start.minutes))
            .sum::<i64>()
            * MS_PER_MINUTE
    }
}

impl Interval {
    /// 00:00-24:00.
    const ALL_DAY: Self = Self {
        start: TimeOfDay::MIDNIGHT,
        end: TimeOfDay::END_OF_DAY,
    };

    /// When it opens.
    pub(super) fn start(self) -> TimeOfDay {
        self.start
    }

    /// When it closes.
    pub(super) fn end(self) -> TimeOfDay {
        self.end
    }
}

impl TimeOfDay {
    /// 00:00, the start of a day.
    pub(super) const MIDNIGHT: Self = Self { minutes: 0 };

    /// 24:00, the end of a day.
    const END_OF_DAY: Self = Self {
        minutes: MINUTES_PER_DAY,
    };

    /// This time on `date` as a civil date-time: 24:00 is the next day's
    /// 00:00. `None` past the last date jiff knows.
    pub(super) fn on(self, date: Date) -> Option<DateTime> {
        if self == Self::END_OF_DAY {
            return Some(date.tomorrow().ok()?.to_datetime(Time::midnight()));
        }
        let hour = i8::try_from(self.minutes / 60).ok()?;
        let minute = i8::try_from(self.minutes % 60).ok()?;
        Some(date.to_datetime(Time::new(hour, minute, 0, 0).ok()?))
    }
}

impl FromStr for WeeklySchedule {
    type Err = HoursError;

    fn from_str(text: &str) -> Result<Self, HoursError> {
        let parts: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(HoursError::NoHours);
        }
        let mut intervals = Vec::new();
        for part in parts {
            if part.eq_ignore_ascii_case("closed") {
                continue;
            }
            // The days end where the first time begins.
            let split = part.find(|c: char| c.is_ascii_digit());
            let (days, times) = part.split_at(split.unwrap_or(part.len()));
            let days: String = days.split_whitespace().collect();
            if days.is_empty() {
                return Err(HoursError::MissingDays {
                    hours: part.to_owned(),
                });
            }
            if times.is_empty() {
                return Err(HoursError::MissingHours { days });
            }
            let days = parse_days(&days)?;
            for interval in times.split(',') {
                let Interval { start, end } = interval.parse()?;
                intervals.extend(days.iter().map(|&day| (day, start, end)));
            }
        }
        Self::from_intervals(intervals)
    }
}

impl fmt::Display for WeeklySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = [false; 7];
        let mut first = true;
        for (i, intervals) in self.days.iter().enumerate() {
            if intervals.is_empty() || written[i] {
                continue;
            }
            let same: Vec<usize> = (i..7).filter(|&j| self.days[j] == *intervals).collect();
            for &j in &same {
                written[j] = true;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write_days(f, &same)?;
            f.write_str(" ")?;
            for (k, interval) in intervals.iter().enumerate() {
                if k > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{interval}")?;
            }
        }
        if first {
            f.write_str("closed")?;
        }
        Ok(())
    }
}

impl FromStr for Interval {
    type Err = HoursError;

    /// `HH:MM-HH:MM`; whether it starts before it ends is the schedule's
    /// check, which knows the day.
    fn from_str(text: &str) -> Result<Self, HoursError> {
        let text = text.trim();
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| HoursError::BadInterval {
                found: text.to_owned(),
            })?;
        Ok(Self {
            start: start.parse()?,
            end: end.parse()?,
        })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for TimeOfDay {
    type Err = HoursError;

    /// `H:MM` or `HH:MM`, from 00:00 to 24:00.
    fn from_str(text: &str) -> Result<Self, HoursError> {
        let text = text.trim();
        let bad = || HoursError::BadTime {
            found: text.to_owned(),
        };
        let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str, lengths: &[usize]| {
            lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(hour, &[1, 2]) || !digits(minute, &[2]) {
            return Err(bad());
        }
        let hour: u16 = hour.parse().map_err(|_| bad())?;
        let minute: u16 = minute.parse().map_err(|_| bad())?;
        let minutes = hour * 60 + minute;
        if minute >= 60 || minutes > MINUTES_PER_DAY {
            return Err(bad());
        }
        Ok(Self { minutes })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

/// The English name of `day`, for messages.
pub(super) fn day_name(day: &Weekday) -> &'static str {
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ][index(*day)]
}

/// `day`'s place in the week, Monday 0.
fn index(day: Weekday) -> usize {
    match day {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    }
}

/// The days of `text` (no spaces): days and ranges of days separated by `,`.
fn parse_days(text: &str) -> Result<Vec<Weekday>, HoursError> {
    let day = |name: &str| {
        DAY_NAMES
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
            .ok_or_else(|| HoursError::UnknownDay {
                found: name.to_owned(),
            })
    };
    let mut days = Vec::new();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (day(first)?, day(last)?),
            None => (day(item)?, day(item)?),
        };
        if first > last {
            return Err(HoursError::BackwardDays {
                found: item.to_owned(),
            });
        }
        days.extend(&DAYS[first..=last]);
    }
    Ok(days)
}

/// Writes the days at `indices` (ascending), consecutive runs as ranges:
/// `mon-wed,fri`.
fn write_days(f: &mut fmt::Formatter<'_>, indices: &[usize]) -> fmt::Result {
    let mut rest = indices;
    let mut first = true;
    while let Some(&start) = rest.first() {
        let run = rest
            .iter()
            .enumerate()
            .take_while(|&(k, &day)| day == start + k)
            .count();
        if !first {
            f.write_str(",")?;
        }
        first = false;
        f.write_str(DAY_NAMES[start])?;
        if run > 1 {
            write!(f, "-{}", DAY_NAMES[start + run - 1])?;
        }
        rest = &rest[run..];
    }
    Ok(())
}
