//! Sizes and counts every implementation must respect.
//!
//! A peer that exceeds a limit gets the error code documented next to it; the
//! limits are part of protocol version 1.

/// Largest frame (excluding its length prefix) on the control stream and of
/// a `Request`, in bytes. Larger frames close the stream with
/// [`crate::codes::StreamCode::FrameTooLarge`].
pub const MAX_FRAME: usize = 64 * 1024;

/// Largest frame on the event stream, in bytes. A Push carries one message,
/// so this is [`MAX_FRAME`] plus room for the envelope.
pub const MAX_PUSH_FRAME: usize = MAX_FRAME + 1024;

/// Largest `Response` frame the server sends, in bytes. Pages of History and
/// ListConversations are cut to fit (with `has_more` set), so clients may
/// refuse anything larger.
pub const MAX_RESPONSE_FRAME: usize = 1024 * 1024;

/// Requests of one request stream the server handles at once. Further
/// `Request` frames stay unread (QUIC flow control then holds the client
/// back) until the oldest pending request is answered.
pub const MAX_PIPELINED_REQUESTS: usize = 64;

/// Largest text body, in bytes of UTF-8.
pub const MAX_TEXT: usize = 16 * 1024;

/// Longest `client_msg_id` (and `client_note_id`), in bytes.
pub const MAX_CLIENT_MSG_ID: usize = 64;

/// Longest internal note, in bytes of UTF-8 (as a text body).
pub const MAX_NOTE: usize = MAX_TEXT;

/// Most labels on one ticket.
pub const MAX_LABELS: usize = 32;

/// Longest label, in bytes of UTF-8.
pub const MAX_LABEL: usize = 64;

/// Furthest ahead a snooze may end, in milliseconds: 366 days.
pub const MAX_SNOOZE_MS: i64 = 366 * 24 * 3600 * 1000;

/// The longest period one report covers (`GetReport`), in ms.
pub const MAX_REPORT_PERIOD_MS: i64 = 366 * 24 * 3600 * 1000;

/// Most desk-log entries one report reads per inbox; a period with more
/// is reported from its start and marked incomplete.
pub const MAX_REPORT_ENTRIES: usize = 1_000_000;

/// Most choices of one question (quick replies, buttons, a list's rows in
/// all sections, a form field's options).
pub const MAX_CHOICES: usize = 100;

/// Most sections of a list question.
pub const MAX_SECTIONS: usize = 20;

/// Most fields of a form question.
pub const MAX_FIELDS: usize = 50;

/// Longest choice or field id, in bytes.
pub const MAX_CHOICE_ID: usize = 64;

/// Longest choice label, field label, section title or field hint, in
/// bytes of UTF-8.
pub const MAX_CHOICE_LABEL: usize = 256;

/// Longest choice description, in bytes of UTF-8.
pub const MAX_CHOICE_DESCRIPTION: usize = 1024;

/// Longest button word (a list's button, a form's submit, a rating's end
/// labels), in bytes of UTF-8.
pub const MAX_BUTTON: usize = 64;

/// Longest value of a one-line form field (TEXT, NUMBER, EMAIL, PHONE), in
/// bytes of UTF-8.
pub const MAX_FIELD_VALUE: usize = 1024;

/// Longest value of a MULTILINE form field, and longest rating comment, in
/// bytes of UTF-8.
pub const MAX_LONG_VALUE: usize = 4096;

/// Longest conversation subject, in bytes.
pub const MAX_SUBJECT: usize = 256;

/// Longest invite code accepted in `Register.invite`, in bytes.
pub const MAX_INVITE: usize = 128;

/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 128;

/// Most parties named in one `CreateConversation.to`.
pub const MAX_RECIPIENTS: usize = 32;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD: usize = 8;

/// Longest accepted password, in bytes.
pub const MAX_PASSWORD: usize = 1024;

/// Largest page of `History` or `ListConversations`.
pub const MAX_PAGE: u32 = 500;

/// Page size used when a request says 0.
pub const DEFAULT_PAGE: u32 = 50;

/// Time a client has to send its Hello after the connection opens, in seconds.
pub const HELLO_TIMEOUT_SECS: u64 = 10;

/// Largest seq any log or conversation reaches (2⁶³ − 1): a `before_seq`
/// above it is refused with `BAD_REQUEST`.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// Seconds a frame may take from its first byte to its last on a request
/// stream; a slower one resets the stream with
/// [`crate::codes::StreamCode::Stalled`] (on the control stream, it closes
/// the connection with `PROTOCOL_VIOLATION`).
pub const FRAME_STALL_SECS: u64 = 10;
