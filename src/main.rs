//! `tau-portal`: the command line. Everything else lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tau_acuvim_portal::app;
use tau_acuvim_portal::config::{self, Config, Env};

/// Exit code for an invalid configuration (the message names the key).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failed startup step (database, migration, bootstrap, seed, bind).
const EXIT_STARTUP: u8 = 1;

/// Tau Acuvim Portal: power monitoring for Accuenergy Acuvim meters.
#[derive(Parser)]
#[command(name = "tau-portal", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal (the default): migrate, bootstrap, seed, then serve HTTP.
    Serve,
    /// Apply pending migrations and the TimescaleDB bootstrapper, then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().after_long_help(config::help_text()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };

    let env = Env::from_process();
    tau_acuvim_portal::telemetry::init(&env.log_filter());
    let config = match Config::from_env(&env) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            config
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(key = %e.key, "Invalid configuration: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => app::serve(config).await,
        Command::Migrate => app::migrate(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_cancelled() => {
            tracing::info!("Startup interrupted by a shutdown signal");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("Startup failed: {e}");
            ExitCode::from(EXIT_STARTUP)
        }
    }
}
