//! What a client needs to know before it connects: where the server is, how
//! to trust it, and who it is.

use crate::error::ClientError;
use crate::fingerprint::Fingerprint;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server as `host:port`, `host`, `[v6]:port` or an IP address; the
    /// port defaults to [`kanal_proto::DEFAULT_PORT`] (7447).
    pub server: String,
    /// The TLS server name (SNI and WebPKI name check); `None` means the host
    /// part of `server`.
    pub server_name: Option<String>,
    /// The SHA-256 of the server's certificate. `None` means the certificate
    /// must chain to a WebPKI root and match `server_name`.
    pub pin: Option<Fingerprint>,
    /// Sent in the Hello for the server's logs; defaults to `kanal-client/<version>`.
    pub client_name: String,
    /// A QUIC endpoint (one UDP socket and its driver) to open connections
    /// on, shared with other clients. `None` (the default) gives the client
    /// an endpoint of its own, bound by [`crate::endpoint_for`].
    pub endpoint: Option<quinn::Endpoint>,
    /// For an agent at a service desk: the availability its connections
    /// start with (`Hello.availability`) until
    /// [`crate::Client::set_availability`] changes it. `None`: online.
    pub availability: Option<kanal_proto::pb::Availability>,
}

impl PartialEq for ClientConfig {
    /// Equal settings; shared endpoints are the same when they are bound to
    /// the same local address (one socket per address on a host).
    fn eq(&self, other: &Self) -> bool {
        let same_endpoint = match (&self.endpoint, &other.endpoint) {
            (None, None) => true,
            (Some(a), Some(b)) => match (a.local_addr(), b.local_addr()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
            _ => false,
        };
        self.server == other.server
            && self.server_name == other.server_name
            && self.pin == other.pin
            && self.client_name == other.client_name
            && self.availability == other.availability
            && same_endpoint
    }
}

impl Eq for ClientConfig {}

impl ClientConfig {
    /// A configuration for `server` with no pin, the host as server name and
    /// the default client name.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            server_name: None,
            pin: None,
            client_name: concat!("kanal-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            endpoint: None,
            availability: None,
        }
    }

    /// The same configuration, pinned to `pin`.
    pub fn pin(mut self, pin: Fingerprint) -> Self {
        self.pin = Some(pin);
        self
    }

    /// The same configuration with an explicit TLS server name.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The same configuration, starting as `availability` at the agent's
    /// desks (see [`ClientConfig::availability`]).
    pub fn availability(mut self, availability: kanal_proto::pb::Availability) -> Self {
        self.availability = Some(availability);
        self
    }

    /// The same configuration with another client name in the Hello.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// The same configuration, opening its connections on `endpoint`, which
    /// other clients may share. Thousands of clients in one process (a load
    /// generator, a bridge) then need a handful of UDP sockets instead of one
    /// each. The endpoint must be able to reach the server (same address
    /// family; [`crate::endpoint_for`] binds a suitable one). Closing such a
    /// client closes its connection but leaves the endpoint open.
    pub fn endpoint(mut self, endpoint: quinn::Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Splits `server` into host and port.
    pub(crate) fn host_port(&self) -> Result<(String, u16), ClientError> {
        split_host_port(&self.server)
    }

    /// The TLS server name to present.
    pub(crate) fn tls_name(&self) -> Result<String, ClientError> {
        match &self.server_name {
            Some(name) if !name.is_empty() => Ok(name.clone()),
            _ => Ok(self.host_port()?.0),
        }
    }
}

/// How a client proves who it is in its Hello.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Create the account `local@<server domain>` and log in.
    Register {
        /// The local part of the new address.
        local: String,
        /// At least [`kanal_proto::limits::MIN_PASSWORD`] characters.
        password: String,
        /// Shown to other parties; may be empty.
        display_name: String,
        /// An invite code from the server's operator: needed when the
        /// server registers by invitation only, empty otherwise.
        invite: String,
    },
    /// Log in to an existing account.
    Password {
        /// The full address, `local@domain`.
        address: String,
        /// The account's password.
        password: String,
    },
    /// Continue an earlier session with the token from its Welcome.
    Resume {
        /// The resume token.
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Register {
                local,
                display_name,
                ..
            } => f
                .debug_struct("Register")
                .field("local", local)
                .field("display_name", display_name)
                .finish_non_exhaustive(),
            Self::Password { address, .. } => f
                .debug_struct("Password")
                .field("address", address)
                .finish_non_exhaustive(),
            Self::Resume { .. } => f.debug_struct("Resume").finish_non_exhaustive(),
        }
    }
}

impl Credentials {
    /// The Hello's auth field.
    pub(crate) fn to_auth(&self) -> kanal_proto::pb::hello::Auth {
        use kanal_proto::pb;
        match self {
            Self::Register {
                local,
                password,
                display_name,
                invite,
            } => pb::hello::Auth::Register(pb::Register {
                local: local.clone(),
                password: password.clone(),
                display_name: display_name.clone(),
                invite: invite.clone(),
            }),
            Self::Password { address, password } => pb::hello::Auth::Password(pb::PasswordLogin {
                address: address.clone(),
                password: password.clone(),
            }),
            Self::Resume { token } => pb::hello::Auth::Resume(pb::Resume {
                token: token.clone(),
            }),
        }
    }
}

/// `host:port`, `host`, `[v6]:port`, `[v6]` or a bare IPv6 address.
fn split_host_port(server: &str) -> Result<(String, u16), ClientError> {
    let server = server.trim();
    let bad = |why: &str| ClientError::Config(format!("server `{server}`: {why}"));
    if server.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing `]` after an IPv6 address"))?;
        let port = match after {
            "" => kanal_proto::DEFAULT_PORT,
            _ => parse_port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected `:port` after `]`"))?,
            )
            .ok_or_else(|| bad("invalid port"))?,
        };
        return Ok((host.to_owned(), port));
    }
    match server.matches(':').count() {
        0 => Ok((server.to_owned(), kanal_proto::DEFAULT_PORT)),
        1 => {
            let (host, port) = server.split_once(':').ok_or_else(|| bad("no port"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            let port = parse_port(port).ok_or_else(|| bad("invalid port"))?;
            Ok((host.to_owned(), port))
        }
        // Several colons and no brackets: a bare IPv6 address.
        _ => Ok((server.to_owned(), kanal_proto::DEFAULT_PORT)),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, u16) {
        split_host_port(s).expect("valid")
    }

    #[test]
    fn splits_host_and_port_with_default() {
        assert_eq!(split("localhost:9000"), ("localhost".into(), 9000));
        assert_eq!(split("acme.example"), ("acme.example".into(), 7447));
        assert_eq!(split("127.0.0.1:7447"), ("127.0.0.1".into(), 7447));
        assert_eq!(split("[::1]:8000"), ("::1".into(), 8000));
        assert_eq!(split("[::1]"), ("::1".into(), 7447));
        assert_eq!(split("::1"), ("::1".into(), 7447));
    }

    #[test]
    fn refuses_malformed_servers() {
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            ":7447",
            "[::1",
            "[::1]x",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn server_name_defaults_to_host() {
        let config = ClientConfig::new("chat.acme.example:7000");
        assert_eq!(config.tls_name().expect("name"), "chat.acme.example");
        let config = config.server_name("localhost");
        assert_eq!(config.tls_name().expect("name"), "localhost");
    }

    #[tokio::test]
    async fn endpoint_is_optional_and_compared_by_socket() {
        let plain = ClientConfig::new("127.0.0.1:7447");
        assert!(plain.endpoint.is_none());
        assert_eq!(plain, plain.clone());
        let bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let endpoint = quinn::Endpoint::client(bind).expect("bind");
        let shared = plain.clone().endpoint(endpoint.clone());
        assert_eq!(shared, plain.clone().endpoint(endpoint));
        assert_ne!(shared, plain);
        let other = quinn::Endpoint::client(bind).expect("bind");
        assert_ne!(shared, plain.endpoint(other));
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials::Password {
            address: "alice@localhost".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter22"));
        let creds = Credentials::Resume {
            token: "secret-token".into(),
        };
        assert!(!format!("{creds:?}").contains("secret"));
    }
}
