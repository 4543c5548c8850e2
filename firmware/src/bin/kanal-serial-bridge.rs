//! `kanal-serial-bridge`: forwards a device's serial line (SLIP-framed
//! datagrams) to a Kanal gateway's UDP port and back.
//!
//! ```text
//! kanal-serial-bridge --gateway 127.0.0.1:7448 --listen 127.0.0.1:4555
//! qemu-system-arm -M lm3s6965evb -serial tcp:127.0.0.1:4555 ...
//!
//! kanal-serial-bridge --gateway 127.0.0.1:7448 --connect 127.0.0.1:4555
//! kanal-serial-bridge --gateway 127.0.0.1:7448 --tty /dev/ttyUSB0
//! ```
//!
//! `--listen` serves each accepted connection as one line (one device),
//! until stopped; `--connect` and `--tty` bridge one line until it closes.
//! A tty's speed and raw mode are set beforehand (`stty -F /dev/ttyUSB0
//! 115200 raw -echo`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

use kanal_firmware::adapters::bridge;

const USAGE: &str =
    "usage: kanal-serial-bridge --gateway ADDR (--listen ADDR | --connect ADDR | --tty PATH)";

enum Line {
    Listen(SocketAddr),
    Connect(SocketAddr),
    Tty(String),
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(|(gateway, line)| serve(gateway, line)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kanal-serial-bridge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, Line), String> {
    let mut gateway = None;
    let mut line = None;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let addr = |value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("{flag} {value}: {e} (an address such as 127.0.0.1:4555)"))
        };
        match flag.as_str() {
            "--gateway" => gateway = Some(addr(&value)?),
            "--listen" => line = Some(Line::Listen(addr(&value)?)),
            "--connect" => line = Some(Line::Connect(addr(&value)?)),
            "--tty" => line = Some(Line::Tty(value)),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let gateway = gateway.ok_or_else(|| format!("--gateway is required\n{USAGE}"))?;
    let line =
        line.ok_or_else(|| format!("one of --listen, --connect, --tty is required\n{USAGE}"))?;
    Ok((gateway, line))
}

fn serve(gateway: SocketAddr, line: Line) -> Result<(), String> {
    match line {
        Line::Listen(addr) => {
            let listener = TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            eprintln!("kanal-serial-bridge: lines on {local}, gateway {gateway}");
            for stream in listener.incoming() {
                let stream = stream.map_err(|e| format!("accept on {local}: {e}"))?;
                std::thread::spawn(move || {
                    let peer = stream
                        .peer_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string());
                    report(&peer, tcp(stream, gateway));
                });
            }
            Ok(())
        }
        Line::Connect(addr) => {
            let stream = TcpStream::connect(addr).map_err(|e| format!("--connect {addr}: {e}"))?;
            report(&addr.to_string(), tcp(stream, gateway));
            Ok(())
        }
        Line::Tty(path) => {
            let open = || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
            };
            let line_in = open().map_err(|e| format!("--tty {path}: {e}"))?;
            let line_out = line_in
                .try_clone()
                .map_err(|e| format!("--tty {path}: {e}"))?;
            report(&path, bridge::run(line_in, line_out, gateway));
            Ok(())
        }
    }
}

fn tcp(stream: TcpStream, gateway: SocketAddr) -> std::io::Result<bridge::BridgeReport> {
    stream.set_nodelay(true)?;
    let line_out = stream.try_clone()?;
    bridge::run(stream, line_out, gateway)
}

fn report(line: &str, result: std::io::Result<bridge::BridgeReport>) {
    match result {
        Ok(r) => eprintln!(
            "kanal-serial-bridge: {line} closed: {} datagrams up, {} down, {} broken frames dropped",
            r.up, r.down, r.dropped
        ),
        Err(e) => eprintln!("kanal-serial-bridge: {line}: {e}"),
    }
}
