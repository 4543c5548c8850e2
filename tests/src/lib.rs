//! Shared harness for Kanal's end-to-end tests: real servers on 127.0.0.1
//! port 0 with a real SQLite file in a temporary directory, and real clients
//! over QUIC. The tests themselves live in `tests/`, one file per area.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kanal_client::{Client, ClientConfig, ClientEvent, Credentials, Events, Fingerprint};
use kanal_proto::codes::CloseCode;
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use kanal_server::config::Config;
use kanal_server::model::PartyKind;
use kanal_server::{Server, admin, datadir};

pub mod authority;
mod bystander;
mod cluster;
pub mod device;
pub mod dns;
pub use bystander::{Bystander, Report};
pub use cluster::{DEFAULT_NATS, DEFAULT_POSTGRES, NATS_ENV, NatsLink, PrivateNats, TestCluster};

/// Password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// Upper bound on any single wait in a test: a guard against hangs, never a
/// synchronisation device (tests wait on events, not on time).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server running in this process.
#[derive(Debug)]
pub struct TestServer {
    /// The running server.
    pub server: Server,
    /// Its data directory (removed when the last holder drops it).
    pub dir: Arc<tempfile::TempDir>,
    /// Its PostgreSQL database, when the tests run on PostgreSQL (dropped
    /// when the last holder drops it, after the server).
    pub database: Option<Arc<FreshDatabase>>,
}

impl TestServer {
    /// Initialises a fresh data directory and serves it on 127.0.0.1, port 0.
    pub async fn start() -> Result<Self> {
        Self::start_with(Config::default()).await
    }

    /// Initialises a fresh data directory with `config` (its `listen` is
    /// replaced by 127.0.0.1, port 0) and serves it.
    /// On PostgreSQL (see [`FreshDatabase`]), its `database` is replaced by
    /// a fresh database of its own.
    pub async fn start_with(mut config: Config) -> Result<Self> {
        let dir = Arc::new(tempfile::tempdir()?);
        let database = FreshDatabase::for_this_test().await?.map(Arc::new);
        if let Some(database) = &database {
            config.database.clone_from(&database.url);
        }
        datadir::init(dir.path(), &config).await?;
        if database.is_some() {
            let file = dir.path().join(Config::default().database);
            ensure!(
                !file.exists(),
                "on PostgreSQL, yet {} exists",
                file.display()
            );
        }
        Self::start_in(dir, database, loopback(0)).await
    }

    /// As [`TestServer::start_with`], but the server proves its domain
    /// with `certificate` (its `tls_cert` and `tls_key` are replaced), and
    /// `files` (name, contents) are written into its data directory first,
    /// e.g. the roots its `federation_ca_file` names.
    pub async fn start_with_certificate(
        mut config: Config,
        certificate: &authority::Issued,
        files: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = Arc::new(tempfile::tempdir()?);
        let database = FreshDatabase::for_this_test().await?.map(Arc::new);
        if let Some(database) = &database {
            config.database.clone_from(&database.url);
        }
        datadir::init(dir.path(), &config).await?;
        std::fs::write(dir.path().join(&config.tls_cert), &certificate.cert)?;
        std::fs::write(dir.path().join(&config.tls_key), &certificate.key)?;
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents)?;
        }
        Self::start_in(dir, database, loopback(0)).await
    }

    /// Serves an initialised directory on `listen`.
    pub async fn start_in(
        dir: Arc<tempfile::TempDir>,
        database: Option<Arc<FreshDatabase>>,
        listen: SocketAddr,
    ) -> Result<Self> {
        let mut config = Config::load(dir.path())?;
        config.listen = listen;
        config.device_listen = loopback(0);
        config.federation_listen = loopback(0);
        let server = Server::start(dir.path(), config).await?;
        Ok(Self {
            server,
            dir,
            database,
        })
    }

    /// Stops the server and starts a new one on the same directory, database
    /// and port.
    pub async fn restart(self) -> Result<Self> {
        let addr = self.server.local_addr();
        let (dir, database) = (self.dir.clone(), self.database.clone());
        self.server.shutdown().await;
        Self::start_in(dir, database, addr).await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client configuration pinned to this server's certificate.
    pub fn client_config(&self) -> ClientConfig {
        config_for(self.addr(), self.server.fingerprint())
    }

    /// Creates an agent of the server's `support` inbox and logs it in.
    pub async fn agent(&self, local: &str) -> Result<Client> {
        admin::add_agent(
            &self.server.node(),
            local,
            datadir::DEFAULT_INBOX,
            Some(PASSWORD),
            "",
        )
        .await?;
        self.login(&format!("{local}@{}", self.server.domain()))
            .await
    }

    /// Creates a user through the admin path (not Register).
    pub async fn add_user(&self, local: &str) -> Result<()> {
        admin::add_account(&self.server.node(), local, PartyKind::User, PASSWORD, "").await?;
        Ok(())
    }

    /// Registers a new customer account over the protocol.
    pub async fn register(&self, local: &str) -> Result<Client> {
        Ok(Client::connect(
            self.client_config(),
            Credentials::Register {
                local: local.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
                invite: String::new(),
            },
        )
        .await?)
    }

    /// Logs in with the shared test password.
    pub async fn login(&self, address: &str) -> Result<Client> {
        Ok(Client::connect(
            self.client_config(),
            Credentials::Password {
                address: address.into(),
                password: PASSWORD.into(),
            },
        )
        .await?)
    }

    /// Resumes a session by token.
    pub async fn resume(&self, token: &str) -> Result<Client> {
        Ok(Client::connect(
            self.client_config(),
            Credentials::Resume {
                token: token.into(),
            },
        )
        .await?)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Environment variable that runs the end-to-end tests on PostgreSQL: the
/// URL of a PostgreSQL server where the tests may create databases, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`. Unset: SQLite.
pub const POSTGRES_ENV: &str = "KANAL_E2E_POSTGRES";

/// A PostgreSQL database made for one test, dropped when it is dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    /// The server, as [`POSTGRES_ENV`] names it.
    server_url: String,
    /// The database's name.
    name: String,
    /// The database's URL.
    pub url: String,
}

impl FreshDatabase {
    /// The server to make databases on, if the tests run on PostgreSQL.
    pub fn wanted() -> Result<Option<String>> {
        match std::env::var(POSTGRES_ENV) {
            Ok(url) if !url.is_empty() => Ok(Some(url)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => bail!("{POSTGRES_ENV}: {e}"),
        }
    }

    /// A fresh database if the tests run on PostgreSQL, else `None`.
    pub async fn for_this_test() -> Result<Option<Self>> {
        match Self::wanted()? {
            Some(server_url) => Ok(Some(Self::create(&server_url).await?)),
            None => Ok(None),
        }
    }

    /// Creates a database with a new name on the server at `server_url`.
    pub async fn create(server_url: &str) -> Result<Self> {
        use sqlx::Connection as _;
        let name = format!("kanal_e2e_{:016x}", rand_u64());
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .with_context(|| format!("connecting to {POSTGRES_ENV}"))?;
        // The name is ours: `kanal_e2e_` and hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let (base, _) = server_url
            .rsplit_once('/')
            .context("the server URL names no database")?;
        Ok(Self {
            server_url: server_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop may run inside a runtime: drop the database from a thread
        // of its own, on a runtime of its own, and wait for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut admin = sqlx::PgConnection::connect(&server_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A random number, for names nobody else picks.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The default configuration without the per-party send limit, for tests
/// whose subject is something else and that send thousands of messages as
/// one party.
pub fn unlimited_sends() -> Config {
    Config {
        sends_per_second_per_party: 0,
        ..Config::default()
    }
}

/// Sets `key = value` (TOML) in the data directory's `kanald.toml`, as an
/// operator editing it would.
pub fn set_config_key(data: &Path, key: &str, value: &str) -> Result<()> {
    let path = data.join(kanal_server::config::CONFIG_FILE);
    let text = std::fs::read_to_string(&path)?;
    let prefix = format!("{key} =");
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                found = true;
                format!("{key} = {value}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !found {
        lines.push(format!("{key} = {value}"));
    }
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}

/// Most memory an abuse test's process may reach, in MiB: the server, its
/// attackers and its bystanders together (nextest runs each test in a
/// process of its own), in a debug build. Before the hardening, typing,
/// login and handshake floods took the server alone to 0.8–10 GB.
pub const ABUSE_MEMORY_MIB: u64 = 640;

/// This process's peak resident memory so far (`VmHWM`), in MiB.
pub fn peak_memory_mib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .parse()?;
    Ok(kib / 1024)
}

/// Fails if this process's memory ever passed [`ABUSE_MEMORY_MIB`]; prints
/// the peak, so the test's output says what it measured.
///
/// The peak is this test's only when the process runs nothing else: under
/// nextest (a process per test, as CI runs the suite). Under `cargo test`,
/// where every test of the binary shares one process, it is printed and not
/// asserted.
pub fn assert_memory_bounded(what: &str) -> Result<()> {
    let peak = peak_memory_mib()?;
    println!("{what}: peak resident memory of the test process {peak} MiB");
    if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() != Ok("process-per-test") {
        println!(
            "{what}: memory bound not asserted: other tests share this process (run under cargo nextest)"
        );
        return Ok(());
    }
    anyhow::ensure!(
        peak <= ABUSE_MEMORY_MIB,
        "{what}: the process peaked at {peak} MiB, above {ABUSE_MEMORY_MIB} MiB"
    );
    Ok(())
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A client configuration for a server at `addr` with certificate `fingerprint`.
pub fn config_for(addr: SocketAddr, fingerprint: &str) -> ClientConfig {
    let pin: Fingerprint = fingerprint
        .parse()
        .expect("server fingerprints are valid hex");
    ClientConfig::new(addr.to_string())
        .server_name("localhost")
        .pin(pin)
}

/// The text of a message body.
pub fn text_of(message: &pb::Message) -> &str {
    message.body.as_ref().and_then(pb::Body::text).unwrap_or("")
}

/// Waits for the next client event.
pub async fn next_event(events: &mut Events) -> Result<ClientEvent> {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .context("no event arrived in time")?
        .context("the event stream ended")
}

/// Waits for the next stored event (skipping SyncComplete, typing, reconnects).
pub async fn next_stored(events: &mut Events) -> Result<pb::Event> {
    loop {
        if let ClientEvent::Event(event) = next_event(events).await? {
            return Ok(event);
        }
    }
}

/// Waits for the next message event and returns the message.
pub async fn next_message(events: &mut Events) -> Result<pb::Message> {
    loop {
        let event = next_stored(events).await?;
        if let Some(pb::event::Kind::Message(message)) = event.kind {
            return Ok(message);
        }
    }
}

/// Every message of `conversation`, read page by page as `client` sees
/// it: seq → client_msg_id.
pub async fn stored_sends(
    client: &Client,
    conversation: &str,
) -> Result<std::collections::BTreeMap<u64, String>> {
    let mut stored = std::collections::BTreeMap::new();
    let mut before = 0;
    loop {
        let page = client.history(conversation, before, 500).await?;
        for m in &page.messages {
            stored.insert(m.seq, m.client_msg_id.clone());
        }
        match page.messages.first() {
            Some(first) if page.has_more => before = first.seq,
            _ => return Ok(stored),
        }
    }
}

/// Asserts every acknowledged send (seq → client_msg_id) is stored under
/// its seq, and the stored seqs run from 1 without a gap.
pub fn assert_acked_stored(
    acked: &std::collections::BTreeMap<u64, String>,
    stored: &std::collections::BTreeMap<u64, String>,
) {
    for (seq, cmid) in acked {
        assert_eq!(
            stored.get(seq),
            Some(cmid),
            "acknowledged message {seq} ({cmid}) was lost"
        );
    }
    let seqs: Vec<u64> = stored.keys().copied().collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "stored seqs are gapless");
}

/// Reads events until SyncComplete; returns the stored events before it.
pub async fn until_caught_up(events: &mut Events) -> Result<Vec<pb::Event>> {
    let mut seen = Vec::new();
    loop {
        match next_event(events).await? {
            ClientEvent::Event(event) => seen.push(event),
            ClientEvent::SyncComplete { .. } => return Ok(seen),
            _ => {}
        }
    }
}

/// Asserts an error is a refusal with `code`.
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, kanal_client::ClientError>,
    code: pb::ErrorCode,
) -> Result<()> {
    match result {
        Err(e) if e.code() == Some(code) => Ok(()),
        other => bail!("expected refusal {code:?}, got {other:?}"),
    }
}

/// A connection made by hand that completed Register; the control stream
/// stays open as long as this value lives.
#[derive(Debug)]
pub struct RawSession {
    /// The connection.
    pub connection: quinn::Connection,
    /// The control stream's sending half (for Sync and Ack frames).
    pub control: quinn::SendStream,
    _control_recv: FrameReader<quinn::RecvStream>,
}

/// A QUIC connection made by hand, with any ALPN.
pub async fn raw_connect(
    server: &TestServer,
    alpn: &[u8],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    raw_connect_with(server, alpn, quinn::TransportConfig::default()).await
}

/// A QUIC connection made by hand, with any ALPN and transport settings
/// (keep-alive every 5 s is added: a raw session that only waits must not
/// idle out).
pub async fn raw_connect_with(
    server: &TestServer,
    alpn: &[u8],
    mut transport: quinn::TransportConfig,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let pin: Fingerprint = server.server.fingerprint().parse().expect("valid");
    let mut crypto = kanal_client::tls::client_crypto(Some(pin)).expect("crypto");
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("tls13");
    let mut endpoint = quinn::Endpoint::client(loopback(0)).expect("endpoint");
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    endpoint
        .connect(server.addr(), "localhost")
        .expect("connect config")
        .await
}

/// The Kanal close code a connection ended with.
pub async fn close_code(connection: &quinn::Connection) -> Option<CloseCode> {
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            CloseCode::from_value(close.error_code.into_inner())
        }
        _ => None,
    }
}

/// A raw connection that completed Register.
pub async fn raw_session(server: &TestServer, local: &str) -> anyhow::Result<RawSession> {
    raw_session_with(server, local, quinn::TransportConfig::default()).await
}

/// A raw connection with these transport settings that completed Register.
pub async fn raw_session_with(
    server: &TestServer,
    local: &str,
    transport: quinn::TransportConfig,
) -> anyhow::Result<RawSession> {
    let connection = raw_connect_with(server, kanal_proto::ALPN_CLIENT, transport).await?;
    let (mut send, recv) = connection.open_bi().await?;
    let hello = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(pb::Hello {
            version: kanal_proto::PROTOCOL_VERSION,
            availability: pb::Availability::Unspecified as i32,
            client: "raw".into(),
            auth: Some(pb::hello::Auth::Register(pb::Register {
                local: local.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
                invite: String::new(),
            })),
        })),
    };
    write_frame(&mut send, &hello).await?;
    let mut reader = FrameReader::new(recv, limits::MAX_FRAME);
    let welcome: pb::ServerControl = reader
        .next()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Welcome"))?;
    anyhow::ensure!(matches!(
        welcome.kind,
        Some(pb::server_control::Kind::Welcome(_))
    ));
    Ok(RawSession {
        connection,
        control: send,
        _control_recv: reader,
    })
}

/// `kanald --data-dir DATA ARGS…`, with [`PASSWORD`] as `KANALD_PASSWORD`.
fn kanald_command(kanald: &str, data: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(kanald);
    command
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("KANALD_PASSWORD", PASSWORD);
    command
}

/// Runs the `kanald` binary at `kanald` on `data` with `args` to completion
/// (passwords from `KANALD_PASSWORD` are [`PASSWORD`]); fails unless it
/// succeeds.
pub async fn run_kanald(kanald: &str, data: &Path, args: &[&str]) -> Result<()> {
    let status = kanald_command(kanald, data, args).status().await?;
    anyhow::ensure!(status.success(), "kanald {args:?} failed: {status}");
    Ok(())
}

/// Runs the `kanald` binary at `kanald` on `data` with `args` to completion;
/// fails unless it succeeds, and returns what it printed on stdout.
pub async fn kanald_output(kanald: &str, data: &Path, args: &[&str]) -> Result<String> {
    let output = kanald_command(kanald, data, args).output().await?;
    anyhow::ensure!(
        output.status.success(),
        "kanald {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs the `kanald` binary at `kanald` on `data` with `args`, expecting it
/// to fail; returns what it printed on stderr.
pub async fn refused_kanald(kanald: &str, data: &Path, args: &[&str]) -> Result<String> {
    let output = kanald_command(kanald, data, args).output().await?;
    anyhow::ensure!(!output.status.success(), "kanald {args:?} succeeded");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Starts `kanald run` (the binary at `kanald`) on `data`, listening on
/// `listen`; returns the process with its address and certificate
/// fingerprint, read from its first line on stdout. The process is killed
/// when the handle is dropped.
pub async fn spawn_kanald(
    kanald: &str,
    data: &Path,
    listen: SocketAddr,
) -> Result<(tokio::process::Child, SocketAddr, String)> {
    let started = spawn_kanald_federated(kanald, data, listen, loopback(0), None).await?;
    Ok((started.child, started.addr, started.fingerprint))
}

/// A `kanald run` process, and what its start line said.
#[derive(Debug)]
pub struct Kanald {
    /// The process (killed when the handle is dropped).
    pub child: tokio::process::Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The domain it answers for.
    pub domain: String,
    /// Its certificate's fingerprint (what clients pin, and peers trust).
    pub fingerprint: String,
    /// Where other servers connect: its federation endpoint.
    pub federation: SocketAddr,
}

/// Starts `kanald run` (the binary at `kanald`) on `data`, listening on
/// `listen` for clients and on `federation` for other servers (port 0 the
/// first time; the ports it reported to start again on the same ones).
/// Its stderr, the log, is appended to `log` if given. Returns the process
/// with what its first line on stdout said.
pub async fn spawn_kanald_federated(
    kanald: &str,
    data: &Path,
    listen: SocketAddr,
    federation: SocketAddr,
    log: Option<&Path>,
) -> Result<Kanald> {
    use tokio::io::AsyncBufReadExt as _;
    let stderr = match log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .into(),
        None => std::process::Stdio::null(),
    };
    let mut child = tokio::process::Command::new(kanald)
        .arg("--data-dir")
        .arg(data)
        .arg("run")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--device-listen")
        .arg(loopback(0).to_string())
        .arg("--federation-listen")
        .arg(federation.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .context("kanald did not start in time")??
        .context("kanald exited before listening")?;
    // "kanald listening on ADDR domain DOMAIN fingerprint FP federation ADDR"
    let words: Vec<&str> = line.split_whitespace().collect();
    let (Some(addr), Some(domain), Some(fingerprint), Some(federation)) =
        (words.get(3), words.get(5), words.get(7), words.get(9))
    else {
        bail!("unexpected start line: {line}");
    };
    Ok(Kanald {
        addr: addr.parse()?,
        domain: (*domain).to_owned(),
        fingerprint: (*fingerprint).to_owned(),
        federation: federation.parse()?,
        child,
    })
}
