//! Business hours: when a service desk's inbox answers, as the calendar
//! the SLA timers count in ("resolved within 16 business hours") and the
//! out-of-hours reply quotes ("we will answer from Monday 09:00").
//!
//! A [`BusinessHours`] is a [`WeeklySchedule`] of wall-clock intervals, an
//! IANA time zone, and holidays: local dates closed all day. Instants are
//! ms since the Unix epoch (UTC), as everywhere in the engine; jiff turns
//! them into wall-clock time with the tz database it embeds, so no file is
//! read and every node computes the same deadlines. Operators write them
//! in one line or as a table (`text`), the schedule as `week` reads it.
//!
//! Intervals are wall-clock time, so a 09:00–17:00 day is eight business
//! hours on the day the clocks change too, unless they change inside it:
//! then it is the time that really elapsed. A wall-clock time the clocks
//! skip (set forward) stands for the instant they jump; one they pass twice
//! (set back) for its first occurrence.
//!
//! Queries walk opening by opening, never minute by minute, and a deadline
//! or a span jumps over runs of whole weeks that hold no holiday and no
//! clock change, whose business time is the schedule's nominal week. None looks further
//! than [`HORIZON_YEARS`] ahead, so no calendar makes one loop for long.

mod text;
mod week;

use std::collections::BTreeSet;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

use week::day_name;
pub(crate) use week::{Interval, TimeOfDay, WeeklySchedule};

/// How far past its start a deadline or the next opening is looked for:
/// holidays may close a calendar for years, and a target may never be
/// reached.
pub(crate) const HORIZON_YEARS: i64 = 10;

/// When an inbox is open: a weekly schedule in a time zone, less holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BusinessHours {
    /// The intervals of each day of an ordinary week.
    week: WeeklySchedule,
    /// The zone's IANA name as the tz database spells it.
    zone_name: String,
    /// The zone the schedule's wall-clock times are in.
    zone: TimeZone,
    /// Local dates closed all day, whatever the schedule says.
    holidays: BTreeSet<Date>,
}

/// Why business hours were refused; each message names the problem, for
/// the operator who wrote them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HoursError {
    /// There are no days with hours, nor `closed`.
    #[error(
        "no opening hours: write days and intervals such as `mon-fri 09:00-17:00`, or `closed`"
    )]
    NoHours,
    /// Hours are written without the days they apply to.
    #[error("`{hours}` names no days: write them first, as in `mon-fri 09:00-17:00`")]
    MissingDays {
        /// The part as written.
        hours: String,
    },
    /// Days are written without their hours.
    #[error("`{days}` has no hours: write them after the days, as in `{days} 09:00-17:00`")]
    MissingHours {
        /// The days as written.
        days: String,
    },
    /// A day is not one of `mon` … `sun`.
    #[error(
        "`{found}` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri"
    )]
    UnknownDay {
        /// The word as written.
        found: String,
    },
    /// A range of days runs from a later day to an earlier one.
    #[error("`{found}` runs backwards: a range goes from Monday towards Sunday, as in mon-fri")]
    BackwardDays {
        /// The range as written.
        found: String,
    },
    /// An interval is not two times joined by `-`.
    #[error("`{found}` is not an interval: write HH:MM-HH:MM, as in 09:00-17:30")]
    BadInterval {
        /// The interval as written.
        found: String,
    },
    /// A time of day is not `HH:MM` from 00:00 to 24:00.
    #[error("`{found}` is not a time of day: write HH:MM, from 00:00 to 24:00")]
    BadTime {
        /// The time as written.
        found: String,
    },
    /// An interval does not start before it ends.
    #[error(
        "{interval} on {}: an interval must start before it ends (one that ends at midnight ends at 24:00)",
        day_name(.day)
    )]
    StartNotBeforeEnd {
        /// The day it is on.
        day: Weekday,
        /// The interval.
        interval: Interval,
    },
    /// Two intervals of a day overlap.
    #[error("{first} and {second} overlap on {}", day_name(.day))]
    Overlap {
        /// The day they are on.
        day: Weekday,
        /// The one that starts first.
        first: Interval,
        /// The one that starts inside it.
        second: Interval,
    },
    /// The time zone is not in the tz database.
    #[error(
        "unknown time zone `{zone}`: use an IANA name such as Europe/Berlin or America/New_York"
    )]
    UnknownZone {
        /// The name as written.
        zone: String,
    },
    /// The one-line form has no `zone` part.
    #[error("no time zone: add one such as `zone Europe/Berlin`")]
    MissingZone,
    /// The one-line form has two `zone` parts.
    #[error("two time zones, `{first}` and `{second}`: business hours have one")]
    ZoneTwice {
        /// The first as written.
        first: String,
        /// The second as written.
        second: String,
    },
    /// A holiday is not a date `YYYY-MM-DD` of the calendar.
    #[error("`{found}` is not a date: write YYYY-MM-DD, as in 2026-12-24")]
    BadDate {
        /// The date as written.
        found: String,
    },
}

impl BusinessHours {
    /// `week` in the IANA time zone `zone` (e.g. `Europe/Berlin`, any
    /// case), closed on `holidays`.
    pub(crate) fn new(
        week: WeeklySchedule,
        zone: &str,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Self, HoursError> {
        let unknown = || HoursError::UnknownZone {
            zone: zone.to_owned(),
        };
        let tz = TimeZone::get(zone).map_err(|_| unknown())?;
        // `Etc/Unknown` is jiff's name for "no idea", not a zone.
        if tz.is_unknown() {
            return Err(unknown());
        }
        let zone_name = tz.iana_name().ok_or_else(unknown)?.to_owned();
        Ok(Self {
            week,
            zone_name,
            zone: tz,
            holidays: holidays.into_iter().collect(),
        })
    }

    /// Open all the time (in UTC, with no holidays): an inbox's hours when
    /// it has none of its own.
    pub(crate) fn always_open() -> Self {
        Self {
            week: WeeklySchedule::all_day_every_day(),
            zone_name: "UTC".to_owned(),
            zone: TimeZone::UTC,
            holidays: BTreeSet::new(),
        }
    }

    /// Whether the inbox is open at `at`.
    pub(crate) fn is_open(&self, at: i64) -> bool {
        self.is_always_open() || self.openings(at).next().is_some_and(|o| o.start == at)
    }

    /// The first instant at or after `at` when the inbox is open: `at`
    /// itself when it is. `None` when it opens not once in
    /// [`HORIZON_YEARS`] (an empty schedule, or holidays all the way).
    pub(crate) fn next_opening(&self, at: i64) -> Option<i64> {
        if self.is_always_open() {
            return Some(at);
        }
        self.openings(at).next().map(|o| o.start)
    }

    /// Business ms from `from` to `to`: the part of that time the inbox is
    /// open. Zero when `to` is not after `from`.
    pub(crate) fn business_time_between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        if self.is_always_open() {
            return to.saturating_sub(from);
        }
        let last = self.local_date(to).saturating_add(1.day());
        // Skipped weeks end on a midnight before `to`.
        let skip_until = self.local_date(to).saturating_sub(1.day());
        let mut openings = self.openings_until(from, last, skip_until);
        let mut total = 0;
        loop {
            total += openings.skip_weeks(i64::MAX);
            match openings.next() {
                Some(o) if o.start < to => total += o.end.min(to) - o.start,
                _ => return total,
            }
        }
    }

    /// The instant when `business_ms` of business time will have passed
    /// since `from`: an SLA target's deadline, or its warning's with the
    /// smaller duration. The earliest such instant, so a deadline that
    /// uses up an opening exactly falls at its close. `from` itself for
    /// zero (or less); `None` if not reached within [`HORIZON_YEARS`].
    pub(crate) fn deadline(&self, from: i64, business_ms: i64) -> Option<i64> {
        if business_ms <= 0 {
            return Some(from);
        }
        if self.is_always_open() {
            return from.checked_add(business_ms);
        }
        let week = self.week.week_ms();
        if week == 0 {
            return None;
        }
        let mut remaining = business_ms;
        let mut openings = self.openings(from);
        loop {
            // Whole weeks, but never the one the deadline falls in.
            remaining -= openings.skip_weeks((remaining - 1) / week);
            let opening = openings.next()?;
            let length = opening.end - opening.start;
            if remaining <= length {
                return Some(opening.start + remaining);
            }
            remaining -= length;
        }
    }

    /// The local wall-clock time at `at` in the calendar's zone: what an
    /// out-of-hours reply tells the customer.
    pub(crate) fn local_time(&self, at: i64) -> DateTime {
        self.zone.to_datetime(timestamp(at))
    }

    /// The calendar's time zone, by its IANA name.
    pub(crate) fn zone(&self) -> &str {
        &self.zone_name
    }

    /// Whether every instant is business time, which the queries answer
    /// without the calendar: days of 00:00–24:00 abut whatever the clocks
    /// do.
    fn is_always_open(&self) -> bool {
        self.holidays.is_empty() && self.week.is_all_day_every_day()
    }

    /// The openings from `from` on, within [`HORIZON_YEARS`].
    fn openings(&self, from: i64) -> Openings<'_> {
        let last = self.local_date(from).saturating_add(HORIZON_YEARS.years());
        self.openings_until(from, last, last.saturating_add(1.day()))
    }

    /// The openings from `from` on, of local dates up to `last`; whole
    /// weeks are skipped only if they end by the midnight that starts
    /// `skip_until`.
    fn openings_until(&self, from: i64, last: Date, skip_until: Date) -> Openings<'_> {
        let first = self.local_date(from);
        // An opening of the day before may still be under way at `from`
        // where the clocks went back across midnight.
        let first = first.yesterday().unwrap_or(first);
        Openings {
            hours: self,
            from,
            date: Some(first),
            next: 0,
            last,
            skip_until,
        }
    }

    /// The local date at `at`.
    fn local_date(&self, at: i64) -> Date {
        self.local_time(at).date()
    }

    /// The intervals of `date`: none on a holiday.
    fn intervals_on(&self, date: Date) -> &[Interval] {
        if self.holidays.contains(&date) {
            &[]
        } else {
            self.week.on(date.weekday())
        }
    }

    /// The instant, in ms, the clocks of the zone read `time` on `date`: a
    /// skipped time is the instant they jumped it, a repeated one its first
    /// occurrence. `None` beyond the instants jiff represents.
    fn instant(&self, date: Date, time: TimeOfDay) -> Option<i64> {
        let wall = time.on(date)?;
        let ambiguous = self.zone.to_ambiguous_timestamp(wall);
        let offset = ambiguous.offset();
        // In a fold, the first occurrence; in a gap, a reading just before it.
        let earlier = ambiguous.earlier().ok()?;
        let instant = match offset {
            AmbiguousOffset::Gap { .. } => self.zone.following(earlier).next()?.timestamp(),
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => earlier,
        };
        Some(instant.as_millisecond())
    }
}

impl Default for BusinessHours {
    /// [`BusinessHours::always_open`].
    fn default() -> Self {
        Self::always_open()
    }
}

/// A stretch of business time, in ms since the epoch: from `start` to just
/// before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opening {
    /// When it opens (or the instant the walk began, if later).
    start: i64,
    /// When it closes; after `start`.
    end: i64,
}

/// The openings of a calendar from an instant on, in order, day by day up
/// to a last local date.
struct Openings<'h> {
    /// The calendar.
    hours: &'h BusinessHours,
    /// Openings that close by this instant are left out, and one under way
    /// at it starts here.
    from: i64,
    /// The local date whose intervals come next; `None` once past `last`
    /// or past the dates jiff represents.
    date: Option<Date>,
    /// The index of `date`'s next interval.
    next: usize,
    /// The last local date walked.
    last: Date,
    /// Whole weeks skipped end by the midnight starting this date.
    skip_until: Date,
}

impl Openings<'_> {
    /// Skips up to `most` whole weeks from the current date's midnight, as
    /// far as the weeks hold no holiday and no clock change, so each has
    /// the schedule's nominal business time; returns the business ms
    /// skipped. Skips nothing in the middle of a day or before `from`.
    fn skip_weeks(&mut self, most: i64) -> i64 {
        let Some(date) = self.date else { return 0 };
        if most <= 0 || self.next != 0 {
            return 0;
        }
        let hours = self.hours;
        let Some(midnight) = hours.instant(date, TimeOfDay::MIDNIGHT) else {
            return 0;
        };
        if midnight < self.from {
            return 0;
        }
        let mut weeks = most.min(whole_weeks(date, self.skip_until));
        if let Some(holiday) = hours.holidays.range(date..).next() {
            weeks = weeks.min(whole_weeks(date, *holiday));
        }
        // A change at this very midnight counts: the clocks may skip the
        // day's first hour.
        if let Some(change) = hours.zone.following(timestamp(midnight - 1)).next() {
            // Stopping a day short of the change's local date keeps every
            // skipped wall-clock time clear of its gap or fold.
            let changed = hours.zone.to_datetime(change.timestamp()).date();
            weeks = weeks.min(whole_weeks(date, changed.saturating_sub(1.day())));
        }
        if weeks <= 0 {
            return 0;
        }
        self.date = date.checked_add((weeks * 7).days()).ok();
        weeks * hours.week.week_ms()
    }

    /// Moves the walk to the day after `date`.
    fn next_day(&mut self, date: Date) {
        self.date = date.tomorrow().ok();
        self.next = 0;
    }
}

impl Iterator for Openings<'_> {
    type Item = Opening;

    fn next(&mut self) -> Option<Opening> {
        let hours = self.hours;
        while let Some(date) = self.date.filter(|date| *date <= self.last) {
            let intervals = hours.intervals_on(date);
            let Some(interval) = intervals.get(self.next).copied() else {
                self.next_day(date);
                continue;
            };
            self.next += 1;
            // Onto the next day at once, so that `skip_weeks` finds the
            // walk at a midnight between two calls.
            if self.next == intervals.len() {
                self.next_day(date);
            }
            let bounds = (
                hours.instant(date, interval.start()),
                hours.instant(date, interval.end()),
            );
            // Only at the very ends of jiff's range, whose instants no
            // calendar keeps.
            let (Some(start), Some(end)) = bounds else {
                continue;
            };
            // Empty when the clocks skip all of it, or it is over by `from`.
            let start = start.max(self.from);
            if start < end {
                return Some(Opening { start, end });
            }
        }
        self.date = None;
        None
    }
}

/// How many whole weeks from `from` fit before `until`; none if `until`
/// is not after it.
fn whole_weeks(from: Date, until: Date) -> i64 {
    from.duration_until(until).as_hours().max(0) / (24 * 7)
}

/// `at` as a jiff timestamp, clamped to the instants jiff represents
/// (years -9999 to 9999): no calendar opens beyond them.
fn timestamp(at: i64) -> Timestamp {
    Timestamp::from_millisecond(at).unwrap_or(if at < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests;
