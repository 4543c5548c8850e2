//! The Kanal client library: the SDK apps embed to talk to a Kanal server.
//!
//! A [`Client`] opens a QUIC connection (ALPN `kanal/1`), says Hello with
//! [`Credentials`], and then offers typed requests (create a conversation,
//! send, read history, …), the account's ordered event stream
//! ([`Client::subscribe`] → [`Events`]) and typing signals. When the
//! connection is lost it resumes the session in the background and the event
//! stream continues where it stopped, without duplicates or gaps.
//!
//! Each client opens its own UDP socket by default; many clients in one
//! process (a load generator, a bridge) can share a few with
//! [`ClientConfig::endpoint`].
//!
//! The features `cli` (the `kanal` binary) and `bench` (`kanal-bench`) are on
//! by default and bring the tools' own dependencies (clap, indicatif,
//! hdrhistogram, …); the library needs neither, so an app embedding it can
//! depend on `kanal-client` with `default-features = false`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kanal_client::ClientError> {
//! use kanal_client::{Client, ClientConfig, ClientEvent, Credentials};
//!
//! let pin = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! let config = ClientConfig::new("localhost:7447").pin(pin);
//! let login = Credentials::Password {
//!     address: "alice@localhost".into(),
//!     password: "correct horse".into(),
//! };
//! let client = Client::connect(config, login).await?;
//! let conversation = client.create_conversation(&["bob@localhost"], "hi").await?;
//! client.send_text(&conversation.id, "hello").await?;
//! let mut events = client.subscribe(0).await?;
//! while let Some(event) = events.next().await {
//!     if let ClientEvent::SyncComplete { .. } = event {
//!         break;
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

pub mod canned;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod config;
mod connection;
mod desk;
mod error;
mod events;
mod fingerprint;
mod pipeline;
mod reconnect;
mod request;
mod session;
pub mod structured;
pub mod tls;

pub use client::Client;
pub use config::{ClientConfig, Credentials};
pub use connection::endpoint_for;
pub use desk::TicketFilter;
pub use error::ClientError;
pub use events::{ClientEvent, Events};
pub use fingerprint::{Fingerprint, FingerprintError};
pub use kanal_proto::pb;
pub use pipeline::Pipeline;
