//! The `portcullis` command.

mod approvals;
mod audit;
mod demo;
mod discover;
mod keys;
mod logging;
mod login;
mod passwd;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_config::Config;
use portcullis_proxy::runtime::Runtime;
use portcullis_proxy::server::Server;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An identity-aware PostgreSQL proxy"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The configuration file, as `--config FILE` (`-c FILE`) or as the one
/// positional argument: both commands that read it accept both forms.
#[derive(clap::Args)]
struct ConfigArg {
    /// Path to the TOML configuration.
    #[arg(short, long = "config", value_name = "FILE", conflicts_with = "file")]
    config: Option<PathBuf>,
    /// Path to the TOML configuration (same as --config).
    #[arg(value_name = "FILE", required_unless_present = "config")]
    file: Option<PathBuf>,
}

impl ConfigArg {
    fn path(self) -> PathBuf {
        self.config.or(self.file).unwrap_or_default()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a configuration file (syntax, values, certificates, secrets).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print a SCRAM-SHA-256 verifier for a password, for a [[user]] entry.
    Passwd {
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        stdin: bool,
    },
    /// Start a throwaway PostgreSQL with a demo shop database and Portcullis
    /// in front of it, and print how to connect.
    Demo(demo::DemoArgs),
    /// Sample a target's rows and propose column classifications from their
    /// content, as a file of [[column]] entries to review and include
    /// ([masking] include).
    Discover(discover::DiscoverArgs),
    /// Check, explain, test and write Cedar policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Verify, search, follow and export the audit trail.
    #[command(subcommand)]
    Audit(Box<audit::AuditCommand>),
    /// Make, list and revoke the API keys agents and jobs log in with.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List, show, approve and deny statements held for approval.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Sign in at your identity provider (browser or device code) and
    /// cache the token Portcullis accepts as your password.
    Login(login::LoginArgs),
    /// Print your cached token, refreshed when about to expire.
    Token(login::TokenArgs),
    /// Run psql through Portcullis as you, with the token as the password.
    Psql(login::PsqlArgs),
    /// Print PGHOST, PGUSER, PGPASSWORD, ... as shell `export` lines:
    /// `eval "$(portcullis env TARGET)"`.
    Env(login::ConnectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config.path()),
        Command::CheckConfig { config } => check_config(&config.path()),
        Command::Passwd { stdin } => passwd::run(stdin),
        Command::Demo(args) => demo::run(args),
        Command::Discover(args) => discover::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Audit(command) => audit::run(*command),
        Command::Keys(command) => keys::run(command),
        Command::Approvals(command) => approvals::run(command),
        Command::Login(args) => login::login(args),
        Command::Token(args) => login::token(args),
        Command::Psql(args) => login::psql(args),
        Command::Env(args) => login::env(args),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let summary = format!(
        "{}: ok ({} listener(s), {} target(s), {} user(s))",
        file.display(),
        config.listeners.len(),
        config.targets.len(),
        config.users.len()
    );
    // Building the runtime loads certificates and reads upstream secrets, so
    // a file that passes here also starts.
    match Runtime::build(config) {
        Ok(_) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::from(1)
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    logging::init(config.server.log_format);
    let rt = match control_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot start");
                return ExitCode::from(1);
            }
        };
        serve(server).await;
        ExitCode::SUCCESS
    })
}

/// The runtime for listeners, the admin API and signals. Sessions run on
/// threads of their own (`[server] worker_threads`, see the proxy's
/// workers module), so one thread is enough here.
fn control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs a bound server until SIGTERM or SIGINT; SIGHUP reloads the file.
pub(crate) async fn serve(server: Server) {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = server.handle();
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP: reloading configuration");
                    let h = handle.clone();
                    // Reading files is blocking work.
                    let _ = tokio::task::spawn_blocking(move || h.reload_from_source()).await;
                }
            });
        }
        Err(e) => {
            warn!(error = %e, "cannot install SIGHUP handler; reload only through the admin API")
        }
    }
    let stop = async {
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupt received"),
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => info!("SIGTERM received"),
        }
    };
    server.run(stop).await;
}
