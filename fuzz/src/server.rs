//! One Kanal server per fuzzing process: started on first use on a fresh
//! data directory (real SQLite store, 127.0.0.1 port 0), with a QUIC client
//! endpoint pinned to its certificate, both kept for the life of the process.
//!
//! Any panic in a server task aborts the process (libFuzzer's panic hook),
//! so a target only has to drive the server and check what it answered.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kanal_client::Fingerprint;
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use kanal_server::config::Config;
use kanal_server::model::PartyKind;
use kanal_server::{Server, admin, datadir};

/// Password of every account the harness makes.
pub const PASSWORD: &str = "correct horse battery";

/// Longest the harness waits for anything the server should do at once.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Prefix of the data directories, named `kanal-fuzz-<pid>-…` in the
/// temporary directory.
const DIR_PREFIX: &str = "kanal-fuzz-";

/// The process's server and client endpoint.
#[derive(Debug)]
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    server: Server,
    client: quinn::Endpoint,
    _dir: tempfile::TempDir,
}

/// The harness, started on first use.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::start)
}

impl Harness {
    fn start() -> Self {
        remove_stale_dirs();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("data directory");
        let (server, client) = runtime.block_on(async {
            datadir::init(dir.path(), &Config::default())
                .await
                .expect("kanald init");
            let mut config = Config::load(dir.path()).expect("config");
            config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            // Inputs come thousands a second from one address and account:
            // with the rate and connection limits on, nearly every one would
            // stop at them and never reach the code behind.
            config.registrations_per_hour_per_source = 0;
            config.registrations_per_hour = 0;
            config.sends_per_second_per_party = 0;
            config.max_connections_per_source = 0;
            config.max_connections_per_account = 0;
            let server = Server::start(dir.path(), config)
                .await
                .expect("server start");
            let client = client_endpoint(server.fingerprint());
            (server, client)
        });
        Self {
            runtime,
            server,
            client,
            _dir: dir,
        }
    }

    /// Runs `future` to completion on the harness's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A new QUIC connection to the server (ALPN `kanal/1`, pinned
    /// certificate), from the shared client endpoint.
    pub async fn connect(&self) -> quinn::Connection {
        let connecting = self
            .client
            .connect(self.server.local_addr(), "localhost")
            .expect("connect configuration");
        tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("the server completes a QUIC handshake in time")
            .expect("the server accepts a QUIC connection")
    }

    /// Connects and completes `hello`; panics unless the server welcomes it.
    pub async fn session(&self, hello: pb::Hello) -> Session {
        let connection = self.connect().await;
        let (mut control, recv) = connection.open_bi().await.expect("control stream");
        let hello = pb::ClientControl {
            kind: Some(pb::client_control::Kind::Hello(hello)),
        };
        write_frame(&mut control, &hello)
            .await
            .expect("write Hello");
        let mut reader = FrameReader::new(recv, limits::MAX_FRAME);
        let answer = tokio::time::timeout(PATIENCE, reader.next::<pb::ServerControl>())
            .await
            .expect("the server answers a Hello in time");
        let welcome = match answer {
            Ok(Some(pb::ServerControl {
                kind: Some(pb::server_control::Kind::Welcome(welcome)),
            })) => welcome,
            other => panic!("a well-formed Hello was not welcomed: {other:?}"),
        };
        Session {
            connection,
            welcome,
            _control: control,
            _control_recv: reader,
        }
    }

    /// Creates a user through the admin path (no Register).
    pub async fn add_user(&self, local: &str) {
        admin::add_account(&self.server.node(), local, PartyKind::User, PASSWORD, "")
            .await
            .expect("add user");
    }
}

/// A connection that completed its Hello; its control stream stays open as
/// long as this value lives.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub connection: quinn::Connection,
    /// What the server answered.
    pub welcome: pb::Welcome,
    _control: quinn::SendStream,
    _control_recv: FrameReader<quinn::RecvStream>,
}

/// A Hello that registers `local` with [`PASSWORD`].
pub fn register(local: &str) -> pb::Hello {
    pb::Hello {
        version: kanal_proto::PROTOCOL_VERSION,
        availability: pb::Availability::Unspecified as i32,
        client: "kanal-fuzz".into(),
        auth: Some(pb::hello::Auth::Register(pb::Register {
            local: local.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
            invite: String::new(),
        })),
    }
}

/// A Hello that resumes the session of `token`.
pub fn resume(token: &str) -> pb::Hello {
    pb::Hello {
        version: kanal_proto::PROTOCOL_VERSION,
        availability: pb::Availability::Unspecified as i32,
        client: "kanal-fuzz".into(),
        auth: Some(pb::hello::Auth::Resume(pb::Resume {
            token: token.into(),
        })),
    }
}

fn client_endpoint(fingerprint: &str) -> quinn::Endpoint {
    let pin: Fingerprint = fingerprint.parse().expect("server fingerprints are hex");
    let crypto = kanal_client::tls::client_crypto(Some(pin)).expect("client TLS");
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("TLS 1.3");
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    // A kept connection must not idle out while libFuzzer is between inputs.
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
    endpoint.set_default_client_config(config);
    endpoint
}

/// libFuzzer exits without running destructors, so a data directory
/// outlives its process: remove those whose process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
