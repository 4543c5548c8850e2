//! The `kanal` command line's arguments: global options and subcommands.

use std::path::PathBuf;

use crate::Fingerprint;
use clap::{Args, Parser, Subcommand};

use super::desk::DeskCommand;
use super::structured::{QuestionKind, QuestionOptions};

/// The server used when neither a flag nor a saved session names one.
pub(crate) const DEFAULT_SERVER: &str = "127.0.0.1:7447";

/// Kanal's reference client: register, send, listen.
#[derive(Debug, Parser)]
#[command(name = "kanal", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Connection and account options.
    #[command(flatten)]
    pub(crate) global: Global,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes; each also as an environment variable.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Server to talk to, `host[:port]` [default: the saved session's, else 127.0.0.1:7447]
    #[arg(long, env = "KANAL_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// SHA-256 of the server's certificate (64 hex digits; `:` allowed), as
    /// kanald prints it at start. Without it, the certificate must chain to a
    /// public CA.
    #[arg(long, env = "KANAL_PIN", global = true)]
    pub(crate) pin: Option<Fingerprint>,
    /// TLS server name to expect [default: the host part of --server]
    #[arg(long, env = "KANAL_SERVER_NAME", global = true)]
    pub(crate) server_name: Option<String>,
    /// Log in as this address (with --password) instead of resuming the saved session
    #[arg(long, env = "KANAL_USER", global = true)]
    pub(crate) user: Option<String>,
    /// Password for register, login and --user (prompted on stdin when missing)
    #[arg(long, env = "KANAL_PASSWORD", global = true, hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// Where the session is saved [default: $XDG_CONFIG_HOME/kanal or ~/.config/kanal]
    #[arg(long, env = "KANAL_HOME", global = true)]
    pub(crate) home: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create an account `<local>@<server domain>` and save its session
    Register {
        /// The part of the address before the '@'
        local: String,
        /// Name shown to other parties
        #[arg(long)]
        display_name: Option<String>,
        /// Invite code from the server's operator (servers that register
        /// by invitation only)
        #[arg(long, env = "KANAL_INVITE")]
        invite: Option<String>,
    },
    /// Log in with an address and password and save the session
    Login {
        /// The account, `local@domain`
        address: String,
    },
    /// Show the logged-in account
    Whoami {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Send a text message to a conversation, or to an address (which starts a conversation)
    Send {
        /// A conversation id (`domain/id`) or an address (`local@domain`)
        target: String,
        /// The message; several words are joined with spaces (after `--` it may start with `-`)
        #[arg(required = true)]
        text: Vec<String>,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Ask a structured question: buttons, quick replies, a list, a form or a rating
    Ask {
        /// A conversation id (`domain/id`) or an address (`local@domain`)
        target: String,
        /// The question, which must say itself for clients that show text only
        #[arg(required = true)]
        text: Vec<String>,
        /// How it is answered.
        #[command(flatten)]
        kind: QuestionKind,
        /// Options of some kinds.
        #[command(flatten)]
        options: QuestionOptions,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Answer a question: a choice (its label, id or position), a score, or
    /// form fields as ID=VALUE
    Answer {
        /// The conversation id
        conversation: String,
        /// The question's seq
        seq: u64,
        /// The answer
        #[arg(required = true)]
        value: Vec<String>,
        /// A comment with a rating
        #[arg(long)]
        comment: Option<String>,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print events as they arrive, from the last one seen before
    Listen {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Start after this event seq instead of the saved one
        #[arg(long)]
        since: Option<u64>,
        /// Exit once every stored event has been printed
        #[arg(long)]
        until_caught_up: bool,
        /// As a desk agent: stay connected without taking new conversations
        /// (`kanal desk availability online` from elsewhere ends it)
        #[arg(long)]
        away: bool,
    },
    /// Print a conversation's messages, oldest first
    History {
        /// The conversation id
        conversation: String,
        /// Only messages before this seq (0: up to the newest)
        #[arg(long, default_value_t = 0)]
        before: u64,
        /// At most this many messages (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// List conversations, most recently active first
    Conversations {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Work a service desk as one of its inbox's agents
    Desk {
        /// What to do at the desk.
        #[command(subcommand)]
        command: DeskCommand,
    },
    /// Mark a conversation read up to a message seq
    Read {
        /// The conversation id
        conversation: String,
        /// Every message up to and including this seq
        seq: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kanal").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_anywhere() {
        let pin = "ab".repeat(32);
        let cli = parse(&[
            "--server",
            "localhost:9000",
            "send",
            "bob@localhost",
            "hello",
            "world",
            "--pin",
            &pin,
            "--home",
            "/tmp/k",
        ])
        .expect("parses");
        assert_eq!(cli.global.server.as_deref(), Some("localhost:9000"));
        assert_eq!(cli.global.pin, Some(Fingerprint([0xab; 32])));
        assert_eq!(cli.global.home, Some(PathBuf::from("/tmp/k")));
        match cli.command {
            Command::Send { target, text, json } => {
                assert_eq!(target, "bob@localhost");
                assert_eq!(text, ["hello", "world"]);
                assert!(!json);
            }
            other => panic!("wrong command {other:?}"),
        }
    }

    #[test]
    fn listen_flags() {
        let cli = parse(&["listen", "--json", "--since", "5", "--until-caught-up"]).expect("ok");
        match cli.command {
            Command::Listen {
                json,
                since,
                until_caught_up,
                away: false,
            } => {
                assert!(json && until_caught_up);
                assert_eq!(since, Some(5));
            }
            other => panic!("wrong command {other:?}"),
        }
        let cli = parse(&["listen"]).expect("ok");
        assert!(matches!(
            cli.command,
            Command::Listen {
                json: false,
                since: None,
                until_caught_up: false,
                away: false,
            }
        ));
    }

    #[test]
    fn history_defaults_and_register_options() {
        let cli = parse(&["history", "localhost/abc", "--limit", "10"]).expect("ok");
        assert!(matches!(
            cli.command,
            Command::History {
                before: 0,
                limit: 10,
                json: false,
                ..
            }
        ));
        let cli = parse(&["register", "alice", "--display-name", "Alice A."]).expect("ok");
        assert!(matches!(
            cli.command,
            Command::Register { ref local, display_name: Some(ref name), .. } if local == "alice" && name == "Alice A."
        ));
        let cli = parse(&["read", "localhost/abc", "4"]).expect("ok");
        assert!(matches!(cli.command, Command::Read { seq: 4, .. }));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&[]).is_err());
        assert!(
            parse(&["send", "bob@localhost"]).is_err(),
            "text is required"
        );
        assert!(parse(&["--pin", "nothex", "whoami"]).is_err());
        assert!(parse(&["read", "localhost/abc", "minus"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn message_text_may_start_with_a_dash_after_double_dash() {
        let cli = parse(&[
            "send",
            "localhost/abc",
            "--json",
            "--",
            "-1",
            "is",
            "negative",
        ])
        .expect("ok");
        assert!(
            matches!(cli.command, Command::Send { ref text, json: true, .. } if text == &["-1", "is", "negative"])
        );
    }
}
