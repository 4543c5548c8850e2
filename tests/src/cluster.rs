//! Several nodes on one PostgreSQL database and one NATS, in this process:
//! each node a whole server with a data directory of its own, all sharing
//! one certificate (as the nodes of one domain do), so a client pinned to
//! it may connect to any node.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kanal_server::config::Config;
use kanal_server::datadir;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::{FreshDatabase, PATIENCE, TestServer, loopback, rand_u64};

/// Environment variable naming the NATS server the cluster tests use.
pub const NATS_ENV: &str = "KANAL_TEST_NATS";

/// The NATS server when [`NATS_ENV`] is not set.
pub const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// The PostgreSQL server when `KANAL_E2E_POSTGRES` is not set: cluster
/// tests always run on PostgreSQL.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Nodes on one database.
#[derive(Debug)]
pub struct TestCluster {
    /// The nodes, in the order they started.
    pub nodes: Vec<TestServer>,
    /// The shared database.
    pub database: Arc<FreshDatabase>,
    /// The NATS server they use.
    pub nats: String,
    /// Their NATS subjects' prefix: this cluster's own.
    pub subject_prefix: String,
}

impl TestCluster {
    /// Starts `count` nodes on a fresh database, using the NATS server of
    /// [`NATS_ENV`] (default [`DEFAULT_NATS`]) under subjects of their own.
    pub async fn start(count: usize) -> Result<Self> {
        let nats = std::env::var(NATS_ENV).unwrap_or_else(|_| DEFAULT_NATS.to_owned());
        Self::start_on(count, &nats).await
    }

    /// Starts `count` nodes on a fresh database and the NATS server at `nats`.
    pub async fn start_on(count: usize, nats: &str) -> Result<Self> {
        let server = FreshDatabase::wanted()?.unwrap_or_else(|| DEFAULT_POSTGRES.to_owned());
        let database = Arc::new(FreshDatabase::create(&server).await?);
        let subject_prefix = format!("kanal.test{:016x}", rand_u64());
        let mut cluster = Self {
            nodes: Vec::new(),
            database,
            nats: nats.to_owned(),
            subject_prefix,
        };
        for _ in 0..count {
            cluster.add_node().await?;
        }
        Ok(cluster)
    }

    /// Starts one more node, on 127.0.0.1 port 0.
    pub async fn add_node(&mut self) -> Result<&TestServer> {
        let nats = self.nats.clone();
        self.add_node_via(&nats).await
    }

    /// Starts one more node that reaches NATS at `nats` (the cluster's
    /// server, through a [`NatsLink`] say).
    pub async fn add_node_via(&mut self, nats: &str) -> Result<&TestServer> {
        let dir = Arc::new(tempfile::tempdir()?);
        let config = Config {
            database: self.database.url.clone(),
            nats: nats.to_owned(),
            nats_subject_prefix: self.subject_prefix.clone(),
            ..Config::default()
        };
        if let Some(first) = self.nodes.first() {
            for file in [&config.tls_cert, &config.tls_key] {
                std::fs::copy(first.path().join(file), dir.path().join(file))?;
            }
        }
        datadir::init(dir.path(), &config).await?;
        let node = TestServer::start_in(dir, Some(self.database.clone()), loopback(0)).await?;
        self.nodes.push(node);
        self.nodes.last().context("just added")
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &TestServer {
        &self.nodes[index]
    }

    /// Waits until the slots are spread over the nodes: every slot leased,
    /// each node holding some and none more than its fair share, and every
    /// node knowing who holds what. Returns
    /// how many each node holds, in the order of `nodes`' reports.
    pub async fn until_slots_spread(&self) -> Result<Vec<usize>> {
        let store = self.node(0).server.store();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let now = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis(),
            )?;
            let slots = store.slots(now).await?;
            let nodes = store.nodes().await?;
            let held: Vec<usize> = nodes
                .iter()
                .map(|n| slots.iter().filter(|s| s.owner == Some(n.id)).count())
                .collect();
            let fair = slots.len().div_ceil(self.nodes.len().max(1));
            let stored: Vec<Option<i64>> = slots.iter().map(|s| s.owner).collect();
            if held.len() == self.nodes.len()
                && held.iter().sum::<usize>() == slots.len()
                && held.iter().all(|&n| (1..=fair).contains(&n))
                && self
                    .nodes
                    .iter()
                    .all(|n| n.server.slot_owners().as_ref() == Some(&stored))
            {
                return Ok(held);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "slots never spread: {held:?} of {}",
                slots.len()
            );
            // Leases are renewed every second: look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Batches committed and batches applied again, over every node.
    pub fn ordering(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(b, c), node| {
            let (batches, conflicts) = node.server.node().ordering();
            (b + batches, c + conflicts)
        })
    }
}

/// A NATS server of one test's own (for tests that stop and start it),
/// killed when dropped.
#[derive(Debug)]
pub struct PrivateNats {
    child: tokio::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl PrivateNats {
    /// Starts `nats-server` on 127.0.0.1, on a port it picks.
    pub async fn start() -> Result<Self> {
        Self::start_on(None).await
    }

    /// Starts `nats-server` on 127.0.0.1 at `port` (or one it picks), and
    /// waits until it listens.
    pub async fn start_on(port: Option<u16>) -> Result<Self> {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let program = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("nats-server");
        let mut child = tokio::process::Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server (Debian's package nats-server)")?;
        let stderr = child.stderr.take().context("nats-server's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    return Ok(addr.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("nats-server ended before it listened")
        })
        .await
        .context("nats-server did not listen in time")??;
        // Keep draining its log, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills it and waits until it is gone.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A TCP forwarder between a node and its NATS server that a test can cut,
/// freeze and mend: a real partition of that node from NATS (its
/// connections drop, new ones are refused), or a stall (its connections
/// stay open and carry nothing), while everything else still reaches both.
#[derive(Debug)]
pub struct NatsLink {
    /// Where the node connects.
    pub addr: SocketAddr,
    flow: tokio::sync::watch::Sender<Flow>,
    held: tokio::sync::watch::Sender<usize>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`NatsLink`] does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    /// Bytes are read and held, not forwarded, until the link opens again.
    Frozen,
    Cut,
}

impl NatsLink {
    /// Forwards connections on a port of 127.0.0.1 to `upstream`.
    pub async fn to(upstream: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(loopback(0)).await?;
        let addr = listener.local_addr()?;
        let (flow, watch) = tokio::sync::watch::channel(Flow::Open);
        let (held, _) = tokio::sync::watch::channel(0);
        let counted = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *watch.borrow() == Flow::Cut {
                    continue; // cut: dropped at once
                }
                let mut cut = watch.clone();
                let (watch, counted) = (watch.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_node, to_node) = inbound.into_split();
                    let (from_nats, to_nats) = outbound.into_split();
                    tokio::select! {
                        () = pump(from_node, to_nats, watch.clone(), Some(counted)) => {}
                        () = pump(from_nats, to_node, watch, None) => {}
                        _ = cut.wait_for(|flow| *flow == Flow::Cut) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            flow,
            held,
            task,
        })
    }

    /// Its URL, for the node's `nats` key.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Drops every connection through it and refuses new ones.
    pub fn cut(&self) {
        self.flow.send_replace(Flow::Cut);
    }

    /// Keeps its connections open but forwards nothing more, so the node
    /// believes it is connected while nothing it sends arrives.
    pub fn freeze(&self) {
        self.flow.send_replace(Flow::Frozen);
    }

    /// Waits until the node sent something that a frozen link holds.
    pub async fn until_holding(&self) -> Result<()> {
        let mut held = self.held.subscribe();
        tokio::time::timeout(PATIENCE, held.wait_for(|&bytes| bytes > 0))
            .await
            .context("the node sent nothing through the frozen link")??;
        Ok(())
    }

    /// Lets connections through again (what a frozen link held first).
    pub fn mend(&self) {
        self.held.send_replace(0);
        self.flow.send_replace(Flow::Open);
    }
}

/// Copies `from` to `to` until either ends; while the link is frozen, what
/// is read waits (counted in `held`, for the node's side).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flow: tokio::sync::watch::Receiver<Flow>,
    held: Option<tokio::sync::watch::Sender<usize>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if *flow.borrow_and_update() == Flow::Frozen {
            if let Some(held) = &held {
                held.send_modify(|bytes| *bytes += read);
            }
            if flow.wait_for(|flow| *flow != Flow::Frozen).await.is_err() {
                return;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for NatsLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
