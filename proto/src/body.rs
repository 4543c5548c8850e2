//! What every reader of a message body needs, whatever its kind.

use crate::pb;

impl pb::Body {
    /// The text the body says: every kind has one. `None` for a body with
    /// no kind (or one newer than this crate).
    pub fn text(&self) -> Option<&str> {
        match self.kind.as_ref()? {
            pb::body::Kind::Text(text) => Some(text),
            pb::body::Kind::Prompt(prompt) => Some(&prompt.text),
            pb::body::Kind::DeviceReport(report) => Some(&report.text),
            pb::body::Kind::Question(question) => Some(&question.text),
            pb::body::Kind::Answer(answer) => Some(&answer.text),
        }
    }

    /// The quick replies a prompt offers (none for other kinds).
    pub fn replies(&self) -> &[String] {
        match &self.kind {
            Some(pb::body::Kind::Prompt(prompt)) => &prompt.replies,
            _ => &[],
        }
    }

    /// The diagnostics of a device report (none for other kinds).
    pub fn diagnostics(&self) -> &[pb::Diagnostic] {
        match &self.kind {
            Some(pb::body::Kind::DeviceReport(report)) => &report.diagnostics,
            _ => &[],
        }
    }
}
