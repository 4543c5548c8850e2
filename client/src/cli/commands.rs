//! What each `kanal` subcommand does.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Client, ClientConfig, ClientEvent, Credentials, Fingerprint, pb};
use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::args::{Cli, Command, DEFAULT_SERVER, Global};
use super::desk;
use super::output;
use super::session::{self, Session};
use super::structured;

/// How often `listen` acknowledges and saves its progress while events flow.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Events `listen` prints before it acknowledges and saves progress anyway.
const PROGRESS_EVERY: u64 = 100;

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    let home = session::home_dir(global.home.clone())?;
    match command {
        Command::Register {
            local,
            display_name,
            invite,
        } => {
            let password = password(&global, "password for the new account")?;
            let credentials = Credentials::Register {
                local,
                password,
                display_name: display_name.unwrap_or_default(),
                invite: invite.unwrap_or_default(),
            };
            let (client, _) = open(&global, &home, Some(credentials)).await?;
            println!("registered {}", client.party().address);
            client.close().await;
        }
        Command::Login { address } => {
            let password = password(&global, &format!("password for {address}"))?;
            let credentials = Credentials::Password { address, password };
            let (client, _) = open(&global, &home, Some(credentials)).await?;
            println!("logged in as {}", client.party().address);
            client.close().await;
        }
        Command::Whoami { json } => {
            let (client, _) = open(&global, &home, None).await?;
            let party = client.party();
            let welcome = client.welcome();
            if json {
                print_json(&json!({
                    "type": "whoami",
                    "address": party.address,
                    "display_name": party.display_name,
                    "server_domain": welcome.server_domain,
                    "event_head": welcome.event_head,
                    "acked_seq": welcome.acked_seq,
                }))?;
            } else {
                let name = if party.display_name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", party.display_name)
                };
                println!(
                    "{}{name} on {}; events up to #{}, acknowledged #{}",
                    party.address, welcome.server_domain, welcome.event_head, welcome.acked_seq
                );
            }
            client.close().await;
        }
        Command::Send { target, text, json } => {
            let (client, _) = open(&global, &home, None).await?;
            let result = send(&client, &target, &text.join(" "), json).await;
            client.close().await;
            result?;
        }
        Command::Ask {
            target,
            text,
            kind,
            options,
            json,
        } => {
            let question = structured::question(&text.join(" "), &kind, &options)?;
            let (client, _) = open(&global, &home, None).await?;
            let result = async {
                let conversation = target_conversation(&client, &target).await?;
                client
                    .ask(&conversation, question)
                    .await
                    .with_context(|| format!("asking in {conversation}"))
            }
            .await;
            client.close().await;
            print_sent(&result?, json)?;
        }
        Command::Answer {
            conversation,
            seq,
            value,
            comment,
            json,
        } => {
            let (client, _) = open(&global, &home, None).await?;
            let result =
                structured::answer(&client, &conversation, seq, &value, comment.as_deref()).await;
            client.close().await;
            print_sent(&result?, json)?;
        }
        Command::Listen {
            json,
            since,
            until_caught_up,
            away,
        } => {
            let (client, mut session) = open(&global, &home, None).await?;
            if away && let Err(error) = client.set_availability(pb::Availability::Away).await {
                client.close().await;
                return Err(anyhow::Error::new(error).context("setting the availability to away"));
            }
            let result = listen(&client, &mut session, &home, json, since, until_caught_up).await;
            client.close().await;
            result?;
        }
        Command::History {
            conversation,
            before,
            limit,
            json,
        } => {
            let (client, _) = open(&global, &home, None).await?;
            let page = client.history(&conversation, before, limit).await;
            client.close().await;
            let page = page.with_context(|| format!("reading the history of {conversation}"))?;
            for message in &page.messages {
                if json {
                    print_json(&output::message_json(message, None))?;
                } else {
                    print_line(&output::message_line(message))?;
                }
            }
            if page.has_more && !json {
                let oldest = page.messages.first().map_or(0, |m| m.seq);
                eprintln!("(older messages: --before {oldest})");
            }
        }
        Command::Conversations { json, limit } => {
            let (client, _) = open(&global, &home, None).await?;
            let list = client.conversations(limit, 0).await;
            client.close().await;
            let list = list.context("listing conversations")?;
            for conversation in &list.conversations {
                if json {
                    print_json(&output::conversation_json(conversation, None))?;
                } else {
                    print_line(&output::conversation_line(conversation))?;
                }
            }
        }
        Command::Desk { command } => {
            let (client, _) = open(&global, &home, None).await?;
            let result = desk::run(&client, command).await;
            client.close().await;
            result?;
        }
        Command::Read { conversation, seq } => {
            let (client, _) = open(&global, &home, None).await?;
            let marked = client.mark(&conversation, pb::ReceiptKind::Read, seq).await;
            client.close().await;
            marked.with_context(|| format!("marking {conversation} read"))?;
        }
    }
    Ok(())
}

/// Connects with explicit `credentials` (register, login), else with
/// `--user`/`--password`, else by resuming the saved session; then saves the
/// session.
async fn open(
    global: &Global,
    home: &Path,
    credentials: Option<Credentials>,
) -> anyhow::Result<(Client, Session)> {
    let saved = Session::load(home)?;
    let credentials = match (credentials, &global.user, &saved) {
        (Some(credentials), _, _) => credentials,
        (None, Some(user), _) => Credentials::Password {
            address: user.clone(),
            password: password(global, &format!("password for {user}"))?,
        },
        (None, None, Some(saved)) => Credentials::Resume {
            token: saved.resume_token.clone(),
        },
        (None, None, None) => bail!(
            "not logged in (no session in {}): run `kanal register <name>` or \
             `kanal login <address>`, or pass --user and --password",
            home.display()
        ),
    };
    let resuming = matches!(credentials, Credentials::Resume { .. });
    // Flags win; a resumed session otherwise keeps the server it was made with.
    let from_session = saved.as_ref().filter(|_| resuming);
    let server = global
        .server
        .clone()
        .or_else(|| from_session.map(|s| s.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server_name = global
        .server_name
        .clone()
        .or_else(|| from_session.and_then(|s| s.server_name.clone()));
    let pin = match (global.pin, from_session.and_then(|s| s.pin.as_deref())) {
        (Some(pin), _) => Some(pin),
        (None, Some(saved)) => Some(
            saved
                .parse::<Fingerprint>()
                .context("the saved session's pin is invalid")?,
        ),
        (None, None) => None,
    };
    let mut config = ClientConfig::new(server.clone())
        .client_name(concat!("kanal-cli/", env!("CARGO_PKG_VERSION")));
    config.server_name = server_name.clone();
    config.pin = pin;
    let client = Client::connect(config, credentials)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let address = client.party().address;
    let last_seq = saved
        .as_ref()
        .filter(|s| s.address == address && s.server == server)
        .map_or(0, |s| s.last_seq);
    let mut session = Session {
        server,
        server_name,
        pin: pin.map(|pin| pin.to_string()),
        address,
        resume_token: client.resume_token(),
        last_seq,
    };
    if let Err(error) = session.save(home) {
        client.close().await;
        return Err(error);
    }
    Ok((client, session))
}

/// `--password`, or a line read from standard input.
fn password(global: &Global, prompt: &str) -> anyhow::Result<String> {
    if let Some(password) = &global.password {
        return Ok(password.clone());
    }
    eprint!("{prompt}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given (use --password, KANAL_PASSWORD or type it on standard input)");
    }
    Ok(password)
}

/// `send`: to a conversation, or to an address through a new conversation.
async fn send(client: &Client, target: &str, text: &str, json: bool) -> anyhow::Result<()> {
    let conversation = target_conversation(client, target).await?;
    let sent = client
        .send_text(&conversation, text)
        .await
        .with_context(|| format!("sending to {conversation}"))?;
    print_sent(&sent, json)
}

/// A conversation id as given, or a new conversation with an address.
async fn target_conversation(client: &Client, target: &str) -> anyhow::Result<String> {
    if target.contains('@') {
        Ok(client
            .create_conversation(&[target], "")
            .await
            .with_context(|| format!("starting a conversation with {target}"))?
            .id)
    } else {
        Ok(target.to_owned())
    }
}

/// Where a sent message went.
pub(crate) fn print_sent(sent: &pb::Sent, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&json!({
            "type": "sent",
            "conversation": sent.conversation,
            "seq": sent.seq,
            "sent_at_ms": sent.sent_at_ms,
            "duplicate": sent.duplicate,
        }))
    } else {
        print_line(&format!("{} #{}", sent.conversation, sent.seq))
    }
}

/// `listen`: prints events, acknowledging and saving progress as it goes.
async fn listen(
    client: &Client,
    session: &mut Session,
    home: &Path,
    json: bool,
    since: Option<u64>,
    until_caught_up: bool,
) -> anyhow::Result<()> {
    let since = since.unwrap_or(session.last_seq);
    let mut events = client.subscribe(since).await.context("subscribing")?;
    let mut progress = Progress {
        home: home.to_path_buf(),
        last: since,
        saved: since,
    };
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    let interrupted = stop_signal();
    tokio::pin!(interrupted);
    let outcome = loop {
        let step = tokio::select! {
            event = events.next() => show(event, json, &mut progress, client),
            _ = tick.tick() => Ok(Step::Save),
            _ = &mut interrupted => Ok(Step::Stop),
        };
        let saved = match step {
            Ok(Step::Continue) => Ok(()),
            Ok(Step::Save) if progress.last > progress.saved => {
                progress.commit(client, session).await
            }
            Ok(Step::Save) => Ok(()),
            Ok(Step::CaughtUp) => {
                let saved = progress.commit(client, session).await;
                if until_caught_up {
                    break saved;
                }
                saved
            }
            Ok(Step::Stop) => break Ok(()),
            Err(error) => break Err(error),
        };
        if let Err(error) = saved {
            break Err(error);
        }
    };
    // Save what was printed, also when stopping on an error.
    let committed = progress.commit(client, session).await;
    outcome.and(committed)
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM, so that `listen` saves its
/// progress before it exits.
async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// What `listen` does after an event.
enum Step {
    /// Wait for the next one.
    Continue,
    /// Acknowledge and save progress if there is any.
    Save,
    /// The replay is over: save progress (and stop with --until-caught-up).
    CaughtUp,
    /// Stop listening.
    Stop,
}

/// Prints one item of the event stream.
fn show(
    event: Option<ClientEvent>,
    json: bool,
    progress: &mut Progress,
    client: &Client,
) -> anyhow::Result<Step> {
    match event {
        Some(ClientEvent::Event(event)) => {
            if json {
                print_json(&output::event_json(&event))?;
            } else {
                print_line(&output::event_line(&event))?;
            }
            progress.last = event.seq;
            if progress.last.saturating_sub(progress.saved) >= PROGRESS_EVERY {
                return Ok(Step::Save);
            }
            Ok(Step::Continue)
        }
        Some(ClientEvent::SyncComplete { head }) => {
            if json {
                print_json(&json!({ "type": "sync_complete", "head": head }))?;
            } else {
                eprintln!("-- caught up (#{head}) --");
            }
            Ok(Step::CaughtUp)
        }
        Some(ClientEvent::Typing(typing)) => {
            if json {
                print_json(&output::typing_json(&typing))?;
            } else {
                print_line(&output::typing_line(&typing))?;
            }
            Ok(Step::Continue)
        }
        Some(ClientEvent::Reconnected) => {
            if json {
                print_json(&json!({ "type": "reconnected" }))?;
            } else {
                eprintln!("-- reconnected --");
            }
            Ok(Step::Continue)
        }
        None => Err(match client.session_error() {
            Some(error) => anyhow::Error::new(error).context("listening stopped"),
            None => anyhow::anyhow!("listening stopped: the event stream ended"),
        }),
    }
}

/// How far `listen` got, and how far that is saved.
struct Progress {
    home: PathBuf,
    last: u64,
    saved: u64,
}

impl Progress {
    /// Acknowledges the last printed event and saves it (with the current
    /// resume token) to the session file.
    async fn commit(&mut self, client: &Client, session: &mut Session) -> anyhow::Result<()> {
        // The local file is the source of truth for `listen`; the server's
        // ack only serves other tools, so a failed ack is not fatal.
        if self.last > self.saved
            && let Err(error) = client.ack(self.last).await
        {
            tracing::warn!(%error, seq = self.last, "could not acknowledge");
        }
        session.last_seq = self.last;
        session.resume_token = client.resume_token();
        session.save(&self.home)?;
        self.saved = session.last_seq;
        Ok(())
    }
}

pub(crate) fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    print_line(&value.to_string())
}
