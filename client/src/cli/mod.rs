//! The `kanal` command line (feature `cli`): parsing the arguments
//! (`args`), running the command (`commands`), and how a run ends. The
//! `kanal` binary is [`main`]; the end-to-end tests build the same
//! command line as a binary of their own.

mod args;
mod commands;
mod desk;
mod output;
mod report;
mod session;
mod structured;

use std::process::ExitCode;

use crate::ClientError;
use clap::Parser as _;

use self::args::Cli;

/// Parses the arguments, runs the command, and maps the outcome to an exit
/// code: 0 on success, 2 when the server refused, 1 for anything else.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit_code(&error)
        }
    }
}

/// 2 for a refusal by the server, 1 otherwise.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    let refused = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ClientError>(),
            Some(ClientError::Refused { .. })
        )
    });
    if refused {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_exit_with_2() {
        let refused = anyhow::Error::new(ClientError::Refused {
            code: crate::pb::ErrorCode::NotFound,
            message: "gone".into(),
            retry_after: None,
        })
        .context("sending");
        assert_eq!(exit_code(&refused), ExitCode::from(2));
        assert_eq!(exit_code(&anyhow::anyhow!("other")), ExitCode::FAILURE);
    }
}
