//! The control stream through the real server: each input is the whole
//! client side of the control stream of a new connection (Hello first, then
//! whatever follows), written and finished. The server must answer at most
//! one `ServerControl` and close the connection with the code PROTOCOL.md
//! §5 and §9.2 give for those bytes; a refusal must carry an error code a
//! Hello may get, never `INTERNAL`. Every so often a well-formed Resume must
//! still be welcomed.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use kanal_fuzz::server::{PATIENCE, harness, register, resume};
use kanal_fuzz::wire::{self, End};
use kanal_proto::codes::CloseCode;
use kanal_proto::{limits, pb};
use libfuzzer_sys::fuzz_target;

/// Every this many inputs, a well-formed Hello must still be welcomed.
const CHECK_EVERY: u64 = 32;

/// The resume token of an account made at start.
fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let harness = harness();
        harness.block_on(async {
            let session = harness.session(register("hello")).await;
            session.connection.close(0u8.into(), b"");
            session.welcome.resume_token
        })
    })
}

fuzz_target!(|data: &[u8]| {
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    let token = token();
    let harness = harness();
    harness.block_on(async {
        let connection = harness.connect().await;
        let (mut send, mut recv) = connection.open_bi().await.expect("control stream");
        let write = async {
            // The server may stop reading once it has closed: the rest is moot.
            let _ = send.write_all(data).await;
            let _ = send.finish();
        };
        let read = async {
            let mut bytes = Vec::new();
            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                bytes.extend_from_slice(&chunk.bytes);
            }
            bytes
        };
        let ((), answer) = tokio::time::timeout(PATIENCE, async { tokio::join!(write, read) })
            .await
            .expect("the server answers or closes in time");
        let closed = tokio::time::timeout(PATIENCE, connection.closed())
            .await
            .expect("the server closes the connection after its control stream ends");
        let code = match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                CloseCode::from_value(close.error_code.into_inner())
            }
            other => panic!("the connection ended without a Kanal close: {other}"),
        };
        check(data, &answer, code);

        let done = INPUTS.fetch_add(1, Ordering::Relaxed);
        if done.is_multiple_of(CHECK_EVERY) {
            let session = harness.session(resume(token)).await;
            session.connection.close(0u8.into(), b"");
        }
    });
});

/// Checks the server's answer and close code against the bytes it was sent.
fn check(sent: &[u8], answer: &[u8], code: Option<CloseCode>) {
    use pb::client_control::Kind as C;
    use pb::server_control::Kind as S;
    let (frames, end) = wire::split::<pb::ClientControl>(sent, limits::MAX_FRAME);
    let answers = wire::server_frames::<pb::ServerControl>(answer, limits::MAX_FRAME);
    assert!(answers.len() <= 1, "more than one answer: {answers:?}");
    let hello = matches!(
        frames.first(),
        Some(pb::ClientControl {
            kind: Some(C::Hello(_))
        })
    );
    // How the frames read after the Hello (or instead of it) end the connection.
    let by_frames = |rest: &[pb::ClientControl]| {
        let mut synced = false;
        for frame in rest {
            match frame.kind {
                Some(C::Sync(_)) if !synced => synced = true,
                Some(C::Ack(_)) => {}
                _ => return CloseCode::ProtocolViolation,
            }
        }
        match end {
            End::Clean => CloseCode::Normal,
            End::TooLarge => CloseCode::FrameTooLarge,
            End::BadPrefix | End::Undecodable | End::Truncated => CloseCode::ProtocolViolation,
        }
    };
    let expected = match answers.first().and_then(|a| a.kind.as_ref()) {
        Some(S::Welcome(_)) => {
            assert!(hello, "a Welcome without a Hello");
            by_frames(&frames[1..])
        }
        Some(S::Error(error)) => {
            assert!(hello, "a refusal without a Hello");
            use pb::ErrorCode as E;
            let allowed = [
                E::BadRequest,
                E::UnsupportedVersion,
                E::Unauthenticated,
                E::AddressTaken,
                E::InvalidAddress,
                E::TooLarge,
                E::RateLimited,
            ];
            assert!(
                E::try_from(error.code).is_ok_and(|code| allowed.contains(&code)),
                "a Hello refused with {error:?}"
            );
            CloseCode::HelloRefused
        }
        None if hello => {
            // The close may overtake the answer: a refusal's (§5.5), or a
            // Welcome's when the stream ended right after the Hello (§5.6).
            let welcomed = by_frames(&frames[1..]);
            assert!(
                code == Some(CloseCode::HelloRefused) || code == Some(welcomed),
                "a Hello went unanswered and the connection closed with {code:?}"
            );
            return;
        }
        None if frames.is_empty() && end == End::TooLarge => CloseCode::FrameTooLarge,
        None => CloseCode::ProtocolViolation,
    };
    assert_eq!(
        code,
        Some(expected),
        "input frames {frames:?}, then {end:?}"
    );
}
