//! `portcullis policy`: check, explain, test and write Cedar policies
//! without running the proxy.
//!
//! - `check`: load policies as the proxy would and list them;
//! - `explain`: what the analysis finds in a statement, what the policies
//!   see, which of them decide, and what the client is told;
//! - `test`: run policy unit test files (`crates/policy/README.md`), with
//!   cases written as SQL analysed as the proxy analyses them;
//! - `init`: write the default bundle to a folder to start from.
//!
//! Nothing here connects to a database: names are resolved by the
//! search_path alone, as the proxy does before it has loaded a target's
//! catalog.
//!
//! Exit codes: 0 success, 1 a usage, configuration or policy problem (the
//! message is on standard error), 2 a policy test case failed.

mod analyzer;
mod check;
mod explain;
mod init;
mod render;
mod source;
mod unit_tests;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// Exit code of a run that could not be done: bad arguments, an unreadable
/// or invalid configuration, policies that do not load.
const EXIT_PROBLEM: u8 = 1;
/// Exit code of `policy test` when a case failed.
const EXIT_TEST_FAILED: u8 = 2;

/// The search_path statements are judged with when no session told the
/// proxy otherwise: PostgreSQL's default.
pub const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Load and validate policies; list each policy and any warnings.
    ///
    /// Policies come from the configuration's [policy] files, or the given
    /// files and directories, or the built-in default bundle.
    Check {
        /// Take the policies from this configuration file's [policy] table.
        #[arg(short, long, value_name = "CONFIG", conflicts_with = "paths")]
        config: Option<PathBuf>,
        /// Policy files (.cedar) or directories, read recursively in name
        /// order.
        #[arg(value_name = "FILES")]
        paths: Vec<PathBuf>,
    },
    /// Show how a statement is analysed and judged, and what the client
    /// would be told.
    Explain(explain::ExplainArgs),
    /// Run policy unit test files (TOML, see the policy README).
    ///
    /// Exit status: 0 when every case passes, 1 when a file cannot be used,
    /// 2 when a case fails.
    Test {
        /// Test the policies of this configuration file's [policy] table.
        #[arg(short, long, value_name = "CONFIG", conflicts_with = "policies")]
        config: Option<PathBuf>,
        /// A policy file or directory to test; repeat for several. Default:
        /// the built-in bundle.
        #[arg(long = "policies", value_name = "PATH")]
        policies: Vec<PathBuf>,
        /// Policy test files.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the default bundle and the schema into a folder to start your
    /// own policies from.
    Init {
        /// The folder to write (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { config, paths } => check::run(config.as_deref(), &paths),
        PolicyCommand::Explain(args) => explain::run(&args),
        PolicyCommand::Test {
            config,
            policies,
            files,
        } => unit_tests::run(config.as_deref(), &policies, &files),
        PolicyCommand::Init { dir, force } => init::run(&dir, force),
    }
}

/// Reports a problem that stops the command, the way the other commands do.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_PROBLEM)
}
