//! A small in-process Kanal server for the client's tests: the wire
//! behaviour of `kanald` (Hello/Welcome, requests, Sync/Push, Ack, typing
//! datagrams) over an in-memory store, plus switches to inject faults
//! (kill every connection, drop the connection instead of answering a
//! request, revoke resume tokens).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kanal_client::{ClientConfig, Credentials, Fingerprint, pb};
use kanal_proto::codes::CloseCode;
use kanal_proto::frame;
use kanal_proto::io::FrameReader;
use kanal_proto::limits;
use prost::Message as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "correct horse";

/// The running mock server.
pub struct MockServer {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    endpoint: quinn::Endpoint,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Account>,
    tokens: HashMap<String, String>,
    conversations: HashMap<String, Conversation>,
    connections: Vec<(String, quinn::Connection)>,
    next_id: u64,
    /// Answer no request of this kind: store its effect, then close the connection.
    drop_next: Option<&'static str>,
}

struct Account {
    password: String,
    display_name: String,
    events: Vec<pb::Event>,
    acked: u64,
    live: Vec<mpsc::UnboundedSender<pb::Push>>,
}

struct Conversation {
    subject: String,
    members: Vec<String>,
    messages: Vec<pb::Message>,
    sent: HashMap<(String, String), pb::Sent>,
}

impl MockServer {
    pub async fn start() -> MockServer {
        let key = rcgen::generate_simple_self_signed(vec![DOMAIN.to_owned()]).expect("cert");
        let cert: CertificateDer<'static> = key.cert.der().clone();
        let fingerprint = Fingerprint::of_der(&cert);
        let private = PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .expect("server tls");
        tls.alpn_protocols = vec![kanal_proto::ALPN_CLIENT.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint =
            quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = endpoint.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let accepting = endpoint.clone();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve(conn, state).await;
                    }
                });
            }
        });
        MockServer {
            addr,
            fingerprint,
            endpoint,
            state,
        }
    }

    /// A client configuration that trusts this server.
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(self.addr.to_string()).pin(self.fingerprint)
    }

    /// Credentials that register `local`.
    pub fn register(local: &str) -> Credentials {
        Credentials::Register {
            local: local.into(),
            password: PASSWORD.into(),
            display_name: local.to_uppercase(),
            invite: String::new(),
        }
    }

    /// Closes every connection as a restarting server would.
    pub fn kill_connections(&self) {
        let connections = std::mem::take(&mut self.state.lock().expect("lock").connections);
        for (_, conn) in connections {
            conn.close(CloseCode::ServerShutdown.value().into(), b"restarting");
        }
    }

    /// The next request of `kind` ("send", "create") takes effect but its
    /// connection is closed instead of answered.
    pub fn drop_next(&self, kind: &'static str) {
        self.state.lock().expect("lock").drop_next = Some(kind);
    }

    /// Forgets every resume token.
    pub fn revoke_tokens(&self) {
        self.state.lock().expect("lock").tokens.clear();
    }

    /// Messages stored in a conversation.
    pub fn message_count(&self, conversation: &str) -> usize {
        let state = self.state.lock().expect("lock");
        state
            .conversations
            .get(conversation)
            .map_or(0, |c| c.messages.len())
    }

    pub fn stop(&self) {
        self.endpoint.close(0u32.into(), b"stop");
    }
}

async fn serve(conn: quinn::Connection, state: Arc<Mutex<State>>) {
    let Ok((mut send, recv)) = conn.accept_bi().await else {
        return;
    };
    let mut control = FrameReader::new(recv, limits::MAX_FRAME);
    let Ok(Some(pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(hello)),
    })) = control.next::<pb::ClientControl>().await
    else {
        conn.close(CloseCode::ProtocolViolation.value().into(), b"no hello");
        return;
    };
    let answer = state.lock().expect("lock").hello(hello, &conn);
    let reply = match &answer {
        Ok(welcome) => pb::server_control::Kind::Welcome(welcome.clone()),
        Err(error) => pb::server_control::Kind::Error(error.clone()),
    };
    let frame = frame::encode_to_bytes(&pb::ServerControl { kind: Some(reply) });
    if send.write_all(&frame).await.is_err() {
        return;
    }
    let address = match answer {
        Ok(welcome) => welcome.party.expect("party").address,
        Err(_) => {
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            conn.close(CloseCode::HelloRefused.value().into(), b"refused");
            return;
        }
    };
    tokio::spawn(requests(conn.clone(), state.clone(), address.clone()));
    tokio::spawn(datagrams(conn.clone(), state.clone(), address.clone()));
    let mut synced = false;
    while let Ok(Some(frame)) = control.next::<pb::ClientControl>().await {
        match frame.kind {
            Some(pb::client_control::Kind::Sync(sync)) if !synced => {
                synced = true;
                let (backlog, live) = state.lock().expect("lock").subscribe(&address, sync.since);
                tokio::spawn(push(conn.clone(), backlog, live));
            }
            Some(pb::client_control::Kind::Ack(ack)) => {
                if let Some(account) = state.lock().expect("lock").accounts.get_mut(&address) {
                    account.acked = account.acked.max(ack.seq);
                }
            }
            _ => {
                conn.close(
                    CloseCode::ProtocolViolation.value().into(),
                    b"bad control frame",
                );
                return;
            }
        }
    }
}

async fn push(
    conn: quinn::Connection,
    backlog: Vec<pb::Push>,
    mut live: mpsc::UnboundedReceiver<pb::Push>,
) {
    let Ok(mut stream) = conn.open_uni().await else {
        return;
    };
    for item in backlog {
        if stream
            .write_all(&frame::encode_to_bytes(&item))
            .await
            .is_err()
        {
            return;
        }
    }
    while let Some(item) = live.recv().await {
        if stream
            .write_all(&frame::encode_to_bytes(&item))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn requests(conn: quinn::Connection, state: Arc<Mutex<State>>, address: String) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let state = state.clone();
        let address = address.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            let Ok(bytes) = recv.read_to_end(limits::MAX_FRAME + 10).await else {
                return;
            };
            let mut buf = bytes::BytesMut::from(&bytes[..]);
            let Ok(Some(body)) = frame::FrameDecoder::new(limits::MAX_FRAME).decode(&mut buf)
            else {
                return;
            };
            let Ok(request) = frame::decode_body::<pb::Request>(body) else {
                return;
            };
            let (kind, drop) = state.lock().expect("lock").handle(&address, request.kind);
            if drop {
                conn.close(CloseCode::Internal.value().into(), b"injected fault");
                return;
            }
            let response = pb::Response {
                id: request.id,
                kind: Some(kind),
            };
            if send
                .write_all(&frame::encode_to_bytes(&response))
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        });
    }
}

async fn datagrams(conn: quinn::Connection, state: Arc<Mutex<State>>, address: String) {
    while let Ok(bytes) = conn.read_datagram().await {
        let Ok(pb::Datagram {
            kind: Some(pb::datagram::Kind::Typing(mut typing)),
        }) = pb::Datagram::decode(bytes)
        else {
            continue;
        };
        typing.from = address.clone();
        let relay = pb::Datagram {
            kind: Some(pb::datagram::Kind::Typing(typing.clone())),
        }
        .encode_to_vec();
        let state = state.lock().expect("lock");
        let Some(conversation) = state.conversations.get(&typing.conversation) else {
            continue;
        };
        for (owner, other) in &state.connections {
            if owner != &address && conversation.members.contains(owner) {
                let _ = other.send_datagram(relay.clone().into());
            }
        }
    }
}

fn error(code: pb::ErrorCode, message: &str) -> pb::Error {
    pb::Error {
        code: code as i32,
        message: message.into(),
        ..Default::default()
    }
}

impl State {
    fn hello(
        &mut self,
        hello: pb::Hello,
        conn: &quinn::Connection,
    ) -> Result<pb::Welcome, pb::Error> {
        let unauthenticated = || error(pb::ErrorCode::Unauthenticated, "wrong credentials");
        let address = match hello.auth {
            Some(pb::hello::Auth::Register(register)) => {
                let address = format!("{}@{DOMAIN}", register.local);
                if self.accounts.contains_key(&address) {
                    return Err(error(pb::ErrorCode::AddressTaken, "taken"));
                }
                self.accounts.insert(
                    address.clone(),
                    Account {
                        password: register.password,
                        display_name: register.display_name,
                        events: Vec::new(),
                        acked: 0,
                        live: Vec::new(),
                    },
                );
                address
            }
            Some(pb::hello::Auth::Password(login)) => match self.accounts.get(&login.address) {
                Some(account) if account.password == login.password => login.address,
                _ => return Err(unauthenticated()),
            },
            Some(pb::hello::Auth::Resume(resume)) => self
                .tokens
                .get(&resume.token)
                .cloned()
                .ok_or_else(unauthenticated)?,
            None => return Err(error(pb::ErrorCode::BadRequest, "no auth")),
        };
        let token = format!("token-{address}-{}", self.next());
        self.tokens.insert(token.clone(), address.clone());
        self.connections.push((address.clone(), conn.clone()));
        let account = &self.accounts[&address];
        Ok(pb::Welcome {
            version: kanal_proto::PROTOCOL_VERSION,
            party: Some(pb::Party {
                address: address.clone(),
                kind: pb::PartyKind::User as i32,
                display_name: account.display_name.clone(),
            }),
            resume_token: token,
            event_head: account.events.len() as u64,
            acked_seq: account.acked,
            server_domain: DOMAIN.into(),
        })
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn subscribe(
        &mut self,
        address: &str,
        since: u64,
    ) -> (Vec<pb::Push>, mpsc::UnboundedReceiver<pb::Push>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let account = self.accounts.get_mut(address).expect("account");
        let mut backlog: Vec<pb::Push> = account
            .events
            .iter()
            .filter(|e| e.seq > since)
            .map(|e| pb::Push {
                kind: Some(pb::push::Kind::Event(e.clone())),
            })
            .collect();
        backlog.push(pb::Push {
            kind: Some(pb::push::Kind::SyncComplete(pb::SyncComplete {
                head: account.events.len() as u64,
            })),
        });
        account.live.push(tx);
        (backlog, rx)
    }

    fn emit(&mut self, address: &str, kind: pb::event::Kind) {
        let Some(account) = self.accounts.get_mut(address) else {
            return;
        };
        let event = pb::Event {
            seq: account.events.len() as u64 + 1,
            kind: Some(kind),
        };
        account.events.push(event.clone());
        account.live.retain(|tx| {
            tx.send(pb::Push {
                kind: Some(pb::push::Kind::Event(event.clone())),
            })
            .is_ok()
        });
    }

    fn view(&self, id: &str) -> pb::Conversation {
        let conversation = &self.conversations[id];
        pb::Conversation {
            id: id.into(),
            subject: conversation.subject.clone(),
            members: conversation
                .members
                .iter()
                .map(|address| pb::Party {
                    address: address.clone(),
                    kind: pb::PartyKind::User as i32,
                    display_name: String::new(),
                })
                .collect(),
            last_seq: conversation.messages.len() as u64,
            ..Default::default()
        }
    }

    /// Answers a request; the bool says whether to drop the connection instead.
    fn handle(
        &mut self,
        caller: &str,
        kind: Option<pb::request::Kind>,
    ) -> (pb::response::Kind, bool) {
        use pb::request::Kind as Req;
        use pb::response::Kind as Resp;
        let (name, answer) = match kind {
            Some(Req::CreateConversation(create)) => ("create", self.create(caller, create)),
            Some(Req::Send(send)) => ("send", self.send(caller, send)),
            Some(Req::History(history)) => match self.conversations.get(&history.conversation) {
                Some(c) if c.members.iter().any(|m| m == caller) => (
                    "history",
                    Resp::HistoryPage(pb::HistoryPage {
                        messages: c.messages.clone(),
                        has_more: false,
                    }),
                ),
                _ => (
                    "history",
                    Resp::Error(error(pb::ErrorCode::NotFound, "no such conversation")),
                ),
            },
            Some(Req::ListConversations(_)) => {
                let mut ids: Vec<_> = self
                    .conversations
                    .iter()
                    .filter(|(_, c)| c.members.iter().any(|m| m == caller))
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.sort();
                let conversations = ids.iter().map(|id| self.view(id)).collect();
                (
                    "list",
                    Resp::ConversationList(pb::ConversationList {
                        conversations,
                        has_more: false,
                    }),
                )
            }
            Some(Req::GetConversation(get)) => {
                match self.conversations.contains_key(&get.conversation) {
                    true => ("get", Resp::Conversation(self.view(&get.conversation))),
                    false => (
                        "get",
                        Resp::Error(error(pb::ErrorCode::NotFound, "no such conversation")),
                    ),
                }
            }
            Some(Req::MarkReceipt(_)) => ("mark", Resp::Done(pb::Done {})),
            // The client's session logic is what these tests exercise; the
            // service desk's requests are tested against a real kanald.
            Some(_) => (
                "desk",
                Resp::Error(error(pb::ErrorCode::BadRequest, "not served here")),
            ),
            None => (
                "none",
                Resp::Error(error(pb::ErrorCode::BadRequest, "no kind")),
            ),
        };
        let drop = self.drop_next == Some(name);
        if drop {
            self.drop_next = None;
        }
        (answer, drop)
    }

    fn create(&mut self, caller: &str, create: pb::CreateConversation) -> pb::response::Kind {
        let mut members = vec![caller.to_owned()];
        for to in create.to {
            if !self.accounts.contains_key(&to) {
                return pb::response::Kind::Error(error(pb::ErrorCode::NotFound, "no such party"));
            }
            members.push(to);
        }
        let id = format!("{DOMAIN}/c{}", self.next());
        self.conversations.insert(
            id.clone(),
            Conversation {
                subject: create.subject,
                members: members.clone(),
                messages: Vec::new(),
                sent: HashMap::new(),
            },
        );
        let view = self.view(&id);
        for member in &members {
            self.emit(member, pb::event::Kind::ConversationAdded(view.clone()));
        }
        pb::response::Kind::Conversation(view)
    }

    fn send(&mut self, caller: &str, send: pb::Send) -> pb::response::Kind {
        let Some(conversation) = self.conversations.get_mut(&send.conversation) else {
            return pb::response::Kind::Error(error(
                pb::ErrorCode::NotFound,
                "no such conversation",
            ));
        };
        let key = (caller.to_owned(), send.client_msg_id.clone());
        if let Some(sent) = conversation.sent.get(&key) {
            return pb::response::Kind::Sent(pb::Sent {
                duplicate: true,
                ..sent.clone()
            });
        }
        let message = pb::Message {
            conversation: send.conversation.clone(),
            seq: conversation.messages.len() as u64 + 1,
            sender: caller.to_owned(),
            client_msg_id: send.client_msg_id,
            sent_at_ms: 1_704_110_465_000,
            body: send.body,
        };
        let sent = pb::Sent {
            conversation: send.conversation,
            seq: message.seq,
            sent_at_ms: message.sent_at_ms,
            duplicate: false,
            relayed: false,
        };
        conversation.messages.push(message.clone());
        conversation.sent.insert(key, sent.clone());
        let members = conversation.members.clone();
        for member in members {
            self.emit(&member, pb::event::Kind::Message(message.clone()));
        }
        pb::response::Kind::Sent(sent)
    }
}
