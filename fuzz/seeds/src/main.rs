//! Writes the hand-made seeds of Kanal's fuzz targets into
//! `corpus/<target>/` (run from `fuzz/`: `cargo run -p kanal-fuzz-seeds`).
//! Each seed is a well-formed input, so the fuzzers start from what the
//! protocol looks like rather than from nothing.

use std::path::Path;

use kanal_proto::{frame, pb};

const PASSWORD: &str = "correct horse battery";
/// Stand-ins the request_stream target replaces with real conversation ids.
const CONV: [&str; 2] = [
    "localhost/zzzzzzzzzzzzzzzzzzz0",
    "localhost/zzzzzzzzzzzzzzzzzzz1",
];

fn main() -> std::io::Result<()> {
    let corpus = Path::new("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)
    };

    let hellos = hellos();
    let requests = requests();

    // frame: limit 0xffff (the protocol's), pieces of 3 bytes, then frames.
    for (name, control) in &hellos {
        let mut bytes = vec![0xff, 0xff, 3];
        frame::encode(control, &mut bytes);
        write("frame", name, &bytes)?;
    }
    let mut pipelined = Vec::new();
    for (_, request) in &requests {
        frame::encode(request, &mut pipelined);
    }
    write(
        "frame",
        "pipelined",
        &[&[0xff, 0xff, 7], &pipelined[..]].concat(),
    )?;
    write("frame", "too-large", &[0xff, 0xff, 1, 0x81, 0x80, 0x04])?;

    // messages: bare message bodies, one type each.
    for (name, control) in &hellos {
        write("messages", name, &prost_bytes(control))?;
    }
    for (name, request) in &requests {
        write("messages", name, &prost_bytes(request))?;
    }
    let typing = pb::Datagram {
        kind: Some(pb::datagram::Kind::Typing(pb::Typing {
            conversation: "localhost/abc".into(),
            active: true,
            from: String::new(),
        })),
    };
    write("messages", "typing", &prost_bytes(&typing))?;

    // request_stream: mode byte 0 (raw, finish), then frames.
    for (name, request) in &requests {
        let mut bytes = vec![0];
        frame::encode(request, &mut bytes);
        write("request_stream", name, &bytes)?;
    }
    write(
        "request_stream",
        "pipelined",
        &[&[0], &pipelined[..]].concat(),
    )?;
    // A too-large prefix (65 537) after a good request.
    let mut bad = vec![0];
    frame::encode(&requests[3].1, &mut bad);
    bad.extend_from_slice(&[0x81, 0x80, 0x04]);
    write("request_stream", "too-large", &bad)?;

    // hello: the control stream of a connection.
    for (name, control) in &hellos {
        let mut bytes = Vec::new();
        frame::encode(control, &mut bytes);
        if name.starts_with("hello-") {
            let sync = pb::ClientControl {
                kind: Some(pb::client_control::Kind::Sync(pb::Sync { since: 0 })),
            };
            let ack = pb::ClientControl {
                kind: Some(pb::client_control::Kind::Ack(pb::Ack { seq: 1 })),
            };
            let mut then = bytes.clone();
            frame::encode(&sync, &mut then);
            frame::encode(&ack, &mut then);
            write("hello", &format!("{name}-sync-ack"), &then)?;
        }
        write("hello", name, &bytes)?;
    }
    Ok(())
}

fn prost_bytes<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

fn hello(auth: pb::hello::Auth) -> pb::ClientControl {
    pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(pb::Hello {
            version: kanal_proto::PROTOCOL_VERSION,
            availability: pb::Availability::Unspecified as i32,
            client: "seed/1".into(),
            auth: Some(auth),
        })),
    }
}

fn hellos() -> Vec<(String, pb::ClientControl)> {
    use pb::hello::Auth;
    vec![
        (
            "hello-register".into(),
            hello(Auth::Register(pb::Register {
                local: "ann".into(),
                password: PASSWORD.into(),
                display_name: "Ann".into(),
                invite: String::new(),
            })),
        ),
        (
            "hello-password".into(),
            hello(Auth::Password(pb::PasswordLogin {
                address: "hello@localhost".into(),
                password: PASSWORD.into(),
            })),
        ),
        (
            "hello-resume".into(),
            hello(Auth::Resume(pb::Resume {
                token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            })),
        ),
        (
            "ack".into(),
            pb::ClientControl {
                kind: Some(pb::client_control::Kind::Ack(pb::Ack { seq: 300 })),
            },
        ),
    ]
}

fn requests() -> Vec<(String, pb::Request)> {
    use pb::request::Kind;
    let kinds = [
        (
            "create",
            Kind::CreateConversation(pb::CreateConversation {
                to: vec!["support@localhost".into(), "peer@localhost".into()],
                subject: "seed".into(),
            }),
        ),
        (
            "send",
            Kind::Send(pb::Send {
                conversation: CONV[0].into(),
                client_msg_id: "m1".into(),
                body: Some(pb::Body {
                    kind: Some(pb::body::Kind::Text("hi".into())),
                }),
            }),
        ),
        (
            "history",
            Kind::History(pb::History {
                conversation: CONV[0].into(),
                before_seq: 0,
                limit: 10,
            }),
        ),
        (
            "list",
            Kind::ListConversations(pb::ListConversations {
                limit: 0,
                offset: 0,
            }),
        ),
        (
            "get",
            Kind::GetConversation(pb::GetConversation {
                conversation: CONV[1].into(),
            }),
        ),
        (
            "mark",
            Kind::MarkReceipt(pb::MarkReceipt {
                conversation: CONV[0].into(),
                kind: pb::ReceiptKind::Read as i32,
                up_to_seq: 1,
            }),
        ),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            (
                format!("request-{name}"),
                pb::Request {
                    id: i as u64 + 1,
                    kind: Some(kind),
                },
            )
        })
        .collect()
}
