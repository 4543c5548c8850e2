//! Handshakes that never finish cannot lock anyone out: past 256 under way,
//! new clients must prove their address with a QUIC Retry (a stateless
//! reply), and a real client still logs in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, ensure};
use kanal_tests::*;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Handshakes the flood leaves hanging.
const FLOOD: usize = 300;

/// A UDP relay toward `server` that forwards what clients send and drops
/// every reply, so no handshake through it ever finishes. It counts the
/// Retry packets among the replies.
struct Blackhole {
    addr: SocketAddr,
    retries: Arc<AtomicUsize>,
    retried: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    async fn start(server: SocketAddr) -> Result<Self> {
        let front = Arc::new(UdpSocket::bind(loopback(0)).await?);
        let addr = front.local_addr()?;
        let retries = Arc::new(AtomicUsize::new(0));
        let retried = Arc::new(Notify::new());
        let (count, notify) = (retries.clone(), retried.clone());
        let task = tokio::spawn(async move {
            let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            while let Ok((len, from)) = front.recv_from(&mut buf).await {
                let socket = match upstream.get(&from) {
                    Some(socket) => socket.clone(),
                    None => {
                        let Ok(socket) = UdpSocket::bind(loopback(0)).await else {
                            continue;
                        };
                        if socket.connect(server).await.is_err() {
                            continue;
                        }
                        let socket = Arc::new(socket);
                        let (replies, count, notify) =
                            (socket.clone(), count.clone(), notify.clone());
                        tokio::spawn(async move {
                            let mut reply = vec![0u8; 2048];
                            while let Ok(n) = replies.recv(&mut reply).await {
                                // QUIC v1 long header, type Retry: 0b1111_xxxx.
                                if n > 0 && reply[0] & 0xf0 == 0xf0 {
                                    count.fetch_add(1, Ordering::AcqRel);
                                    notify.notify_waiters();
                                }
                            }
                        });
                        upstream.insert(from, socket.clone());
                        socket
                    }
                };
                let _ = socket.send(&buf[..len]).await;
            }
        });
        Ok(Self {
            addr,
            retries,
            retried,
            task,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_handshakes_gets_retries_and_locks_no_one_out() -> Result<()> {
    let server = TestServer::start().await?;
    let blackhole = Blackhole::start(server.addr()).await?;
    let retried = blackhole.retried.notified();
    tokio::pin!(retried);
    retried.as_mut().enable();

    // Each flooding client starts a handshake through the blackhole and
    // never hears back.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let endpoint = quinn::Endpoint::client(loopback(0))?;
        let config = config_for(blackhole.addr, server.server.fingerprint()).endpoint(endpoint);
        flood.push(tokio::spawn(kanal_client::Client::connect(
            config,
            kanal_client::Credentials::Resume { token: "x".into() },
        )));
    }
    tokio::time::timeout(PATIENCE, retried)
        .await
        .context("no Retry was sent while handshakes piled up")?;
    ensure!(blackhole.retries.load(Ordering::Acquire) >= 1);

    // A real client, meanwhile, proves its address and logs in.
    let alice = server.register("alice").await?;
    let conversation = alice
        .create_conversation(&["support@localhost"], "")
        .await?;
    alice
        .send_text(&conversation.id, "through the flood")
        .await?;

    for client in flood {
        client.abort();
    }
    blackhole.task.abort();
    assert_memory_bounded("handshake flood")?;
    Ok(())
}
