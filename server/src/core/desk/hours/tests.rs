//! Business hours against instants written as local date-times: weekends,
//! holidays, split days, midnight, the clock changes of Europe/Berlin and
//! America/New_York, long deadlines, and the text operators write.

use jiff::ZonedDateTime;

use super::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A Berlin office with a lunch break, Saturday mornings and Christmas off.
const OFFICE: &str = "mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00; zone Europe/Berlin; \
                      holidays 2026-12-24,2026-12-25";

fn hours(text: &str) -> BusinessHours {
    text.parse()
        .unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
}

fn refusal(text: &str) -> String {
    match text.parse::<BusinessHours>() {
        Ok(hours) => panic!("`{text}` should be refused, got {hours}"),
        Err(e) => e.to_string(),
    }
}

/// The instant a local date-time names in the calendar's zone:
/// `2026-01-12T09:00`, or with its offset where the clocks pass it twice,
/// `2026-10-25T02:30+01:00`.
fn at(hours: &BusinessHours, local: &str) -> i64 {
    let zoned: ZonedDateTime = format!("{local}[{}]", hours.zone())
        .parse()
        .unwrap_or_else(|e| panic!("{local}: {e}"));
    if !local.contains(['+', 'Z']) && local.rfind('-').is_none_or(|i| i < 10) {
        let ambiguous = zoned.time_zone().to_ambiguous_timestamp(zoned.datetime());
        assert!(
            !ambiguous.is_ambiguous(),
            "{local} is ambiguous: give its offset"
        );
    }
    zoned.timestamp().as_millisecond()
}

/// An instant as a local date-time with its offset, or `never`.
fn local(hours: &BusinessHours, at: Option<i64>) -> String {
    let Some(at) = at else {
        return "never".to_owned();
    };
    let zoned = Timestamp::from_millisecond(at)
        .expect("in range")
        .to_zoned_datetime(TimeZone::get(hours.zone()).expect("zone"));
    let text = zoned.to_string();
    text.split('[').next().unwrap_or(&text).to_owned()
}

#[test]
fn a_deadline_on_friday_afternoon_falls_on_monday() {
    let h = hours("mon-fri 09:00-17:00; zone Europe/Berlin");
    let friday = at(&h, "2026-01-09T16:00");
    let monday = at(&h, "2026-01-12T10:00");
    assert_eq!(
        local(&h, h.deadline(friday, 2 * HOUR)),
        "2026-01-12T10:00:00+01:00"
    );
    assert_eq!(h.business_time_between(friday, monday), 2 * HOUR);
    assert!(!h.is_open(at(&h, "2026-01-10T12:00")));
    assert_eq!(
        local(&h, h.next_opening(at(&h, "2026-01-10T12:00"))),
        "2026-01-12T09:00:00+01:00"
    );
}

#[test]
fn holidays_are_closed_all_day() {
    let h = hours("mon-fri 09:00-17:00; zone Europe/Berlin; holidays 2026-12-24,2026-12-25");
    let wednesday = at(&h, "2026-12-23T16:00");
    assert_eq!(
        local(&h, h.deadline(wednesday, 2 * HOUR)),
        "2026-12-28T10:00:00+01:00"
    );
    assert_eq!(
        h.business_time_between(wednesday, at(&h, "2026-12-28T10:00")),
        2 * HOUR
    );
    let christmas_eve = at(&h, "2026-12-24T10:00");
    assert!(!h.is_open(christmas_eve));
    assert_eq!(
        local(&h, h.next_opening(christmas_eve)),
        "2026-12-28T09:00:00+01:00"
    );
    // A week later the same weekday is open again.
    assert!(h.is_open(at(&h, "2026-12-31T10:00")));
}

#[test]
fn a_split_day_pauses_over_lunch() {
    let h = hours(OFFICE);
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-01-12T11:00"), 2 * HOUR)),
        "2026-01-12T14:00:00+01:00"
    );
    assert_eq!(
        h.business_time_between(at(&h, "2026-01-12T11:30"), at(&h, "2026-01-12T13:30")),
        HOUR
    );
    assert!(h.is_open(at(&h, "2026-01-12T12:00") - 1));
    assert!(!h.is_open(at(&h, "2026-01-12T12:00")));
    assert!(!h.is_open(at(&h, "2026-01-12T12:30")));
    assert!(h.is_open(at(&h, "2026-01-12T13:00")));
    assert_eq!(
        local(&h, h.next_opening(at(&h, "2026-01-12T12:30"))),
        "2026-01-12T13:00:00+01:00"
    );
    // Friday's last half hour, Saturday's four hours, Monday from 09:00.
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-01-16T17:00"), 5 * HOUR)),
        "2026-01-19T09:30:00+01:00"
    );
}

#[test]
fn an_interval_may_end_at_midnight() {
    let h = hours("fri 20:00-24:00; sat 00:00-02:00; zone Europe/Berlin");
    assert_eq!(
        h.to_string(),
        "fri 20:00-24:00; sat 00:00-02:00; zone Europe/Berlin"
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-01-09T23:00"), 2 * HOUR)),
        "2026-01-10T01:00:00+01:00"
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-01-09T20:00"), 4 * HOUR)),
        "2026-01-10T00:00:00+01:00"
    );
    assert!(h.is_open(at(&h, "2026-01-10T00:00") - 1));
    assert!(h.is_open(at(&h, "2026-01-10T00:00")));
    assert_eq!(
        h.business_time_between(at(&h, "2026-01-09T19:00"), at(&h, "2026-01-10T03:00")),
        6 * HOUR
    );
    assert_eq!(
        local(&h, h.next_opening(at(&h, "2026-01-10T02:00"))),
        "2026-01-16T20:00:00+01:00"
    );
}

#[test]
fn a_working_day_is_eight_hours_when_berlin_springs_forward() {
    // 2026-03-29, a Sunday: 02:00 CET becomes 03:00 CEST.
    let h = hours("mon-sun 09:00-17:00; zone Europe/Berlin");
    assert_eq!(
        h.business_time_between(at(&h, "2026-03-28T00:00"), at(&h, "2026-03-30T00:00")),
        16 * HOUR
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-03-28T16:00"), 2 * HOUR)),
        "2026-03-29T10:00:00+02:00"
    );
}

#[test]
fn an_interval_the_clocks_spring_forward_in_is_an_hour_short() {
    let h = hours("sun 01:00-04:00; zone Europe/Berlin");
    assert_eq!(
        h.business_time_between(at(&h, "2026-03-22T00:00"), at(&h, "2026-03-23T00:00")),
        3 * HOUR
    );
    assert_eq!(
        h.business_time_between(at(&h, "2026-03-29T00:00"), at(&h, "2026-03-30T00:00")),
        2 * HOUR
    );
    // An hour of CET, then from the jump at 03:00 CEST.
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-03-29T01:00"), 90 * MINUTE)),
        "2026-03-29T03:30:00+02:00"
    );
}

#[test]
fn wall_clock_times_the_clocks_skip_stand_for_the_jump() {
    // 02:00-02:30 never happens on 2026-03-29: no opening that Sunday.
    let skipped = hours("sun 02:00-02:30; zone Europe/Berlin");
    assert_eq!(
        local(
            &skipped,
            skipped.next_opening(at(&skipped, "2026-03-29T00:00"))
        ),
        "2026-04-05T02:00:00+02:00"
    );
    // 02:30-03:30 opens when the clocks jump to 03:00.
    let half = hours("sun 02:30-03:30; zone Europe/Berlin");
    assert_eq!(
        local(&half, half.next_opening(at(&half, "2026-03-29T00:00"))),
        "2026-03-29T03:00:00+02:00"
    );
    assert_eq!(
        half.business_time_between(at(&half, "2026-03-29T00:00"), at(&half, "2026-03-30T00:00")),
        30 * MINUTE
    );
}

#[test]
fn an_interval_berlin_falls_back_in_is_an_hour_long() {
    // 2026-10-25, a Sunday: 03:00 CEST becomes 02:00 CET.
    let h = hours("sun 01:00-04:00; zone Europe/Berlin");
    assert_eq!(
        h.business_time_between(at(&h, "2026-10-25T00:00"), at(&h, "2026-10-26T00:00")),
        4 * HOUR
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-10-25T01:00"), 2 * HOUR)),
        "2026-10-25T02:00:00+01:00"
    );
    let office = hours("mon-sun 09:00-17:00; zone Europe/Berlin");
    assert_eq!(
        office.business_time_between(
            at(&office, "2026-10-24T00:00"),
            at(&office, "2026-10-26T00:00")
        ),
        16 * HOUR
    );
}

#[test]
fn wall_clock_times_the_clocks_repeat_stand_for_their_first_occurrence() {
    let opens = hours("sun 02:30-05:00; zone Europe/Berlin");
    assert_eq!(
        local(&opens, opens.next_opening(at(&opens, "2026-10-25T00:00"))),
        "2026-10-25T02:30:00+02:00"
    );
    assert!(opens.is_open(at(&opens, "2026-10-25T02:15+01:00")));
    assert_eq!(
        opens.business_time_between(
            at(&opens, "2026-10-25T00:00"),
            at(&opens, "2026-10-26T00:00")
        ),
        3 * HOUR + 30 * MINUTE
    );
    let closes = hours("sun 01:00-02:30; zone Europe/Berlin");
    assert!(closes.is_open(at(&closes, "2026-10-25T02:15+02:00")));
    assert!(!closes.is_open(at(&closes, "2026-10-25T02:15+01:00")));
    assert_eq!(
        closes.business_time_between(
            at(&closes, "2026-10-25T00:00"),
            at(&closes, "2026-10-26T00:00")
        ),
        HOUR + 30 * MINUTE
    );
}

#[test]
fn new_york_days_are_23_and_25_hours_long_when_the_clocks_change() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT; 2026-11-01: 02:00 EDT
    // becomes 01:00 EST. The holiday keeps the calendar from being 24/7.
    let h = hours("mon-sun 00:00-24:00; zone America/New_York; holidays 2026-12-25");
    assert_eq!(
        h.business_time_between(at(&h, "2026-03-08T00:00"), at(&h, "2026-03-09T00:00")),
        23 * HOUR
    );
    assert_eq!(
        h.business_time_between(at(&h, "2026-11-01T00:00"), at(&h, "2026-11-02T00:00")),
        25 * HOUR
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-03-07T12:00"), 24 * HOUR)),
        "2026-03-08T13:00:00-04:00"
    );
    let night = hours("sun 01:00-03:00; zone America/New_York");
    assert_eq!(
        night.business_time_between(
            at(&night, "2026-11-01T00:00"),
            at(&night, "2026-11-02T00:00")
        ),
        3 * HOUR
    );
}

#[test]
fn new_york_office_hours_keep_their_length_across_the_clock_changes() {
    let h = hours("mon-fri 09:00-17:00; zone America/New_York");
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-03-06T16:00"), 2 * HOUR)),
        "2026-03-09T10:00:00-04:00"
    );
    assert_eq!(
        h.business_time_between(at(&h, "2026-03-06T09:00"), at(&h, "2026-03-09T17:00")),
        16 * HOUR
    );
    assert_eq!(
        local(&h, h.deadline(at(&h, "2026-10-30T16:00"), 2 * HOUR)),
        "2026-11-02T10:00:00-05:00"
    );
}

#[test]
fn clocks_that_change_at_midnight_shorten_or_lengthen_the_day_next_to_it() {
    // Havana: 00:00 becomes 01:00 on 2026-03-08.
    let havana = hours("mon-sun 00:00-08:00; zone America/Havana");
    assert_eq!(
        local(
            &havana,
            havana.next_opening(at(&havana, "2026-03-07T12:00"))
        ),
        "2026-03-08T01:00:00-04:00"
    );
    assert_eq!(
        havana.business_time_between(
            at(&havana, "2026-03-07T12:00"),
            at(&havana, "2026-03-09T00:00")
        ),
        7 * HOUR
    );
    // Beirut: 24:00 becomes 23:00 on 2026-10-24.
    let beirut = hours("mon-sun 20:00-24:00; zone Asia/Beirut");
    assert_eq!(
        beirut.business_time_between(
            at(&beirut, "2026-10-24T12:00"),
            at(&beirut, "2026-10-25T12:00")
        ),
        5 * HOUR
    );
    assert_eq!(
        local(
            &beirut,
            beirut.deadline(at(&beirut, "2026-10-24T20:00"), 4 * HOUR)
        ),
        "2026-10-24T23:00:00+02:00"
    );
}

#[test]
fn a_deadline_counts_from_inside_or_outside_an_interval() {
    let h = hours("mon-fri 09:00-17:00; zone Europe/Berlin");
    let deadline = |from: &str, ms: i64| local(&h, h.deadline(at(&h, from), ms));
    assert_eq!(
        deadline("2026-01-12T10:00", HOUR),
        "2026-01-12T11:00:00+01:00"
    );
    assert_eq!(
        deadline("2026-01-12T07:00", HOUR),
        "2026-01-12T10:00:00+01:00"
    );
    assert_eq!(
        deadline("2026-01-11T12:00", HOUR),
        "2026-01-12T10:00:00+01:00"
    );
    // Using up the day exactly falls at its close, not the next opening.
    assert_eq!(
        deadline("2026-01-12T09:00", 8 * HOUR),
        "2026-01-12T17:00:00+01:00"
    );
    assert_eq!(
        deadline("2026-01-12T17:00", 1),
        "2026-01-13T09:00:00.001+01:00"
    );
}

#[test]
fn zero_business_time_is_due_at_once() {
    let h = hours("mon-fri 09:00-17:00; zone Europe/Berlin");
    let sunday = at(&h, "2026-01-11T12:00");
    let monday = at(&h, "2026-01-12T10:00");
    assert_eq!(h.deadline(sunday, 0), Some(sunday));
    assert_eq!(h.deadline(monday, 0), Some(monday));
    assert_eq!(h.deadline(monday, -HOUR), Some(monday));
    assert_eq!(h.business_time_between(monday, monday), 0);
    assert_eq!(h.business_time_between(monday, sunday), 0);
}

#[test]
fn always_open_is_every_instant() {
    let h = BusinessHours::always_open();
    assert_eq!(h, BusinessHours::default());
    assert_eq!(h.to_string(), "mon-sun 00:00-24:00; zone UTC");
    assert_eq!(hours("mon-sun 00:00-24:00; zone UTC"), h);
    let t = at(&h, "2026-01-11T03:17");
    assert!(h.is_open(t));
    assert!(h.is_open(i64::MIN));
    assert_eq!(h.next_opening(t), Some(t));
    assert_eq!(
        local(&h, h.deadline(t, 50 * HOUR)),
        "2026-01-13T05:17:00+00:00"
    );
    assert_eq!(h.business_time_between(t, t + 50 * HOUR), 50 * HOUR);
    // All day every day is real time in a zone with clock changes too.
    let berlin = hours("mon-sun 00:00-24:00; zone Europe/Berlin");
    assert_eq!(
        berlin.business_time_between(
            at(&berlin, "2026-03-29T00:00"),
            at(&berlin, "2026-03-30T00:00")
        ),
        23 * HOUR
    );
}

#[test]
fn a_deadline_weeks_away_skips_whole_weeks() {
    // 37.5 business hours a week.
    let h = hours("mon-fri 09:00-12:00,13:00-17:30; zone Europe/Berlin");
    let week = 37 * HOUR + 30 * MINUTE;
    let from = at(&h, "2026-01-05T09:00");
    assert_eq!(
        local(&h, h.deadline(from, 10 * week)),
        "2026-03-13T17:30:00+01:00"
    );
    assert_eq!(
        local(&h, h.deadline(from, 10 * week + 2 * HOUR)),
        "2026-03-16T11:00:00+01:00"
    );
    // Across Berlin's spring change.
    assert_eq!(
        local(&h, h.deadline(from, 20 * week)),
        "2026-05-22T17:30:00+02:00"
    );
    assert_eq!(
        h.business_time_between(from, at(&h, "2026-05-22T17:30")),
        20 * week
    );
    // A holiday in the middle costs a day.
    let h = hours("mon-fri 09:00-12:00,13:00-17:30; zone Europe/Berlin; holidays 2026-02-16");
    assert_eq!(
        local(&h, h.deadline(from, 10 * week)),
        "2026-03-16T17:30:00+01:00"
    );
}

#[test]
fn skipping_weeks_lands_where_walking_opening_by_opening_does() {
    for text in [
        OFFICE,
        "mon-fri 08:00-12:00,13:00-17:00; sun 01:00-04:00; zone America/New_York; \
         holidays 2026-07-03,2026-11-26,2027-01-01",
        "mon-sun 00:00-24:00; zone Europe/Berlin; holidays 2026-05-01",
        // Havana's clocks change at midnight: 00:00 becomes 01:00 on
        // 2026-03-08, 01:00 becomes 00:00 on 2026-11-01.
        "mon-sun 00:00-08:00; zone America/Havana",
        // Beirut's go back from 24:00 to 23:00 on 2026-10-24.
        "mon-sun 20:00-24:00; zone Asia/Beirut",
    ] {
        let h = hours(text);
        // Past one clock change, past two, and past a year's holidays.
        let totals = [300 * HOUR, 1000 * HOUR, 2000 * HOUR].map(|t| t + 7 * MINUTE);
        let starts = ["2026-01-07T10:15", "2026-08-19T06:45"];
        for (from, total) in starts.into_iter().flat_map(|s| totals.map(|t| (s, t))) {
            let from = at(&h, from);
            // Five hours at a time is less than a week: no skipping.
            let step = 5 * HOUR;
            let mut walked = from;
            let mut left = total;
            while left > 0 {
                let this = left.min(step);
                walked = h.deadline(walked, this).expect("within the horizon");
                left -= this;
            }
            let skipped = h.deadline(from, total);
            assert_eq!(local(&h, skipped), local(&h, Some(walked)), "{text}");
            assert_eq!(h.business_time_between(from, walked), total, "{text}");
        }
    }
}

#[test]
fn the_search_gives_up_after_ten_years() {
    let closed = hours("closed; zone UTC");
    let t = at(&closed, "2026-01-01T00:00");
    assert_eq!(closed.next_opening(t), None);
    assert_eq!(closed.deadline(t, HOUR), None);
    assert!(!closed.is_open(t));
    assert_eq!(closed.business_time_between(t, t + 1000 * HOUR), 0);

    // Every day of eleven years a holiday.
    let first = Date::constant(2026, 1, 1);
    let days = (0..11 * 366).filter_map(|n| first.checked_add(n.days()).ok());
    let days = days.take_while(|day| day.year() < 2037);
    let week = "mon-fri 09:00-17:00".parse().expect("week");
    let h = BusinessHours::new(week, "Europe/Berlin", days).expect("hours");
    let t = at(&h, "2026-01-01T00:00");
    assert!(!h.is_open(at(&h, "2026-01-05T10:00")));
    assert_eq!(h.next_opening(t), None);
    assert_eq!(h.deadline(t, HOUR), None);
    assert_eq!(
        local(&h, h.next_opening(at(&h, "2036-12-31T12:00"))),
        "2037-01-01T09:00:00+01:00"
    );

    // An hour on Mondays: 500 hours come within ten years, 600 do not.
    let mondays = hours("mon 09:00-10:00; zone UTC");
    let from = at(&mondays, "2026-01-05T09:00");
    assert_eq!(
        local(&mondays, mondays.deadline(from, 500 * HOUR)),
        "2035-07-30T10:00:00+00:00"
    );
    assert_eq!(mondays.deadline(from, 600 * HOUR), None);
}

#[test]
fn the_out_of_hours_reply_can_say_when_the_desk_opens() {
    let h = hours(OFFICE);
    assert_eq!(h.zone(), "Europe/Berlin");
    let opens = h.next_opening(at(&h, "2026-01-10T15:00")).expect("opens");
    let local = h.local_time(opens);
    assert_eq!(local.weekday(), jiff::civil::Weekday::Monday);
    assert_eq!(local.to_string(), "2026-01-12T09:00:00");
}

#[test]
fn text_is_written_back_in_one_canonical_form() {
    for (written, canonical) in [
        (
            " Mon - Fri 9:00-12:00, 13:00 - 17:30 ; SAT 10:00-14:00; Zone europe/berlin; \
             holidays 2026-12-25, 2026-12-24;",
            "mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00; zone Europe/Berlin; \
             holidays 2026-12-24,2026-12-25",
        ),
        (
            "mon-wed 09:00-17:00; thu 09:00-17:00; sat 10:00-14:00; sun 10:00-14:00; zone UTC",
            "mon-thu 09:00-17:00; sat-sun 10:00-14:00; zone UTC",
        ),
        (
            "mon,wed,fri 09:00-17:00; zone America/New_York",
            "mon,wed,fri 09:00-17:00; zone America/New_York",
        ),
        (
            "mon-sun 10:00-14:00; mon-fri 08:00-10:00; zone UTC",
            "mon-fri 08:00-10:00,10:00-14:00; sat-sun 10:00-14:00; zone UTC",
        ),
        ("closed; zone UTC", "closed; zone UTC"),
    ] {
        let parsed = hours(written);
        assert_eq!(parsed.to_string(), canonical, "{written}");
        assert_eq!(hours(canonical), parsed, "{canonical}");
    }
}

#[test]
fn each_mistake_is_named() {
    for (text, message) in [
        (
            "",
            "no opening hours: write days and intervals such as `mon-fri 09:00-17:00`, or `closed`",
        ),
        (
            "zone UTC",
            "no opening hours: write days and intervals such as `mon-fri 09:00-17:00`, or `closed`",
        ),
        (
            "09:00-17:00; zone UTC",
            "`09:00-17:00` names no days: write them first, as in `mon-fri 09:00-17:00`",
        ),
        (
            "mon-fri; zone UTC",
            "`mon-fri` has no hours: write them after the days, as in `mon-fri 09:00-17:00`",
        ),
        (
            "mon-fry 09:00-17:00; zone UTC",
            "`fry` is not a day: write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri",
        ),
        (
            "fri-mon 09:00-17:00; zone UTC",
            "`fri-mon` runs backwards: a range goes from Monday towards Sunday, as in mon-fri",
        ),
        (
            "mon 09:00; zone UTC",
            "`09:00` is not an interval: write HH:MM-HH:MM, as in 09:00-17:30",
        ),
        (
            "mon 9-17; zone UTC",
            "`9` is not a time of day: write HH:MM, from 00:00 to 24:00",
        ),
        (
            "mon 09:00-24:30; zone UTC",
            "`24:30` is not a time of day: write HH:MM, from 00:00 to 24:00",
        ),
        (
            "mon 09:60-10:00; zone UTC",
            "`09:60` is not a time of day: write HH:MM, from 00:00 to 24:00",
        ),
        (
            "mon 17:00-09:00; zone UTC",
            "17:00-09:00 on Monday: an interval must start before it ends \
             (one that ends at midnight ends at 24:00)",
        ),
        (
            "sat 22:00-00:00; zone UTC",
            "22:00-00:00 on Saturday: an interval must start before it ends \
             (one that ends at midnight ends at 24:00)",
        ),
        (
            "tue-fri 09:00-12:00,11:00-13:00; zone UTC",
            "09:00-12:00 and 11:00-13:00 overlap on Tuesday",
        ),
        (
            "mon-sun 10:00-14:00; sun 08:00-10:30; zone UTC",
            "08:00-10:30 and 10:00-14:00 overlap on Sunday",
        ),
        (
            "mon 09:00-17:00; zone Mars/Olympus",
            "unknown time zone `Mars/Olympus`: use an IANA name such as Europe/Berlin or America/New_York",
        ),
        (
            "mon 09:00-17:00; zone Etc/Unknown",
            "unknown time zone `Etc/Unknown`: use an IANA name such as Europe/Berlin or America/New_York",
        ),
        (
            "mon 09:00-17:00",
            "no time zone: add one such as `zone Europe/Berlin`",
        ),
        (
            "mon 09:00-17:00; zone",
            "no time zone: add one such as `zone Europe/Berlin`",
        ),
        (
            "mon 09:00-17:00; zone UTC; zone Europe/Berlin",
            "two time zones, `UTC` and `Europe/Berlin`: business hours have one",
        ),
        (
            "mon 09:00-17:00; zone UTC; holidays 2026-02-30",
            "`2026-02-30` is not a date: write YYYY-MM-DD, as in 2026-12-24",
        ),
        (
            "mon 09:00-17:00; zone UTC; holidays 24.12.2026",
            "`24.12.2026` is not a date: write YYYY-MM-DD, as in 2026-12-24",
        ),
        (
            "mon 09:00-17:00; zone UTC; holidays 20261224",
            "`20261224` is not a date: write YYYY-MM-DD, as in 2026-12-24",
        ),
        (
            "mon 09:00-17:00; zone UTC; holidays 2026-12-24T10:00",
            "`2026-12-24T10:00` is not a date: write YYYY-MM-DD, as in 2026-12-24",
        ),
    ] {
        assert_eq!(refusal(text), message, "{text}");
    }
}

#[derive(Debug, serde::Deserialize)]
struct Inbox {
    hours: BusinessHours,
}

#[test]
fn kanald_toml_takes_a_table_or_one_line() {
    let table: Inbox = toml::from_str(
        r#"
        [hours]
        week = "mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00"
        zone = "Europe/Berlin"
        holidays = ["2026-12-24", "2026-12-25"]
        "#,
    )
    .expect("table");
    assert_eq!(table.hours, hours(OFFICE));
    let line: Inbox = toml::from_str(&format!("hours = \"{OFFICE}\"")).expect("line");
    assert_eq!(line.hours, hours(OFFICE));
    let no_holidays: Inbox =
        toml::from_str("hours = { week = \"mon-fri 09:00-17:00\", zone = \"America/New_York\" }")
            .expect("no holidays");
    assert_eq!(
        no_holidays.hours,
        hours("mon-fri 09:00-17:00; zone America/New_York")
    );
}

#[test]
fn kanald_toml_reports_the_mistake() {
    let overlap = toml::from_str::<Inbox>(
        "hours = { week = \"mon 09:00-12:00,11:00-13:00\", zone = \"UTC\" }",
    )
    .expect_err("overlap");
    assert!(
        overlap
            .to_string()
            .contains("09:00-12:00 and 11:00-13:00 overlap on Monday"),
        "{overlap}"
    );
    let date = toml::from_str::<Inbox>(
        "hours = { week = \"mon 09:00-12:00\", zone = \"UTC\", holidays = [\"2026-13-01\"] }",
    )
    .expect_err("date");
    assert!(
        date.to_string()
            .contains("`2026-13-01` is not a date: write YYYY-MM-DD"),
        "{date}"
    );
    let key = toml::from_str::<Inbox>("hours = { week = \"mon 09:00-12:00\", zones = \"UTC\" }")
        .expect_err("unknown key");
    assert!(key.to_string().contains("unknown field `zones`"), "{key}");
}

#[test]
fn storage_keeps_business_hours_as_a_table() {
    let h = hours(OFFICE);
    let json = serde_json::to_string(&h).expect("json");
    assert_eq!(
        json,
        r#"{"week":"mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00","zone":"Europe/Berlin","holidays":["2026-12-24","2026-12-25"]}"#
    );
    let back: BusinessHours = serde_json::from_str(&json).expect("back");
    assert_eq!(back, h);
    let always = serde_json::to_string(&BusinessHours::always_open()).expect("json");
    assert_eq!(always, r#"{"week":"mon-sun 00:00-24:00","zone":"UTC"}"#);
}
