//! `tau-portal`: the command line. Everything else lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tau_acuvim_portal::app;
use tau_acuvim_portal::config::{self, Config, Env, Purpose};
use tau_acuvim_portal::error::Chain;
use tau_acuvim_portal::modbus::simulator::cli::SimulateArgs;
use tau_acuvim_portal::provision::ProvisionArgs;

/// mimalloc instead of glibc's malloc: with thousands of poller tasks allocating small buffers
/// across threads, glibc's arenas kept growing the resident set while the heap itself stayed
/// flat (measured with heaptrack and scripts/bench-poller.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opts the process out of transparent huge pages before anything is allocated (see
/// [`tune_allocator`]): a constructor that runs before mimalloc's own (a numbered `.init_array`
/// entry runs before the unnumbered ones) and before Rust's runtime allocates.
#[used]
#[expect(unsafe_code, reason = "a constructor entry needs its link section")]
#[unsafe(link_section = ".init_array.00101")]
static NO_HUGE_PAGES_BEFORE_MAIN: extern "C" fn() = no_huge_pages;

#[expect(unsafe_code, reason = "prctl is a C function")]
extern "C" fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's flag. A
    // kernel without it (before 3.15) refuses, and the process keeps its huge pages.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// `mi_option_purge_delay` of the bundled mimalloc 3 (`mimalloc.h`, `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes the allocator for the command about to run.
///
/// Services return freed memory to the OS at once (purge delay 0). By default mimalloc purges 10
/// ms later, but only when the freeing thread allocates again, so an idle portal kept argon2's
/// 19 MiB working memory of the last sign-in resident (idle RSS ~40 MB instead of ~25 MB).
/// Services also get no transparent huge pages: mimalloc advises them for its arena, and with a
/// small heap each 2 MiB page was mostly empty: idle RSS 24 MB with them, 14.6 MB without
/// (measured on a release build, issue 21). mimalloc maps its arena before `main` runs, so its own
/// `allow_thp` option would come too late: the process opts out of THP in a constructor instead
/// (`prctl`, [`NO_HUGE_PAGES_BEFORE_MAIN`]), and `rollup` opts back in here.
///
/// `rollup` never purges and keeps huge pages: a rebuild frees and allocates a window's readings
/// (tens of MB) over and over, and faulting fresh pages back in each time was a third of its CPU
/// time (perf); the command exits when done.
#[expect(unsafe_code, reason = "mimalloc's option setter and prctl are C functions")]
fn tune_allocator(bulk: bool) {
    // SAFETY: sets a process-wide integer option; mimalloc reads it on every purge decision.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, if bulk { -1 } else { 0 }) }
    if bulk {
        // SAFETY: as in `no_huge_pages`.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    }
}

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
    /// Recompute the 15-minute energy intervals of a time range from the raw readings.
    Rollup {
        /// Start of the range: RFC 3339 (2026-01-01T00:00:00Z) or a date (2026-01-01, UTC midnight).
        #[arg(long, value_parser = parse_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the range (exclusive), same forms [default: now, and on to what the job has done].
        #[arg(long, value_parser = parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this device (its externalId) [default: every device].
        #[arg(long)]
        device: Option<String>,
    },
    /// Exit 0 when the portal on this host answers /health (the container's HEALTHCHECK).
    Healthcheck,
    /// Write a ready .env for a new customer stack, with fresh random secrets.
    Provision(ProvisionArgs),
    /// Serve simulated Acuvim II meters over Modbus TCP until SIGTERM or Ctrl-C.
    Simulate(SimulateArgs),
    /// Licence keys: create the Admin portal's signing key.
    Licence {
        #[command(subcommand)]
        command: LicenceCommand,
    },
}

#[derive(Subcommand)]
enum LicenceCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) for the Admin portal's
    /// License__SigningKey_FILE and print its public key for the customer portals' License__PublicKey.
    Keygen {
        /// Where to write the private key (never over an existing file without --force).
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().after_long_help(config::help_text()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tune_allocator(matches!(cli.command, Some(Command::Rollup { .. })));

    let env = Env::from_process();
    // Commands that need no configuration and print for a human, not for the log pipeline.
    match cli.command {
        Some(Command::Healthcheck) => return healthcheck(&env).await,
        Some(Command::Provision(args)) => return provision(&args),
        Some(Command::Simulate(args)) => return simulate(&args, &env).await,
        Some(Command::Licence { command: LicenceCommand::Keygen { out, force } }) => return keygen(&out, force),
        _ => {}
    }
    tau_acuvim_portal::telemetry::init(&env.log_filter());
    // `migrate` and `rollup` seed no admin: they must not need its password.
    let purpose = match cli.command {
        Some(Command::Migrate | Command::Rollup { .. }) => Purpose::Maintenance,
        _ => Purpose::Serve,
    };
    let config = match Config::read(&env, purpose) {
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

    let result = match cli.command {
        Some(Command::Migrate) => app::migrate(config).await,
        Some(Command::Rollup { from, to, device }) => app::rollup(config, from, to, device).await,
        _ => app::serve(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_cancelled() => {
            tracing::info!("Startup interrupted by a shutdown signal");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("Startup failed: {}", Chain(&e));
            ExitCode::from(EXIT_STARTUP)
        }
    }
}

/// An RFC 3339 time, or a date taken as midnight UTC.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("'{text}' is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a date (2026-01-01)"))
}

async fn healthcheck(env: &Env) -> ExitCode {
    let result = match config::listen_address(env) {
        Ok(addr) => tau_acuvim_portal::health::probe(addr).await,
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn simulate(args: &SimulateArgs, env: &Env) -> ExitCode {
    use tau_acuvim_portal::modbus::simulator::cli;
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            // The subcommand's own usage in the message, with the full name (`tau-portal simulate`).
            let mut command = Cli::command();
            command.build();
            let mut command = command.find_subcommand("simulate").cloned().unwrap_or(command);
            command.error(clap::error::ErrorKind::ValueValidation, message).exit()
        }
    };
    // Plain logs on stderr: stdout carries the meter lines a script or test reads.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(env.log_filter()).unwrap_or_else(|_| "info".into()))
        .init();
    match cli::run(args, config, app::shutdown_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &std::path::Path, force: bool) -> ExitCode {
    use tau_acuvim_portal::licence::keys::{SigningKey, public_key_pem};
    let written = SigningKey::generate().and_then(|(key, pem)| {
        tau_acuvim_portal::provision::write(out, &pem, force).map_err(|e| e.to_string())?;
        Ok(key.public_key())
    });
    match written {
        Ok(public) => {
            eprintln!(
                "Wrote the signing key to {} (mode 0600). Mount it on the Admin portal only, as License__SigningKey_FILE.",
                out.display()
            );
            eprintln!("The customer portals verify licences with this public key (License__PublicKey):");
            println!("{}", public.text());
            eprint!("{}", public_key_pem(&public));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provision(args: &ProvisionArgs) -> ExitCode {
    use tau_acuvim_portal::provision::{self, ProvisionError};
    let written = provision::render(args).and_then(|text| match &args.output {
        Some(path) => provision::write(path, &text, args.force).map(|()| Some(path)),
        None => {
            print!("{text}");
            Ok(None)
        }
    });
    match written {
        Ok(path) => {
            if let Some(path) = path {
                eprintln!("Wrote {} (mode 0600).", path.display());
            }
            if args.traefik_address.is_none() {
                eprintln!(
                    "Next: set TRAEFIK_ADDRESS to Traefik's IP on traefik-public (docker inspect traefik -f \
                     '{{{{(index .NetworkSettings.Networks \"traefik-public\").IPAddress}}}}'), then:"
                );
            } else {
                eprintln!("Next:");
            }
            eprintln!("  docker compose --env-file .env -f /path/to/portal/docker-compose.prod.yml up -d --wait");
            ExitCode::SUCCESS
        }
        Err(
            e @ (ProvisionError::Code(_)
            | ProvisionError::Host(_)
            | ProvisionError::Email(_)
            | ProvisionError::Text { .. }),
        ) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
