//! A DNS server of the test's own on 127.0.0.1 (UDP, port 0), answering
//! from records the test sets as it goes: what servers configured with
//! `federation_dns` find their peers by. Messages are read and written
//! with hickory-proto.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Seconds a record may be cached: none, so a changed record is seen at
/// once (a test that changes one need not wait out a cache).
const TTL: u32 = 0;

/// Records by lowercase fully qualified name, then type.
type Zone = HashMap<String, HashMap<RecordType, Vec<Record>>>;

/// A running test DNS server; stops when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    /// Starts answering on 127.0.0.1, port 0, with no record yet.
    pub async fn start() -> Result<Self> {
        let socket = tokio::net::UdpSocket::bind(crate::loopback(0)).await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone::new()));
        let task = tokio::spawn(serve(socket, zone.clone()));
        Ok(Self { addr, zone, task })
    }

    /// Where it answers: the value for `federation_dns`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes a server of `domain`: `_kanal._udp.DOMAIN` SRV toward
    /// `host` at `addr`'s port, and `host`'s A record at `addr`'s address.
    pub fn publish(&self, domain: &str, host: &str, addr: SocketAddr) -> Result<()> {
        let std::net::IpAddr::V4(ip) = addr.ip() else {
            anyhow::bail!("the test DNS server publishes IPv4 addresses only");
        };
        self.set_srv(domain, 10, 10, addr.port(), host)?;
        self.set_a(host, ip)
    }

    /// Sets `_kanal._udp.DOMAIN` SRV to this one record.
    pub fn set_srv(
        &self,
        domain: &str,
        priority: u16,
        weight: u16,
        port: u16,
        target: &str,
    ) -> Result<()> {
        let name = fqdn(&format!("_kanal._udp.{domain}"))?;
        let rdata = RData::SRV(SRV::new(priority, weight, port, fqdn(target)?));
        self.set(name, RecordType::SRV, rdata);
        Ok(())
    }

    /// Sets `host`'s A record to `ip`.
    pub fn set_a(&self, host: &str, ip: Ipv4Addr) -> Result<()> {
        self.set(fqdn(host)?, RecordType::A, RData::A(A(ip)));
        Ok(())
    }

    fn set(&self, name: Name, kind: RecordType, rdata: RData) {
        let record = Record::from_rdata(name.clone(), TTL, rdata);
        self.zone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key(&name))
            .or_default()
            .insert(kind, vec![record]);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fqdn(name: &str) -> Result<Name> {
    let mut name = Name::from_ascii(name)?;
    name.set_fqdn(true);
    Ok(name)
}

fn key(name: &Name) -> String {
    name.to_ascii().to_ascii_lowercase()
}

/// Answers every query from `zone`: its records of that name and type;
/// NXDOMAIN for a name it has nothing of.
async fn serve(socket: tokio::net::UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.add_queries(request.queries.clone());
        if let Some(edns) = &request.edns {
            response.set_edns(edns.clone());
        }
        let mut known = true;
        {
            let zone = zone.lock().unwrap_or_else(PoisonError::into_inner);
            for query in &request.queries {
                match zone.get(&key(query.name())) {
                    Some(records) => {
                        if let Some(answers) = records.get(&query.query_type()) {
                            response.add_answers(answers.iter().cloned());
                        }
                    }
                    None => known = false,
                }
            }
        }
        if !known {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
