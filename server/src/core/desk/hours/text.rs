//! Business hours as operators write them, in one line (a CLI flag) or as
//! a table (`kanald.toml`, storage).
//!
//! One line is the weekly schedule's parts, a `zone` part and optionally a
//! `holidays` part, separated by `;`:
//!
//! ```text
//! mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00; zone Europe/Berlin; holidays 2026-12-24,2026-12-25
//! ```
//!
//! The table has the same three pieces as keys, and is what serde writes:
//!
//! ```toml
//! week = "mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00"
//! zone = "Europe/Berlin"
//! holidays = ["2026-12-24", "2026-12-25"]
//! ```
//!
//! Either is read wherever business hours are expected; what is written
//! back reads the same business hours.

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{BusinessHours, HoursError, WeeklySchedule};

/// Business hours as a table of strings, before they are checked.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// The weekly schedule, as [`WeeklySchedule`] reads it.
    week: String,
    /// The IANA time zone.
    zone: String,
    /// Local dates closed all day, `YYYY-MM-DD`; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    holidays: Vec<String>,
}

impl FromStr for BusinessHours {
    type Err = HoursError;

    fn from_str(text: &str) -> Result<Self, HoursError> {
        let mut week = Vec::new();
        let mut zone: Option<&str> = None;
        let mut holidays = Vec::new();
        for part in text.split(';').map(str::trim) {
            if let Some(name) = keyword(part, "zone") {
                if let Some(first) = zone {
                    return Err(HoursError::ZoneTwice {
                        first: first.to_owned(),
                        second: name.to_owned(),
                    });
                }
                zone = Some(name).filter(|name| !name.is_empty());
            } else if let Some(dates) = keyword(part, "holidays") {
                for date in dates.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    holidays.push(parse_date(date)?);
                }
            } else {
                week.push(part);
            }
        }
        let week: WeeklySchedule = week.join(";").parse()?;
        let zone = zone.ok_or(HoursError::MissingZone)?;
        Self::new(week, zone, holidays)
    }
}

impl fmt::Display for BusinessHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; zone {}", self.week, self.zone_name)?;
        for (i, holiday) in self.holidays.iter().enumerate() {
            f.write_str(if i == 0 { "; holidays " } else { "," })?;
            write!(f, "{holiday}")?;
        }
        Ok(())
    }
}

impl TryFrom<Table> for BusinessHours {
    type Error = HoursError;

    fn try_from(table: Table) -> Result<Self, HoursError> {
        let holidays = table
            .holidays
            .iter()
            .map(|date| parse_date(date))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(table.week.parse()?, &table.zone, holidays)
    }
}

impl Serialize for BusinessHours {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Table {
            week: self.week.to_string(),
            zone: self.zone_name.clone(),
            holidays: self.holidays.iter().map(Date::to_string).collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BusinessHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HoursVisitor)
    }
}

/// Reads business hours from one line or from a table.
struct HoursVisitor;

impl<'de> Visitor<'de> for HoursVisitor {
    type Value = BusinessHours;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "business hours: a table with `week`, `zone` and `holidays`, \
             or one line such as \"mon-fri 09:00-17:00; zone Europe/Berlin\"",
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<BusinessHours, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BusinessHours, A::Error> {
        let table = Table::deserialize(MapAccessDeserializer::new(map))?;
        BusinessHours::try_from(table).map_err(de::Error::custom)
    }
}

/// The rest of `part` if its first word is `word`, in any case.
fn keyword<'a>(part: &'a str, word: &str) -> Option<&'a str> {
    let (first, rest) = part.split_once(char::is_whitespace).unwrap_or((part, ""));
    first.eq_ignore_ascii_case(word).then(|| rest.trim())
}

/// A holiday, `YYYY-MM-DD` exactly.
fn parse_date(text: &str) -> Result<Date, HoursError> {
    let bad = || HoursError::BadDate {
        found: text.to_owned(),
    };
    let date: Date = text.parse().map_err(|_| bad())?;
    // jiff also reads forms such as `20261224` or a date-time; operators
    // get one form, the one written back.
    if date.to_string() != text {
        return Err(bad());
    }
    Ok(date)
}
