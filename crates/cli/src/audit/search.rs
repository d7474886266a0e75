//! `portcullis audit search`: records matching filters, newest first.

use std::io::Write;
use std::process::ExitCode;

use portcullis_audit::search;

use super::filter::FilterArgs;
use super::render::{header, json_line, row, with_outcomes};
use super::time::now_micros;
use super::{fail, output_failed, stdout, StoreArgs};

#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Most records printed.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    limit: u64,
    /// One JSON object per line (seq, ts in µs, time, record and, for a
    /// statement, its outcome) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &SearchArgs) -> ExitCode {
    let (_, store) = match args.store.open() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut filter = match args.filter.to_filter(now_micros()) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    filter.limit = args.limit as usize;
    let found = match search::search(&store, &filter) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let shown = match with_outcomes(&store, found) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut out = stdout();
    let result = (|| -> std::io::Result<()> {
        if args.json {
            for s in &shown {
                writeln!(out, "{}", json_line(s))?;
            }
        } else {
            if shown.is_empty() {
                writeln!(out, "no records match")?;
                return Ok(());
            }
            writeln!(out, "{}", header())?;
            for s in &shown {
                writeln!(out, "{}", row(s))?;
            }
            if shown.len() as u64 == args.limit {
                writeln!(
                    out,
                    "(the {} newest shown; narrow the filters or raise --limit for more)",
                    args.limit
                )?;
            }
        }
        out.flush()
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output_failed(&e),
    }
}
