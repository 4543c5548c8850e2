//! The out-of-hours reply: what an inbox answers a customer who writes
//! while it is closed, saying when to expect an answer.

use super::hours::BusinessHours;

/// The reply's words when the operator gives none.
const DEFAULT: &str =
    "Thank you for your message. We are closed now and will answer from {{opens}}.";

/// `words` (empty: the default) with `{{opens}}` replaced by the opening
/// at `opens`, in the inbox's own time zone: "Mon 7 Dec 09:00
/// (Europe/Berlin)".
pub(crate) fn closed_reply(words: &str, hours: &BusinessHours, opens: i64) -> String {
    let words = if words.trim().is_empty() {
        DEFAULT
    } else {
        words
    };
    let local = hours.local_time(opens);
    let when = format!("{} ({})", local.strftime("%a %-d %b %H:%M"), hours.zone());
    words.replace("{{opens}}", &when)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_names_the_opening_in_the_inbox_zone() {
        let hours: BusinessHours = "mon-fri 09:00-17:00; zone Europe/Berlin"
            .parse()
            .expect("hours");
        // Saturday 2026-12-05 12:00 UTC: closed until Monday 09:00 in Berlin.
        let saturday = 1_796_472_000_000;
        let opens = hours.next_opening(saturday).expect("opens");
        assert_eq!(
            closed_reply("", &hours, opens),
            "Thank you for your message. We are closed now and will answer from Mon 7 Dec 09:00 (Europe/Berlin)."
        );
        assert_eq!(
            closed_reply("Back {{opens}}!", &hours, opens),
            "Back Mon 7 Dec 09:00 (Europe/Berlin)!"
        );
    }
}
