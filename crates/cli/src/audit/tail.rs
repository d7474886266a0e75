//! `portcullis audit tail`: the latest records, oldest of them first, and
//! with `--follow` the new ones as the proxy commits them, by polling the
//! store for records after the last one printed. It runs until
//! interrupted, or for `--for` or until `--max-records` for scripts.
//!
//! Seqs count per log: a shared store (one log per node) is followed
//! with one cursor per log, and what each poll finds is printed in time
//! order across them.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use portcullis_audit::{search, Filter, Found, LogId, Store};

use super::filter::FilterArgs;
use super::render::{header, json_line, row, with_outcomes, Shown};
use super::time::{now_micros, parse_duration};
use super::{fail, output_failed, stdout, StoreArgs};

/// Records read per query while catching up.
const PAGE: usize = 1000;

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// How many of the latest records to print first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    lines: usize,
    /// Keep printing new records as they are written.
    #[arg(short, long)]
    follow: bool,
    /// How often to look for new records.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after printing this many records in all.
    #[arg(long, value_name = "N")]
    max_records: Option<u64>,
    /// Stop following after this long (250ms, 10s, 5m).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    run_for: Option<Duration>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &TailArgs) -> ExitCode {
    let started = Instant::now();
    let (_, store) = match args.store.open() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let filter = match args.filter.to_filter(now_micros()) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut printer = Printer {
        out: stdout(),
        json: args.json,
        printed: 0,
        max: args.max_records,
        header_done: false,
    };

    // The latest records; following then starts after the newest record
    // of each log in the store, matching or not.
    let mut cursors = match newest_seqs(&store, &HashMap::new()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args.lines > 0 {
        let first = Filter {
            limit: args.lines,
            ..filter.clone()
        };
        let mut found = match search::search(&store, &first) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        // Committed after the cursors were taken: printed when followed.
        found.retain(|f| cursors.get(&f.log).is_some_and(|c| f.seq <= *c));
        found.reverse();
        match printer.print(&store, found) {
            Ok(true) => {}
            Ok(false) => return ExitCode::SUCCESS,
            Err(e) => return e,
        }
    }
    if let Err(e) = printer.out.flush() {
        return output_failed(&e);
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }

    loop {
        if let Some(d) = args.run_for {
            let left = d.saturating_sub(started.elapsed());
            if left.is_zero() {
                return ExitCode::SUCCESS;
            }
            std::thread::sleep(args.interval.min(left));
        } else {
            std::thread::sleep(args.interval);
        }
        let newest = match newest_seqs(&store, &cursors) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut found = Vec::new();
        for (log, &seq) in &newest {
            let last = cursors.get(log).copied().unwrap_or(0);
            if seq <= last {
                continue;
            }
            match after(&store, &filter, log, last, seq) {
                Ok(f) => found.extend(f),
                Err(e) => return fail(e),
            }
        }
        cursors = newest;
        found.sort_by(|a, b| {
            (a.ts_micros, a.log.as_str(), a.seq).cmp(&(b.ts_micros, b.log.as_str(), b.seq))
        });
        match printer.print(&store, found) {
            Ok(true) => {}
            Ok(false) => return ExitCode::SUCCESS,
            Err(e) => return e,
        }
        if let Err(e) = printer.out.flush() {
            return output_failed(&e);
        }
    }
}

/// The newest seq of each log in the store (logs that appeared since
/// `known` start at 0).
fn newest_seqs(store: &Store, known: &HashMap<LogId, u64>) -> Result<HashMap<LogId, u64>, String> {
    let logs: Vec<LogId> = match store {
        Store::Sqlite(s) => vec![s.log().clone()],
        Store::Postgres(p) => p
            .logs()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|l| l.log)
            .collect(),
    };
    let mut out = HashMap::new();
    for log in logs {
        let f = Filter {
            limit: 1,
            log: Some(log.clone()),
            ..Filter::default()
        };
        let newest = search::search(store, &f)
            .map_err(|e| e.to_string())?
            .first()
            .map_or(0, |f| f.seq);
        out.insert(
            log.clone(),
            newest.max(known.get(&log).copied().unwrap_or(0)),
        );
    }
    Ok(out)
}

/// The records of `log` matching `filter` with seqs in `(last, newest]`,
/// oldest first, paging back from `newest` (search answers newest first).
fn after(
    store: &Store,
    filter: &Filter,
    log: &LogId,
    last: u64,
    newest: u64,
) -> Result<Vec<Found>, String> {
    let mut all = Vec::new();
    let mut before = newest + 1;
    loop {
        let page = search::search(
            store,
            &Filter {
                log: Some(log.clone()),
                after_seq: Some(last),
                before_seq: Some(before),
                limit: PAGE,
                ..filter.clone()
            },
        )
        .map_err(|e| e.to_string())?;
        let n = page.len();
        if let Some(oldest) = page.last() {
            before = oldest.seq;
        }
        all.extend(page);
        if n < PAGE {
            break;
        }
    }
    all.reverse();
    Ok(all)
}

struct Printer {
    out: std::io::StdoutLock<'static>,
    json: bool,
    printed: u64,
    max: Option<u64>,
    header_done: bool,
}

impl Printer {
    /// Prints records in order; `Ok(false)` once `max` is reached.
    fn print(&mut self, store: &Store, found: Vec<Found>) -> Result<bool, ExitCode> {
        let shown: Vec<Shown> = with_outcomes(store, found).map_err(fail)?;
        for s in &shown {
            if self.max.is_some_and(|m| self.printed >= m) {
                return Ok(false);
            }
            let line = if self.json {
                json_line(s)
            } else {
                if !self.header_done {
                    writeln!(self.out, "{}", header()).map_err(|e| output_failed(&e))?;
                    self.header_done = true;
                }
                row(s)
            };
            writeln!(self.out, "{line}").map_err(|e| output_failed(&e))?;
            self.printed += 1;
        }
        Ok(self.max.is_none_or(|m| self.printed < m))
    }
}
