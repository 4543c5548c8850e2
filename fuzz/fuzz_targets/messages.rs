//! Everything a client sends that the server decodes, on arbitrary bytes:
//! `ClientControl` (Hello and its auth, Sync, Ack), `Request` and the typing
//! `Datagram`. What decodes must re-encode to a message that decodes to
//! itself. The address and conversation-id parsers then run on the input as
//! text and on every name inside the decoded messages, checked against the
//! grammar of PROTOCOL.md §4, written out again here.
#![no_main]

use kanal_proto::address::{Address, ConversationId, validate_domain, validate_local};
use kanal_proto::pb;
use kanal_proto::question::{answer_text, check_answer_shape, check_question};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut names = vec![String::from_utf8_lossy(data).into_owned()];
    if let Some(control) = round_trip::<pb::ClientControl>(data)
        && let Some(pb::client_control::Kind::Hello(hello)) = control.kind
    {
        match hello.auth {
            Some(pb::hello::Auth::Register(r)) => names.push(format!("{}@localhost", r.local)),
            Some(pb::hello::Auth::Password(p)) => names.push(p.address),
            _ => {}
        }
    }
    if let Some(request) = round_trip::<pb::Request>(data) {
        use pb::request::Kind;
        match request.kind {
            Some(Kind::CreateConversation(c)) => names.extend(c.to),
            Some(Kind::Send(s)) => names.push(s.conversation),
            Some(Kind::History(h)) => names.push(h.conversation),
            Some(Kind::GetConversation(g)) => names.push(g.conversation),
            Some(Kind::MarkReceipt(m)) => names.push(m.conversation),
            Some(Kind::GetTicket(g)) => names.push(g.conversation),
            Some(Kind::ListTickets(l)) => names.extend([l.inbox, l.owner]),
            Some(Kind::Assign(a)) => names.extend([a.conversation, a.agent]),
            Some(Kind::Transfer(t)) => names.extend([t.conversation, t.team]),
            Some(Kind::SetStatus(s)) => names.push(s.conversation),
            Some(Kind::SetPriority(p)) => names.push(p.conversation),
            Some(Kind::SetLabels(l)) => {
                names.push(l.conversation);
                names.extend(l.add);
                names.extend(l.remove);
            }
            Some(Kind::AddNote(n)) => names.push(n.conversation),
            Some(Kind::DeskHistory(h)) => names.push(h.conversation),
            Some(Kind::HandOff(h)) => names.push(h.conversation),
            Some(Kind::GetContact(c)) => names.push(c.contact),
            Some(Kind::ListCanned(c)) => names.push(c.inbox),
            Some(Kind::GetReport(r)) => names.push(r.inbox),
            Some(Kind::ListConversations(_) | Kind::SetAvailability(_)) | None => {}
        }
    }
    // The structured-message rules never panic, and an answer that passes
    // them has words; the first half of the input is a question, the rest
    // an answer to it.
    let (question, answer) = data.split_at(data.len() / 2);
    if let (Some(question), Some(answer)) = (
        round_trip::<pb::Question>(question),
        round_trip::<pb::Answer>(answer),
    ) {
        let shaped = check_question(&question).is_ok() && check_answer_shape(&answer).is_ok();
        if let Ok(words) = answer_text(&question, &answer)
            && shaped
        {
            assert!(
                !words.is_empty() || matches!(question.kind, Some(pb::question::Kind::Form(_)))
            );
        }
    }
    if let Some(pb::Datagram {
        kind: Some(pb::datagram::Kind::Typing(typing)),
    }) = round_trip::<pb::Datagram>(data)
    {
        names.push(typing.conversation);
    }
    for name in &names {
        address(name);
        conversation(name);
        assert_eq!(validate_local(name).is_ok(), spec_local(name), "{name:?}");
        assert_eq!(validate_domain(name).is_ok(), spec_domain(name), "{name:?}");
    }
});

/// Decodes `M`; what decodes re-encodes and decodes to itself.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len());
    assert_eq!(M::decode(&bytes[..]).as_ref(), Ok(&message));
    Some(message)
}

fn address(text: &str) {
    match (text.parse::<Address>(), spec_address(text)) {
        (Ok(a), Some(canonical)) => {
            assert_eq!(a.as_str(), canonical);
            assert_eq!(format!("{}@{}", a.local(), a.domain()), canonical);
            assert_eq!(a.to_string().parse::<Address>().as_ref(), Ok(&a));
            assert_eq!(Address::new(a.local(), a.domain()).as_ref(), Ok(&a));
        }
        (Err(_), None) => {}
        (parsed, spec) => panic!("{text:?}: parsed as {parsed:?}, the grammar says {spec:?}"),
    }
}

fn conversation(text: &str) {
    match (text.parse::<ConversationId>(), spec_conversation(text)) {
        (Ok(c), Some(canonical)) => {
            assert_eq!(c.as_str(), canonical);
            assert_eq!(format!("{}/{}", c.host(), c.opaque()), canonical);
            assert_eq!(c.to_string().parse::<ConversationId>().as_ref(), Ok(&c));
            assert_eq!(ConversationId::new(c.host(), c.opaque()).as_ref(), Ok(&c));
        }
        (Err(_), None) => {}
        (parsed, spec) => panic!("{text:?}: parsed as {parsed:?}, the grammar says {spec:?}"),
    }
}

/// §4.1: trimmed and lowercased, split at the last `@`.
fn spec_address(text: &str) -> Option<String> {
    let canonical = text.trim().to_ascii_lowercase();
    let (local, domain) = canonical.rsplit_once('@')?;
    (spec_local(local) && spec_domain(domain)).then_some(canonical.clone())
}

/// §4.2: trimmed and lowercased, split at the first `/`.
fn spec_conversation(text: &str) -> Option<String> {
    let canonical = text.trim().to_ascii_lowercase();
    let (domain, opaque) = canonical.split_once('/')?;
    let opaque_ok = (1..=64).contains(&opaque.len())
        && opaque
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'));
    (spec_domain(domain) && opaque_ok).then_some(canonical.clone())
}

/// `local = 1*64 lchar`, the first a lowercase letter or digit.
fn spec_local(local: &str) -> bool {
    let bytes = local.as_bytes();
    (1..=64).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// `domain = label *("." label)`, at most 253 bytes; labels of 1-63 of
/// `a-z 0-9 -`, not starting or ending with `-`.
fn spec_domain(domain: &str) -> bool {
    (1..=253).contains(&domain.len())
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            (1..=63).contains(&bytes.len())
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
                && bytes
                    .iter()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        })
}
