//! How a run reports: latency histograms (HdrHistogram, in microseconds),
//! error tallies, the progress bar on stderr, and the summary on stdout, as
//! a table or as one JSON object. It knows nothing of the server under test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

/// Highest latency a histogram holds, in µs (one hour); longer ones saturate.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with three significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant bounds are valid")
}

/// Records `elapsed` (at least 1 µs) in `histogram`.
pub(crate) fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Adds `other` into `into` (same bounds, so it cannot fail in practice).
pub(crate) fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    if let Err(error) = into.add(other) {
        tracing::warn!(%error, "histograms could not be merged");
    }
}

/// Errors by message, counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally(pub(crate) BTreeMap<String, u64>);

impl Tally {
    /// Counts one `error`.
    pub(crate) fn add(&mut self, error: &dyn std::fmt::Display) {
        let mut text = error.to_string();
        if text.len() > 160 {
            let cut = (0..=160)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
        }
        *self.0.entry(text).or_default() += 1;
    }

    /// All errors counted.
    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// A [`Tally`] shared by tasks.
pub(crate) type SharedTally = Arc<Mutex<Tally>>;

/// A copy of a shared tally's counts.
pub(crate) fn snapshot(tally: &SharedTally) -> Tally {
    tally.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Counts `error` in a shared tally.
pub(crate) fn count_error(tally: &SharedTally, error: &dyn std::fmt::Display) {
    tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(error);
}

/// A progress bar of `len` steps on stderr, or a hidden one.
pub(crate) fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{prefix:>24} [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    if show {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar
}

/// A progress bar that also counts failures.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// The bar.
    pub(crate) bar: ProgressBar,
    failed: Arc<AtomicU64>,
}

impl Progress {
    /// Counts failures on `bar`.
    pub(crate) fn new(bar: ProgressBar) -> Self {
        Self {
            bar,
            failed: Arc::default(),
        }
    }

    /// One step succeeded.
    pub(crate) fn inc_ok(&self) {
        self.bar.inc(1);
    }

    /// One step failed.
    pub(crate) fn inc_failed(&self) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("({failed} failed)"));
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The results of a scenario: a table for people, a JSON object for programs.
#[derive(Debug)]
pub(crate) struct Summary {
    scenario: &'static str,
    server: String,
    run: String,
    lines: Vec<Line>,
    fields: Map<String, Value>,
    failures: Vec<String>,
}

#[derive(Debug)]
enum Line {
    Section(&'static str),
    Field { label: String, text: String },
}

impl Summary {
    /// An empty summary of `scenario` against `server`, for the run named `run`.
    pub(crate) fn new(scenario: &'static str, server: &str, run: &str) -> Self {
        Self {
            scenario,
            server: server.to_owned(),
            run: run.to_owned(),
            lines: Vec::new(),
            fields: Map::new(),
            failures: Vec::new(),
        }
    }

    /// Starts a titled group of lines in the table.
    pub(crate) fn section(&mut self, title: &'static str) {
        self.lines.push(Line::Section(title));
    }

    /// One result: `value` under `key` in JSON, `text` after `label` in the table.
    pub(crate) fn field(
        &mut self,
        key: &str,
        label: &str,
        value: impl Into<Value>,
        text: impl Into<String>,
    ) {
        self.fields.insert(key.to_owned(), value.into());
        self.lines.push(Line::Field {
            label: label.to_owned(),
            text: text.into(),
        });
    }

    /// A count.
    pub(crate) fn count(&mut self, key: &str, label: &str, n: u64) {
        self.field(key, label, n, group(n));
    }

    /// A rate per second, e.g. `unit` = "msg/s".
    pub(crate) fn rate(&mut self, key: &str, label: &str, per_second: f64, unit: &str) {
        let rounded = (per_second * 10.0).round() / 10.0;
        self.field(
            key,
            label,
            rounded,
            format!("{} {unit}", group(per_second.round() as u64)),
        );
    }

    /// A duration, as `<key>_ms` in JSON.
    pub(crate) fn duration(&mut self, key: &str, label: &str, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.field(
            &format!("{key}_ms"),
            label,
            (ms * 1000.0).round() / 1000.0,
            millis(elapsed.as_micros() as u64),
        );
    }

    /// A size in KiB, as `<key>_kib` in JSON.
    pub(crate) fn kib(&mut self, key: &str, label: &str, kib: f64) {
        self.field(
            &format!("{key}_kib"),
            label,
            (kib * 10.0).round() / 10.0,
            format!("{kib:.1} KiB"),
        );
    }

    /// A latency distribution: p50, p99, p99.9, max and mean in µs.
    pub(crate) fn latency(&mut self, key: &str, label: &str, histogram: &Histogram<u64>) {
        let value = latency_json(histogram);
        let text = if histogram.is_empty() {
            "no samples".to_owned()
        } else {
            format!(
                "p50 {}  p99 {}  p99.9 {}  max {}  (n {})",
                millis(histogram.value_at_quantile(0.50)),
                millis(histogram.value_at_quantile(0.99)),
                millis(histogram.value_at_quantile(0.999)),
                millis(histogram.max()),
                group(histogram.len()),
            )
        };
        self.field(key, label, value, text);
    }

    /// The errors of `tally`, most frequent first (at most five lines).
    pub(crate) fn errors(&mut self, key: &str, tally: &Tally) {
        let value: Map<String, Value> = tally
            .0
            .iter()
            .map(|(text, count)| (text.clone(), json!(count)))
            .collect();
        self.fields.insert(key.to_owned(), Value::Object(value));
        let mut ranked: Vec<_> = tally.0.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1));
        for (text, count) in ranked.into_iter().take(5) {
            self.lines.push(Line::Field {
                label: format!("error × {}", group(*count)),
                text: text.clone(),
            });
        }
    }

    /// Whether a performance target was met (informational: a missed target
    /// does not fail the run; benchmarks must not gate on wall-clock time).
    pub(crate) fn target(&mut self, key: &str, label: &str, met: bool) {
        self.field(
            &format!("target_{key}"),
            label,
            met,
            if met { "met" } else { "MISSED" },
        );
    }

    /// A performance target that does not apply to this run's parameters.
    pub(crate) fn target_not_applicable(&mut self, key: &str, label: &str, why: &str) {
        self.field(
            &format!("target_{key}"),
            label,
            Value::Null,
            format!("n/a ({why})"),
        );
    }

    /// A correctness failure (lost or misordered events, failed
    /// connections): the run exits with an error.
    pub(crate) fn fail(&mut self, reason: impl Into<String>) {
        self.failures.push(reason.into());
    }

    /// Whether no correctness check failed.
    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Prints the summary on stdout.
    pub(crate) fn print(&self, json: bool) {
        if json {
            let value = json!({
                "scenario": self.scenario,
                "server": self.server,
                "run": self.run,
                "ok": self.passed(),
                "failures": self.failures,
                "results": self.fields,
            });
            println!("{value}");
            return;
        }
        println!(
            "kanal-bench {} — server {} (run {})",
            self.scenario, self.server, self.run
        );
        let width = self
            .lines
            .iter()
            .map(|line| match line {
                Line::Field { label, .. } => label.chars().count(),
                Line::Section(_) => 0,
            })
            .max()
            .unwrap_or(0);
        for line in &self.lines {
            match line {
                Line::Section(title) => println!("  {title}"),
                Line::Field { label, text } => println!("    {label:<width$}  {text}"),
            }
        }
        if self.failures.is_empty() {
            println!("  result: ok");
        } else {
            for failure in &self.failures {
                println!("  FAILED: {failure}");
            }
        }
    }
}

fn latency_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": histogram.len(),
        "p50_us": histogram.value_at_quantile(0.50),
        "p90_us": histogram.value_at_quantile(0.90),
        "p99_us": histogram.value_at_quantile(0.99),
        "p999_us": histogram.value_at_quantile(0.999),
        "max_us": histogram.max(),
        "mean_us": (histogram.mean() * 10.0).round() / 10.0,
    })
}

/// Microseconds as milliseconds (or seconds), with sensible precision.
pub(crate) fn millis(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// `n` with thousands separators: 1234567 → "1,234,567".
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(millis(840), "0.84 ms");
        assert_eq!(millis(12_345), "12.3 ms");
        assert_eq!(millis(2_500_000), "2.50 s");
    }

    #[test]
    fn histogram_saturates_instead_of_failing() {
        let mut h = histogram();
        record(&mut h, Duration::from_secs(10_000));
        record(&mut h, Duration::ZERO);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }
}
