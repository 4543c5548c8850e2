//! The `kanald` command line: run and administer a Kanal server. Lives in
//! the library so end-to-end tests can run the very same code as a process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::links::admin::{self, AdminRequest, AdminResponse, DeviceSpecInfo, PartyInfo, PeerInfo};
use crate::ops::cluster;
use crate::ops::config::{Config, Registration};
use crate::ops::datadir;
use crate::ops::server::{Offline, Server, StartError};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

/// The Kanal server.
#[derive(Debug, Parser)]
#[command(name = "kanald", version, about = "The Kanal messaging server")]
struct Cli {
    /// Data directory: kanald.toml, certificate, database.
    #[arg(
        long,
        global = true,
        env = "KANALD_DATA_DIR",
        default_value = "kanal-data"
    )]
    data_dir: PathBuf,
    /// What to do; without a command, `run`.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (initialising the data directory first if it is empty).
    Run(RunArgs),
    /// Create the data directory: configuration, self-signed certificate,
    /// database and the `support` inbox.
    Init {
        /// The domain this server answers for.
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// The database: a SQLite file, relative to the data directory, or
        /// a `postgres://` URL.
        #[arg(long, default_value = "kanal.db")]
        database: String,
    },
    /// Print the certificate's SHA-256 fingerprint (what clients pin).
    Fingerprint,
    /// Manage customer accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage agents (people who answer inboxes).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage bots (programs, e.g. an inbox's first responder).
    #[command(subcommand)]
    Bot(BotCommand),
    /// Manage inboxes (service addresses like support@DOMAIN).
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// List every party.
    Parties,
    /// Manage invite codes (for `registration = "invite"`).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Manage devices (products that speak the device profile).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Write a consistent copy of the database to a new file, while the
    /// server runs (see the README for restoring it).
    Backup {
        /// The file to write; it must not exist.
        to: PathBuf,
    },
    /// Several nodes on one PostgreSQL database.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage peers: the servers this one federates with (FEDERATION.md).
    #[command(subcommand)]
    Peer(PeerCommand),
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Trust a server for its domain, and say where it listens. Its
    /// operator gives the fingerprint (`kanald fingerprint` there).
    Add {
        /// The peer's domain, e.g. `acme.example`.
        domain: String,
        /// Where its federation endpoint listens, `HOST:PORT` (its
        /// `federation_listen`; port 7449 by default). Omitted: found by
        /// DNS SRV (`_kanal._udp.DOMAIN`).
        #[arg(long)]
        address: Option<String>,
        /// The SHA-256 fingerprint of its certificate. Omitted: trusted by
        /// WebPKI (needs `federation_webpki = true`).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// List the peers, with where delivery to each stands.
    List,
    /// Show one peer: queue, oldest undelivered, last error, next retry.
    Show {
        /// The peer's domain.
        domain: String,
    },
    /// Stop trusting a server (what is queued for it stays, and is
    /// delivered if it is added again).
    Remove {
        /// The peer's domain.
        domain: String,
    },
    /// What was given up toward a peer: refused by it (dead letters), or
    /// undelivered at the horizon; each sender was told.
    Undelivered {
        /// The peer's domain.
        domain: String,
    },
    /// Deliver again, in order, what was given up toward a peer (once its
    /// cause is fixed): each as a new transaction, with a new horizon.
    Replay {
        /// The peer's domain.
        domain: String,
        /// Only this one (its seq in `kanald peer undelivered`).
        #[arg(long)]
        seq: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The nodes on the database, as each last reported itself.
    Status {
        /// The database (default: the data directory's `database`).
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// Overrides `domain`.
    #[arg(long)]
    domain: Option<String>,
    /// Overrides `listen` (UDP address).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `registration`.
    #[arg(long, value_enum)]
    registration: Option<Registration>,
    /// Overrides `database` (a SQLite file, relative to the data
    /// directory, or a `postgres://` URL).
    #[arg(long)]
    database: Option<String>,
    /// Overrides `tls_cert`.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Overrides `tls_key`.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Overrides `max_connections`.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Overrides `idle_timeout_secs`.
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Overrides `commit_window_ms` (0: commit at once).
    #[arg(long)]
    commit_window_ms: Option<u32>,
    /// Overrides `registrations_per_hour_per_source` (0: unlimited).
    #[arg(long)]
    registrations_per_hour_per_source: Option<u32>,
    /// Overrides `registrations_per_hour` (0: unlimited).
    #[arg(long)]
    registrations_per_hour: Option<u32>,
    /// Overrides `sends_per_second_per_party` (0: unlimited).
    #[arg(long)]
    sends_per_second_per_party: Option<u32>,
    /// Overrides `send_burst_per_party`.
    #[arg(long)]
    send_burst_per_party: Option<u32>,
    /// Overrides `max_connections_per_source` (0: unlimited).
    #[arg(long)]
    max_connections_per_source: Option<u32>,
    /// Overrides `max_connections_per_account` (0: unlimited).
    #[arg(long)]
    max_connections_per_account: Option<u32>,
    /// Overrides `nats` (joins the other nodes on the same PostgreSQL
    /// database through this NATS server).
    #[arg(long)]
    nats: Option<String>,
    /// Overrides `device_listen` (UDP address of the device gateway).
    #[arg(long)]
    device_listen: Option<SocketAddr>,
    /// Overrides `federation_listen` (UDP address other servers connect to).
    #[arg(long)]
    federation_listen: Option<SocketAddr>,
    /// Overrides `device_requests_per_minute` (0: unlimited).
    #[arg(long)]
    device_requests_per_minute: Option<u32>,
    /// Overrides `device_request_burst`.
    #[arg(long)]
    device_request_burst: Option<u32>,
    /// Overrides `device_mail_expiry_hours`.
    #[arg(long)]
    device_mail_expiry_hours: Option<u32>,
    /// Overrides `device_cookie_threshold`.
    #[arg(long)]
    device_cookie_threshold: Option<u32>,
    /// Overrides `nats_subject_prefix`.
    #[arg(long)]
    nats_subject_prefix: Option<String>,
    /// Overrides `federation_horizon_hours`.
    #[arg(long)]
    federation_horizon_hours: Option<f64>,
    /// Overrides `federation_transactions_per_second_per_peer` (0: no
    /// limit).
    #[arg(long)]
    federation_transactions_per_second_per_peer: Option<u32>,
    /// Overrides `federation_webpki` (`true` or `false`).
    #[arg(long)]
    federation_webpki: Option<bool>,
    /// Overrides `federation_ca_file`.
    #[arg(long)]
    federation_ca_file: Option<PathBuf>,
    /// Overrides `federation_public_roots` (`true` or `false`).
    #[arg(long)]
    federation_public_roots: Option<bool>,
    /// Overrides `federation_dns` (`IP` or `IP:PORT`).
    #[arg(long)]
    federation_dns: Option<String>,
    /// Overrides `federation_idle_peer_minutes`.
    #[arg(long)]
    federation_idle_peer_minutes: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user account.
    Add(NewAccount),
}

#[derive(Debug, Subcommand)]
enum BotCommand {
    /// Create a bot account; it logs in like any client, with its password.
    Add(NewAccount),
}

/// `kanald user add` and `kanald bot add`.
async fn add_account(data_dir: &std::path::Path, new: NewAccount, bot: bool) -> Result<()> {
    let NewAccount {
        local,
        password,
        display_name,
    } = new;
    let request = if bot {
        AdminRequest::AddBot {
            local,
            password,
            display_name,
        }
    } else {
        AdminRequest::AddUser {
            local,
            password,
            display_name,
        }
    };
    let party = expect_party(administer(data_dir, request).await?)?;
    let what = if bot { "bot" } else { "user" };
    println!("created {what} {}", party.address);
    Ok(())
}

/// A new account's address, password and name.
#[derive(Debug, clap::Args)]
struct NewAccount {
    /// Local part of the address.
    local: String,
    /// Password (at least 8 characters).
    #[arg(long, env = "KANALD_PASSWORD")]
    password: String,
    /// Display name.
    #[arg(long, default_value = "")]
    display_name: String,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Create an agent (if new) and make it answer an inbox.
    Add {
        /// Local part of the agent's address.
        local: String,
        /// Local part of the inbox it answers for.
        #[arg(long, default_value = datadir::DEFAULT_INBOX)]
        inbox: String,
        /// Password for a new agent.
        #[arg(long, env = "KANALD_PASSWORD")]
        password: Option<String>,
        /// Display name.
        #[arg(long, default_value = "")]
        display_name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Generate a device's static key pair, for provisioning: the secret
    /// goes into the device, the public key into `kanald device add`.
    Keygen,
    /// Print the gateway's static public key, which devices are built with.
    ServerKey,
    /// Register a device, or (with --csv) every device of a CSV file with
    /// the header `serial,model,public_key,inbox,owner` (owner may be empty).
    Add {
        /// The maker's serial number (its address is its lowercase form).
        #[arg(required_unless_present = "csv")]
        serial: Option<String>,
        /// The model name.
        #[arg(long, required_unless_present = "csv")]
        model: Option<String>,
        /// Its static public key, 64 hex digits.
        #[arg(long, required_unless_present = "csv")]
        key: Option<String>,
        /// Local part of the inbox its conversations land in.
        #[arg(long, default_value = "support")]
        inbox: String,
        /// Local part of its owner's account.
        #[arg(long)]
        owner: Option<String>,
        /// Register every device of this CSV file instead.
        #[arg(long, conflicts_with_all = ["serial", "model", "key", "owner"])]
        csv: Option<PathBuf>,
    },
    /// List the registered devices.
    List,
    /// Revoke a device: its handshakes are refused from now on.
    Revoke {
        /// Its serial.
        serial: String,
    },
    /// Link a device to its owner's account (or, without --owner, unlink
    /// it): the conversations it opens from then include the owner.
    Link {
        /// Its serial.
        serial: String,
        /// Local part of the owner's account.
        #[arg(long)]
        owner: Option<String>,
    },
}

/// One row of a device CSV file.
#[derive(Debug, serde::Deserialize)]
struct DeviceRow {
    serial: String,
    model: String,
    public_key: String,
    inbox: String,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Issue an invite code; it is printed once, and only its hash is kept.
    Add {
        /// Registrations it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Days it works (forever if not given).
        #[arg(long)]
        days: Option<u32>,
        /// Who it is for (shown by `kanald invite list`).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List the invites that still work.
    List,
    /// Revoke an invite by its id.
    Revoke {
        /// The id `kanald invite list` shows.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; the desk's options are many"
)]
enum InboxCommand {
    /// Create an inbox.
    Add {
        /// Local part of the inbox address.
        local: String,
        /// Display name.
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Set up or change an inbox's service desk: its conversations get
    /// tickets, and are routed to its online agents.
    Desk {
        /// Local part of the inbox address.
        local: String,
        /// manual, round-robin or balanced (fewest open conversations).
        #[arg(long, default_value = "round-robin")]
        routing: String,
        /// Most open conversations an agent holds at once.
        #[arg(long)]
        capacity: Option<u32>,
        /// Minutes an assignee may leave a waiting customer unanswered
        /// before the conversation goes back to the queue.
        #[arg(long)]
        answer_timeout_mins: Option<i64>,
        /// Seconds an agent whose last connection ended keeps its open
        /// conversations before they go back to the queue (0: at once).
        #[arg(long, default_value_t = 120)]
        offline_grace_secs: u32,
        /// Days after a resolve in which a customer message reopens the
        /// conversation (later, a new one continues it).
        #[arg(long, default_value_t = 7)]
        reopen_window_days: i64,
        /// Business hours, e.g. "mon-fri 09:00-17:00; zone Europe/Berlin;
        /// holidays 2026-12-24"; always open if absent.
        #[arg(long)]
        hours: Option<String>,
        /// First-response target, in business minutes.
        #[arg(long)]
        first_response_mins: Option<i64>,
        /// Next-response target, in business minutes.
        #[arg(long)]
        next_response_mins: Option<i64>,
        /// Resolution target, in business minutes.
        #[arg(long)]
        resolution_mins: Option<i64>,
        /// How long before a breach its warning comes, in business minutes.
        #[arg(long, default_value_t = 0)]
        warn_before_mins: i64,
        /// On a breach, raise the conversation's priority one step.
        #[arg(long)]
        escalate_priority: bool,
        /// A team, `NAME=agent,agent,…` (local parts of the inbox's
        /// agents); repeat for more teams. The teams named replace the
        /// desk's; without --team, setting the desk up again keeps them.
        #[arg(long)]
        team: Vec<String>,
        /// A bot (`kanald bot add`) that owns every new conversation first,
        /// until it hands off to the agents.
        #[arg(long)]
        first_responder: Option<String>,
        /// On a breach, transfer the conversation to this team.
        #[arg(long)]
        escalate_to_team: Option<String>,
        /// Ask a satisfaction survey on every resolution: stars (1-5), nps
        /// (0-10) or thumbs (a device's customer is always asked thumbs).
        #[arg(long)]
        csat: Option<String>,
        /// The survey's question, instead of the scale's own words.
        #[arg(long, requires = "csat")]
        csat_text: Option<String>,
        /// Answer a customer who writes while the inbox is closed (see
        /// --hours), once per closed period, with these words (`{{opens}}`
        /// becomes when it opens; without words, a default that says so).
        #[arg(long, num_args = 0..=1, default_missing_value = "")]
        out_of_hours_reply: Option<String>,
    },
    /// Add, replace or remove a canned response of an inbox's desk: a text
    /// agents send with `kanal desk reply`, its placeholders
    /// ({{contact.name}}, {{agent.name}}, {{inbox.address}}) filled in.
    Canned {
        /// Local part of the inbox address.
        local: String,
        /// The response's name (no spaces), e.g. `greeting`.
        name: String,
        /// Its text.
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        text: Option<String>,
        /// Remove it instead.
        #[arg(long)]
        remove: bool,
    },
    /// Set how many open or pending conversations one agent holds at once
    /// at an inbox's desk (instead of the inbox's --capacity); a raised
    /// capacity takes waiting conversations at once.
    Capacity {
        /// Local part of the inbox address.
        local: String,
        /// Local part of the agent's address.
        agent: String,
        /// The agent's capacity (0: routing gives it none).
        #[arg(
            required_unless_present = "inbox_default",
            conflicts_with = "inbox_default"
        )]
        capacity: Option<u32>,
        /// Go back to the inbox's capacity.
        #[arg(long)]
        inbox_default: bool,
    },
}

/// Runs `kanald` with the process's arguments; returns its exit code.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => run(&cli.data_dir, args).await,
        Command::Init { domain, database } => {
            let config = Config {
                domain,
                database,
                ..Config::default()
            };
            config.validate()?;
            let fingerprint = datadir::init(&cli.data_dir, &config).await?;
            println!("initialised {}", cli.data_dir.display());
            println!("certificate fingerprint (SHA-256): {fingerprint}");
            Ok(())
        }
        Command::Fingerprint => {
            let config = Config::load(&cli.data_dir)?;
            let (certs, _) = crate::ops::certificate::load(
                &cli.data_dir.join(&config.tls_cert),
                &cli.data_dir.join(&config.tls_key),
            )?;
            println!("{}", crate::ops::certificate::fingerprint(&certs[0]));
            Ok(())
        }
        Command::User(UserCommand::Add(new)) => add_account(&cli.data_dir, new, false).await,
        Command::Bot(BotCommand::Add(new)) => add_account(&cli.data_dir, new, true).await,
        Command::Agent(AgentCommand::Add {
            local,
            inbox,
            password,
            display_name,
        }) => {
            let request = AdminRequest::AddAgent {
                local,
                inbox: inbox.clone(),
                password,
                display_name,
            };
            let party = expect_party(administer(&cli.data_dir, request).await?)?;
            let domain = party.address.split('@').nth(1).unwrap_or_default();
            println!("{} answers {inbox}@{domain}", party.address);
            Ok(())
        }
        Command::Inbox(InboxCommand::Add {
            local,
            display_name,
        }) => {
            let request = AdminRequest::AddInbox {
                local,
                display_name,
            };
            let party = expect_party(administer(&cli.data_dir, request).await?)?;
            println!("created inbox {}", party.address);
            Ok(())
        }
        Command::Inbox(InboxCommand::Desk {
            local,
            routing,
            capacity,
            answer_timeout_mins,
            offline_grace_secs,
            reopen_window_days,
            hours,
            first_response_mins,
            next_response_mins,
            resolution_mins,
            warn_before_mins,
            escalate_priority,
            team,
            first_responder,
            escalate_to_team,
            csat,
            csat_text,
            out_of_hours_reply,
        }) => {
            let minutes = |m: i64| m.saturating_mul(60_000);
            let mut config = crate::core::desk::DeskConfig::default();
            config.settings.routing = routing
                .parse()
                .map_err(|e: String| anyhow!("--routing: {e}"))?;
            config.settings.capacity = capacity;
            config.settings.answer_timeout_ms = answer_timeout_mins.map(minutes);
            config.settings.offline_grace_ms = i64::from(offline_grace_secs) * 1000;
            config.settings.reopen_window_ms = reopen_window_days.saturating_mul(24 * 3_600_000);
            if let Some(hours) = hours {
                config.hours = hours.parse().map_err(|e| anyhow!("--hours: {e}"))?;
            }
            config.sla.first_response_ms = first_response_mins.map(minutes);
            config.sla.next_response_ms = next_response_mins.map(minutes);
            config.sla.resolution_ms = resolution_mins.map(minutes);
            config.sla.warn_before_ms = minutes(warn_before_mins);
            config.sla.escalation.raise_priority = escalate_priority;
            let mut names = crate::node::directory::DeskNames {
                first_responder,
                ..Default::default()
            };
            for spec in &team {
                let Some((name, members)) = spec.split_once('=') else {
                    bail!("--team {spec:?}: write NAME=agent,agent,…");
                };
                let members = members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                names.teams.insert(name.trim().to_owned(), members);
            }
            config.sla.escalation.to_team = escalate_to_team;
            if let Some(text) = &csat_text
                && text.len() > kanal_proto::limits::MAX_TEXT
            {
                bail!(
                    "--csat-text: {} bytes, at most {}",
                    text.len(),
                    kanal_proto::limits::MAX_TEXT
                );
            }
            if let Some(words) = &out_of_hours_reply
                && words.len() > kanal_proto::limits::MAX_TEXT / 2
            {
                bail!(
                    "--out-of-hours-reply: {} bytes, at most {}",
                    words.len(),
                    kanal_proto::limits::MAX_TEXT / 2
                );
            }
            config.settings.out_of_hours_reply = out_of_hours_reply;
            if let Some(scale) = csat {
                config.settings.csat = Some(crate::model::Csat {
                    scale: scale.parse().map_err(|e: String| anyhow!("--csat: {e}"))?,
                    text: csat_text.unwrap_or_default(),
                });
            }
            let request = AdminRequest::ConfigureDesk {
                inbox: local,
                config: Box::new(config),
                names,
            };
            let party = expect_party(administer(&cli.data_dir, request).await?)?;
            println!("the desk of {} is set up", party.address);
            Ok(())
        }
        Command::Inbox(InboxCommand::Canned {
            local,
            name,
            text,
            remove,
        }) => {
            let request = AdminRequest::SetCanned {
                inbox: local,
                name: name.clone(),
                text: if remove { None } else { text },
            };
            let party = expect_party(administer(&cli.data_dir, request).await?)?;
            let done = if remove { "removed" } else { "set" };
            println!("canned response {name} of {} {done}", party.address);
            Ok(())
        }
        Command::Inbox(InboxCommand::Capacity {
            local,
            agent,
            capacity,
            inbox_default,
        }) => {
            let capacity = if inbox_default { None } else { capacity };
            let request = AdminRequest::SetCapacity {
                inbox: local.clone(),
                agent,
                capacity,
            };
            let party = expect_party(administer(&cli.data_dir, request).await?)?;
            match capacity {
                Some(n) => println!(
                    "{} holds at most {n} open conversations at {local}",
                    party.address
                ),
                None => println!("{} holds {local}'s capacity", party.address),
            }
            Ok(())
        }
        Command::Backup { to } => {
            let to = std::path::absolute(&to)
                .with_context(|| format!("backup path {}", to.display()))?;
            let request = AdminRequest::Backup {
                to: to.to_string_lossy().into_owned(),
            };
            match administer(&cli.data_dir, request).await? {
                AdminResponse::BackedUp { to, bytes } => {
                    println!("backed up to {to} ({bytes} bytes)");
                    Ok(())
                }
                AdminResponse::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            }
        }
        Command::Invite(command) => invite(&cli.data_dir, command).await,
        Command::Device(command) => device(&cli.data_dir, command).await,
        Command::Peer(command) => peer(&cli.data_dir, command).await,
        Command::Cluster(ClusterCommand::Status { database }) => {
            print!(
                "{}",
                cluster::status(&cli.data_dir, database.as_deref()).await?
            );
            Ok(())
        }
        Command::Parties => match administer(&cli.data_dir, AdminRequest::Parties).await? {
            AdminResponse::Parties { parties } => {
                for party in parties {
                    println!(
                        "{:<8} {}  {}",
                        party.kind, party.address, party.display_name
                    );
                }
                Ok(())
            }
            AdminResponse::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer {other:?}"),
        },
    }
}

/// `kanald invite …`.
async fn peer(data_dir: &Path, command: PeerCommand) -> Result<()> {
    let (request, long) = match command {
        PeerCommand::Add {
            domain,
            address,
            fingerprint,
        } => {
            if fingerprint.is_none() && !Config::load(data_dir)?.federation_webpki {
                bail!(
                    "give --fingerprint: without one {domain} is trusted by WebPKI, which is \
                     off (`federation_webpki = true` in {})",
                    data_dir.join(crate::ops::config::CONFIG_FILE).display()
                );
            }
            (
                AdminRequest::AddPeer {
                    domain,
                    address: address.unwrap_or_default(),
                    fingerprint: fingerprint.unwrap_or_default(),
                },
                true,
            )
        }
        PeerCommand::List => (AdminRequest::Peers { domain: None }, false),
        PeerCommand::Show { domain } => (
            AdminRequest::Peers {
                domain: Some(domain),
            },
            true,
        ),
        PeerCommand::Undelivered { domain } => {
            let response = administer(data_dir, AdminRequest::Undelivered { domain }).await?;
            return print_undelivered(response, false);
        }
        PeerCommand::Replay { domain, seq } => {
            let response = administer(data_dir, AdminRequest::Replay { domain, seq }).await?;
            return print_undelivered(response, true);
        }
        PeerCommand::Remove { domain } => {
            let response = administer(
                data_dir,
                AdminRequest::RemovePeer {
                    domain: domain.clone(),
                },
            )
            .await?;
            return match response {
                AdminResponse::Peers { .. } => {
                    println!("removed peer {domain}");
                    Ok(())
                }
                AdminResponse::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            };
        }
    };
    match administer(data_dir, request).await? {
        AdminResponse::Peers { peers } => {
            for peer in peers {
                let address = shown_address(&peer);
                if long {
                    println!("peer         {}", peer.domain);
                    println!("address      {address}");
                    println!("fingerprint  {}", shown_fingerprint(&peer));
                    println!("queued       {}", peer.queued);
                    if let Some(age) = peer.oldest_age_secs.filter(|_| peer.queued > 0) {
                        println!("oldest       {age} s");
                    }
                    println!("acked        {}", peer.acked);
                    println!("applied      {}", peer.committed);
                    println!("dead letters {}", peer.dead_letters);
                    println!("expired      {}", peer.expired);
                    if let Some(error) = &peer.last_error {
                        println!("last error   {error}");
                    }
                    if let Some(secs) = peer.next_retry_secs {
                        println!("next retry   in {secs} s");
                    }
                    if peer.resting {
                        println!(
                            "delivery     resting: only given-up transactions are queued; it starts again with the next transaction or when the peer connects"
                        );
                    }
                } else {
                    println!(
                        "{:<24} {:<24} queued {:>6}{}",
                        peer.domain,
                        address,
                        peer.queued,
                        peer.last_error
                            .as_ref()
                            .map_or(String::new(), |e| format!("  last error: {e}"))
                    );
                }
            }
            Ok(())
        }
        AdminResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Where a peer is, for people: its configured address, or what DNS SRV
/// found last.
fn shown_address(peer: &PeerInfo) -> String {
    match (peer.address.as_str(), &peer.dialled) {
        ("", _) if !peer.reachable => {
            "none: not a configured peer, and federation_webpki is off".to_owned()
        }
        ("", Some(dialled)) => format!("{dialled} (DNS SRV)"),
        ("", None) => "by DNS SRV".to_owned(),
        (address, _) => address.to_owned(),
    }
}

/// How a peer's certificate is trusted, for people.
fn shown_fingerprint(peer: &PeerInfo) -> String {
    match (peer.fingerprint.as_str(), peer.configured) {
        ("", true) => "none, trusted by WebPKI".to_owned(),
        ("", false) => "none, trusted by WebPKI (not a configured peer)".to_owned(),
        (fingerprint, _) => fingerprint.to_owned(),
    }
}

/// Prints what was given up toward a peer (`replayed`: after a replay,
/// which says what it queued again).
fn print_undelivered(response: AdminResponse, replayed: bool) -> Result<()> {
    let (peer, transactions) = match response {
        AdminResponse::Undelivered { peer, transactions } => (peer, transactions),
        AdminResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    };
    if transactions.is_empty() {
        println!("nothing toward {peer} was given up");
    }
    for t in &transactions {
        let state = match (t.replayed_as, t.refused) {
            (Some(seq), _) => format!("delivered again as {seq}"),
            (None, true) => "refused".to_owned(),
            (None, false) => "expired".to_owned(),
        };
        println!("{:>8}  {}  {state}", t.seq, utc(t.failed_at_ms));
        println!("          {}", t.what);
        println!("          why: {}", t.reason);
        if let Some(told) = &t.told {
            println!("          told: {told}");
        }
    }
    if replayed {
        let again = transactions
            .iter()
            .filter(|t| t.replayed_as.is_some())
            .count();
        eprintln!("{again} transaction(s) toward {peer} delivered again so far");
    }
    Ok(())
}

async fn invite(data_dir: &Path, command: InviteCommand) -> Result<()> {
    let request = match command {
        InviteCommand::Add { uses, days, note } => AdminRequest::AddInvite { uses, days, note },
        InviteCommand::List => AdminRequest::Invites,
        InviteCommand::Revoke { id } => AdminRequest::RevokeInvite { id },
    };
    match administer(data_dir, request).await? {
        AdminResponse::Invite { code, invite } => {
            println!("{code}");
            eprintln!(
                "invite {} allows {} registration(s){}",
                invite.id,
                invite.uses_left,
                invite
                    .expires_at_ms
                    .map_or(String::new(), |at| format!(", until {}", utc(at)))
            );
        }
        AdminResponse::Invites { invites } => {
            for invite in invites {
                let until = invite.expires_at_ms.map_or("never".to_owned(), utc);
                println!(
                    "{:>6}  {:>6} left  expires {until}  {}",
                    invite.id, invite.uses_left, invite.note
                );
            }
        }
        AdminResponse::Revoked { id } => println!("revoked invite {id}"),
        AdminResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(())
}

/// A time as `YYYY-MM-DD hh:mm UTC`.
fn utc(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|at| at.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Carries out an operator command through the server running on
/// `data_dir`, or, when none runs, through a node of this process.
/// `kanald device …`.
async fn device(data_dir: &Path, command: DeviceCommand) -> Result<()> {
    let request = match command {
        DeviceCommand::Keygen => {
            let keys = snow::Builder::new(kanal_proto::device::NOISE_PATTERN.parse()?)
                .generate_keypair()?;
            println!("secret {}", hex::encode(&keys.private));
            println!("public {}", hex::encode(&keys.public));
            return Ok(());
        }
        DeviceCommand::ServerKey => {
            if !datadir::is_initialised(data_dir) {
                bail!(
                    "{} is not initialised: run `kanald init` first",
                    data_dir.display()
                );
            }
            let (_, public) = datadir::device_key(data_dir)
                .with_context(|| format!("the device key of {}", data_dir.display()))?;
            println!("{}", hex::encode(public));
            return Ok(());
        }
        DeviceCommand::Add {
            csv: Some(path), ..
        } => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_path(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut devices = Vec::new();
            for (line, row) in reader.deserialize::<DeviceRow>().enumerate() {
                // Line 1 is the header.
                let row = row.with_context(|| format!("{} line {}", path.display(), line + 2))?;
                devices.push(DeviceSpecInfo {
                    serial: row.serial,
                    model: row.model,
                    key: row.public_key,
                    inbox: row.inbox,
                    owner: row.owner.filter(|o| !o.is_empty()),
                });
            }
            AdminRequest::AddDevices { devices }
        }
        DeviceCommand::Add {
            serial,
            model,
            key,
            inbox,
            owner,
            csv: None,
        } => AdminRequest::AddDevices {
            devices: vec![DeviceSpecInfo {
                serial: serial.unwrap_or_default(),
                model: model.unwrap_or_default(),
                key: key.unwrap_or_default(),
                inbox,
                owner,
            }],
        },
        DeviceCommand::List => AdminRequest::Devices,
        DeviceCommand::Revoke { serial } => AdminRequest::RevokeDevice { serial },
        DeviceCommand::Link { serial, owner } => AdminRequest::LinkDevice { serial, owner },
    };
    let adding = matches!(request, AdminRequest::AddDevices { .. });
    match administer(data_dir, request).await? {
        AdminResponse::Devices { devices, refused } => {
            for device in &devices {
                println!(
                    "{:<20} {:<16} {:<28} inbox {} owner {}{}  key {}",
                    device.serial,
                    device.model,
                    device.address,
                    device.inbox,
                    device.owner.as_deref().unwrap_or("-"),
                    if device.revoked { "  REVOKED" } else { "" },
                    device.key,
                );
            }
            for reason in &refused {
                eprintln!("refused {reason}");
            }
            if adding {
                println!("{} registered, {} refused", devices.len(), refused.len());
            }
            if refused.is_empty() {
                Ok(())
            } else {
                bail!("{} devices were refused", refused.len())
            }
        }
        AdminResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

async fn administer(data_dir: &Path, request: AdminRequest) -> Result<AdminResponse> {
    let answered = admin::call(data_dir, &request)
        .await
        .with_context(|| format!("asking the server serving {}", data_dir.display()))?;
    if let Some(response) = answered {
        return Ok(response);
    }
    if !datadir::is_initialised(data_dir) {
        bail!(
            "{} is not initialised: run `kanald init` first",
            data_dir.display()
        );
    }
    let config = Config::load(data_dir)?;
    let offline = match Offline::open(data_dir, &config).await {
        Ok(offline) => offline,
        Err(StartError::Locked(_)) => bail!(
            "a kanald serves {} but its admin socket does not answer; retry, or stop it",
            data_dir.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let response = admin::handle(offline.node(), request).await;
    offline.close().await;
    Ok(response)
}

/// The party an answer names, or its error.
fn expect_party(response: AdminResponse) -> Result<PartyInfo> {
    match response {
        AdminResponse::Party { party } => Ok(party),
        AdminResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

async fn run(data_dir: &Path, args: RunArgs) -> Result<()> {
    if !datadir::is_initialised(data_dir) {
        let mut config = Config::default();
        if let Some(domain) = &args.domain {
            config.domain.clone_from(domain);
        }
        if let Some(database) = &args.database {
            config.database.clone_from(database);
        }
        config.validate()?;
        datadir::init(data_dir, &config)
            .await
            .with_context(|| format!("initialising {}", data_dir.display()))?;
        eprintln!("initialised a new data directory at {}", data_dir.display());
    }
    let mut config = Config::load(data_dir)?;
    if let Some(v) = args.domain {
        config.domain = v;
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.registration {
        config.registration = v;
    }
    if let Some(v) = args.database {
        config.database = v;
    }
    if let Some(v) = args.nats {
        config.nats = v;
    }
    if let Some(v) = args.tls_cert {
        config.tls_cert = v;
    }
    if let Some(v) = args.tls_key {
        config.tls_key = v;
    }
    if let Some(v) = args.max_connections {
        config.max_connections = v;
    }
    if let Some(v) = args.idle_timeout_secs {
        config.idle_timeout_secs = v;
    }
    if let Some(v) = args.commit_window_ms {
        config.commit_window_ms = v;
    }
    if let Some(v) = args.registrations_per_hour_per_source {
        config.registrations_per_hour_per_source = v;
    }
    if let Some(v) = args.registrations_per_hour {
        config.registrations_per_hour = v;
    }
    if let Some(v) = args.sends_per_second_per_party {
        config.sends_per_second_per_party = v;
    }
    if let Some(v) = args.send_burst_per_party {
        config.send_burst_per_party = v;
    }
    if let Some(v) = args.max_connections_per_source {
        config.max_connections_per_source = v;
    }
    if let Some(v) = args.max_connections_per_account {
        config.max_connections_per_account = v;
    }
    if let Some(v) = args.federation_listen {
        config.federation_listen = v;
    }
    if let Some(v) = args.device_listen {
        config.device_listen = v;
    }
    if let Some(v) = args.device_requests_per_minute {
        config.device_requests_per_minute = v;
    }
    if let Some(v) = args.device_request_burst {
        config.device_request_burst = v;
    }
    if let Some(v) = args.device_mail_expiry_hours {
        config.device_mail_expiry_hours = v;
    }
    if let Some(v) = args.device_cookie_threshold {
        config.device_cookie_threshold = v;
    }
    if let Some(v) = args.nats_subject_prefix {
        config.nats_subject_prefix = v;
    }
    if let Some(v) = args.federation_horizon_hours {
        config.federation_horizon_hours = v;
    }
    if let Some(v) = args.federation_transactions_per_second_per_peer {
        config.federation_transactions_per_second_per_peer = v;
    }
    if let Some(v) = args.federation_webpki {
        config.federation_webpki = v;
    }
    if let Some(v) = args.federation_ca_file {
        config.federation_ca_file = v;
    }
    if let Some(v) = args.federation_public_roots {
        config.federation_public_roots = v;
    }
    if let Some(v) = args.federation_dns {
        config.federation_dns = v;
    }
    if let Some(v) = args.federation_idle_peer_minutes {
        config.federation_idle_peer_minutes = v;
    }
    config.validate()?;
    let server = Server::start(data_dir, config).await?;
    // One line on stdout that scripts (and tests) can read.
    println!(
        "kanald listening on {} domain {} fingerprint {} federation {}",
        server.local_addr(),
        server.domain(),
        server.fingerprint(),
        server.federation_addr()
    );
    // On stderr: scripts read the one line on stdout, and may stop reading.
    eprintln!(
        "kanald devices on {} key {}",
        server.device_addr(),
        hex::encode(server.device_public_key())
    );
    shutdown_signal().await?;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;
    use crate::config::Config;

    #[test]
    fn every_key_of_the_configuration_is_a_flag_of_kanald_run() {
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("run");
        let flags: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        let rendered = Config::default().render();
        let keys: Vec<&str> = rendered
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(" = ").map(|(key, _)| key))
            .collect();
        assert!(keys.len() > 20, "{keys:?}");
        for key in keys {
            let flag = key.replace('_', "-");
            assert!(flags.contains(&flag), "no --{flag} for `{key}`");
        }
    }
}
