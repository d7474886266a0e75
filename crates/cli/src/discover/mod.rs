//! `portcullis discover`: proposes column classifications from sampled
//! rows, as a file a person reviews and the configuration includes
//! (`[masking] include`).
//!
//! The built-in dictionary classifies columns by name and comment; a
//! column called `notes` or `c1` that holds emails says nothing about it,
//! and its values are only found by content scanning, value by value and
//! without the class's strategy. Discover reads the target's catalog
//! exactly as the proxy does (its connection code, TLS and credentials,
//! the same classification), samples each unclassified text column, runs
//! the mask crate's detectors over the values, and proposes a class where
//! one is found in enough of them.
//!
//! Sampled values stay in memory only as long as the detectors read them:
//! what is kept is counts (`tally`), and the file is written from those.

mod render;
mod sample;
mod tally;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::BytesMut;
use portcullis_analysis::QualifiedName;
use portcullis_config::Config;
use portcullis_guard::CatalogSnapshot;
use portcullis_mask::Detectors;
use portcullis_proxy::masking::TargetMasking;
use portcullis_proxy::runtime::{Runtime, TargetRuntime};
use portcullis_proxy::upstream::{self, Upstream, UpstreamError};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use render::{ColumnReport, Report, Skipped};
use tally::{Basis, Finding, Known, Tally};

#[derive(clap::Args)]
pub struct DiscoverArgs {
    /// Path to the TOML configuration.
    #[arg(short, long = "config", value_name = "FILE")]
    config: PathBuf,
    /// The target to sample, by the name clients connect with.
    #[arg(short, long, value_name = "NAME")]
    target: String,
    /// Most non-null values sampled per column.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rows: u64,
    /// Least share of a column's sampled values that must hold one class
    /// for it to be proposed: a number from 0 (exclusive) to 1.
    #[arg(long, value_name = "P", default_value_t = 0.5, value_parser = parse_share)]
    min_share: f64,
    /// Write the file here instead of standard output.
    #[arg(short, long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long, requires = "out")]
    force: bool,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!(
            "{s:?} is not a share; give a number above 0 and at most 1, such as 0.5"
        )),
    }
}

#[derive(Debug, Error)]
pub enum DiscoverError {
    #[error("{0}")]
    Config(#[from] portcullis_config::ConfigError),
    #[error("{0}")]
    Runtime(#[from] portcullis_proxy::runtime::RuntimeError),
    #[error("no target is named {name:?}; the configuration has {known}")]
    UnknownTarget { name: String, known: String },
    #[error("target {target}: {error}")]
    Catalog { target: String, error: String },
    #[error("target {target}: {error}")]
    Upstream {
        target: String,
        error: UpstreamError,
    },
    #[error("unreadable answer from the server: {0}")]
    Unreadable(String),
    #[error("{} exists; give --force to replace it, or another --out", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Async(std::io::Error),
}

pub fn run(args: DiscoverArgs) -> ExitCode {
    match discover(&args) {
        Ok(report) => {
            let text = render::render(&report);
            if let Err(e) = write_out(args.out.as_deref(), args.force, &text) {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            eprintln!(
                "discover: target {}: sampled {} column(s) of {} relation(s); {} proposal(s){}",
                report.target,
                report.columns.len(),
                report.relations,
                report.proposals(),
                match &args.out {
                    Some(p) => format!(" written to {}", p.display()),
                    None => String::new(),
                }
            );
            if !report.skipped.is_empty() {
                eprintln!(
                    "discover: {} relation(s) or column(s) could not be sampled (listed at the end of the file)",
                    report.skipped.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads the catalog and samples the target, on a runtime of its own.
fn discover(args: &DiscoverArgs) -> Result<Report, DiscoverError> {
    // Refuse before connecting anywhere, so a run is not wasted.
    if let Some(out) = &args.out {
        if !args.force && out.exists() {
            return Err(DiscoverError::Exists(out.clone()));
        }
    }
    let mut config = Config::load(&args.config)?;
    // Discover classifies and never masks: it needs the classification
    // even where masking is off, and not the masking key (which the
    // environment running it may not hold).
    config.masking.enabled = true;
    config.masking.key_env = None;
    config.masking.key_file = None;
    let runtime = Runtime::build(config)?;
    let target = runtime
        .target(&args.target)
        .ok_or_else(|| DiscoverError::UnknownTarget {
            name: args.target.clone(),
            known: match runtime.target_names().as_slice() {
                [] => "none with a name of its own".to_owned(),
                names => format!("{names:?}"),
            },
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DiscoverError::Async)?;
    rt.block_on(sample_target(&target, args.rows, args.min_share))
}

async fn sample_target(
    target: &Arc<TargetRuntime>,
    rows: u64,
    min_share: f64,
) -> Result<Report, DiscoverError> {
    let name = target.config.name.clone();
    let masking = target
        .masking
        .as_deref()
        .ok_or_else(|| DiscoverError::Catalog {
            target: name.clone(),
            error: "masking could not be set up for it".into(),
        })?;
    let snapshot = portcullis_proxy::catalog::load(target)
        .await
        .map_err(|error| DiscoverError::Catalog {
            target: name.clone(),
            error,
        })?;
    let upstream_err = |error| DiscoverError::Upstream {
        target: name.clone(),
        error,
    };
    let params = [
        ("client_encoding".to_owned(), "UTF8".to_owned()),
        (
            "application_name".to_owned(),
            "portcullis discover".to_owned(),
        ),
    ];
    let mut up = upstream::connect(target, target.own_login(), &params)
        .await
        .map_err(upstream_err)?;
    let result = sample_all(&mut up, &snapshot, masking, rows, min_share).await;
    let mut bye = BytesMut::new();
    portcullis_wire::encode::terminate(&mut bye);
    let _ = up.stream.write_all(&bye).await;
    let (relations, columns, skipped) = result.map_err(|e| match e {
        Failure::Upstream(error) => upstream_err(error),
        Failure::Other(e) => e,
    })?;
    Ok(Report {
        target: name,
        rows,
        min_share,
        max_value_bytes: sample::MAX_VALUE_BYTES,
        relations,
        columns,
        skipped,
    })
}

enum Failure {
    Upstream(UpstreamError),
    Other(DiscoverError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Upstream(e)
    }
}

/// What one statement's failure means: a refusal of that statement is
/// noted and sampling goes on; anything else (the connection) ends it.
fn refused(e: UpstreamError) -> Result<String, Failure> {
    match e {
        UpstreamError::Query { code, .. } => Ok(code),
        other => Err(Failure::Upstream(other)),
    }
}

type Sampled = (usize, Vec<ColumnReport>, Vec<Skipped>);

async fn sample_all(
    up: &mut Upstream,
    snapshot: &CatalogSnapshot,
    masking: &TargetMasking,
    rows: u64,
    min_share: f64,
) -> Result<Sampled, Failure> {
    upstream::simple_query(&mut up.stream, &mut up.leftover, sample::SESSION_SETUP).await?;
    let sets =
        upstream::simple_query(&mut up.stream, &mut up.leftover, sample::RELATIONS_QUERY).await?;
    let (relations, text_types) = sample::parse_relations(&sets).map_err(Failure::Other)?;
    let detectors = Detectors::new();
    let mut columns = Vec::new();
    let mut skipped = Vec::new();
    for relation in &relations {
        let qualified = QualifiedName::new(Some(&relation.schema), &relation.name);
        let text_columns: Vec<_> = snapshot
            .columns_of(&qualified)
            .filter(|c| text_types.contains(&c.type_oid))
            .collect();
        if text_columns.is_empty() {
            continue;
        }
        let probe = sample::probe_sql(relation);
        if let Err(e) = upstream::simple_query(&mut up.stream, &mut up.leftover, &probe).await {
            let code = refused(e)?;
            skipped.push(Skipped {
                what: format!("{}.{}", relation.schema, relation.name),
                reason: sample::reason(&code),
                sqlstate: code,
            });
            continue;
        }
        for column in text_columns {
            let sql = sample::sample_sql(relation, &column.name, rows);
            let answer = upstream::simple_query(&mut up.stream, &mut up.leftover, &sql).await;
            let sets = match answer {
                Ok(sets) => sets,
                Err(e) => {
                    let code = refused(e)?;
                    skipped.push(Skipped {
                        what: format!("{}.{}.{}", relation.schema, relation.name, column.name),
                        reason: sample::reason(&code),
                        sqlstate: code,
                    });
                    continue;
                }
            };
            let mut tally = Tally::default();
            for row in sets.iter().flatten() {
                match (row.first(), row.get(1)) {
                    (Some(Some(value)), _) => tally.scan(&detectors, value),
                    (Some(None), Some(Some(over))) if over == "true" => tally.oversized += 1,
                    _ => {}
                }
            }
            let known = known(masking, &qualified, column);
            columns.push(ColumnReport {
                schema: relation.schema.clone(),
                table: relation.name.clone(),
                column: column.name.clone(),
                finding: Finding::of(known, &tally, min_share),
                oversized: tally.oversized,
            });
        }
    }
    Ok((relations.len(), columns, skipped))
}

/// What the configuration and the catalog already say about a column. The
/// configuration's word comes first, as when the proxy classifies; a
/// comment that says the column is not sensitive is a decision too.
fn known(
    masking: &TargetMasking,
    relation: &QualifiedName,
    column: &portcullis_guard::catalog::CatalogColumn,
) -> Known {
    match masking.configured_class(relation, &column.name) {
        Some(Some(class)) => return Known::Classified(class, Basis::Configuration),
        Some(None) => return Known::NotSensitive(Basis::Configuration),
        None => {}
    }
    if let Some(class) = column.class {
        return Known::Classified(class, Basis::Catalog);
    }
    if column
        .comment
        .as_deref()
        .is_some_and(portcullis_mask::dictionary::declared_not_sensitive)
    {
        return Known::NotSensitive(Basis::Catalog);
    }
    Known::Unclassified
}

/// Writes the file, or prints it. An existing file is replaced only with
/// `force`; without it the file is created new, so a file that appeared
/// while sampling is not overwritten either.
fn write_out(out: Option<&Path>, force: bool, text: &str) -> Result<(), DiscoverError> {
    let Some(path) = out else {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|error| DiscoverError::Write {
                path: PathBuf::from("<stdout>"),
                error,
            });
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let written = options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(DiscoverError::Exists(path.to_path_buf()))
        }
        Err(error) => Err(DiscoverError::Write {
            path: path.to_path_buf(),
            error,
        }),
        Ok(()) => Ok(()),
    }
}
