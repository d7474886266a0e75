//! `portcullis audit search`, `who-read` and `tail`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use portcullis_audit::record::{Effect, Record, RecordKind};
use portcullis_audit::search::{Access, Filter};
use portcullis_audit::{search as find, Found, SqliteStore};

use super::render::{self, Format};
use super::time;
use super::StoreArg;

#[derive(clap::Args, Clone)]
pub struct Filters {
    /// Only records of this identity (subject).
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    environment: Option<String>,
    /// Only records of this session id.
    #[arg(long)]
    session: Option<String>,
    /// From this time on: 2026-12-04, 2026-12-04T10:00:00Z, or an age such as 30d, 12h, 15m.
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Statements that touched this table (schema.table, as recorded).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    table: Option<String>,
    /// ...and this column of it.
    #[arg(long, requires = "table")]
    column: Option<String>,
    /// Only statements that read (--read) or wrote (--write) it.
    #[arg(long, conflicts_with = "write")]
    read: bool,
    #[arg(long)]
    write: bool,
    /// allowed, denied, held or masked.
    #[arg(long, value_parser = parse_effect)]
    decision: Option<Effect>,
    /// Statements with this fingerprint.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Statements whose outcome had this SQLSTATE, and connections refused with it.
    #[arg(long)]
    sqlstate: Option<String>,
    /// Records whose JSON contains this text (case-sensitive; scans).
    #[arg(long)]
    text: Option<String>,
    /// Only this kind: connection, statement, outcome, approval, reload, admin.
    #[arg(long, value_parser = parse_kind)]
    kind: Vec<RecordKind>,
}

fn parse_effect(s: &str) -> Result<Effect, String> {
    Ok(match s {
        "allowed" => Effect::Allowed,
        "denied" => Effect::Denied,
        "held" => Effect::Held,
        "masked" => Effect::Masked,
        _ => return Err("allowed, denied, held or masked".into()),
    })
}

fn parse_kind(s: &str) -> Result<RecordKind, String> {
    Ok(match s {
        "connection" => RecordKind::Connection,
        "statement" => RecordKind::Statement,
        "outcome" => RecordKind::Outcome,
        "approval" => RecordKind::Approval,
        "reload" => RecordKind::Reload,
        "admin" => RecordKind::Admin,
        _ => return Err("connection, statement, outcome, approval, reload or admin".into()),
    })
}

impl Filters {
    fn filter(&self) -> Result<Filter, String> {
        let now = time::now_micros();
        Ok(Filter {
            kinds: self.kind.clone(),
            subject: self.user.clone(),
            target: self.target.clone(),
            environment: self.environment.clone(),
            session_id: self.session.clone(),
            since: self
                .since
                .as_deref()
                .map(|t| time::parse(t, now))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|t| time::parse(t, now))
                .transpose()?,
            object: self.table.clone(),
            column: self.column.clone(),
            access: if self.read {
                Some(Access::Read)
            } else if self.write {
                Some(Access::Write)
            } else {
                None
            },
            decision: self.decision,
            fingerprint: self.fingerprint.clone(),
            sqlstate: self.sqlstate.clone(),
            text: self.text.clone(),
            before_seq: None,
            limit: 0,
        })
    }
}

#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    filters: Filters,
    /// Most records to print (newest first).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per line ({"seq", "ts", "record"}) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn search(args: SearchArgs) -> Result<(), String> {
    let store = args.store.open()?;
    let mut filter = args.filters.filter()?;
    filter.limit = args.limit.max(1);
    let found = find(&store, &filter).map_err(|e| e.to_string())?;
    let format = if args.json {
        Format::Json
    } else {
        Format::Table
    };
    render::print(&store, &found, format)
}

#[derive(clap::Args)]
pub struct WhoReadArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The column, as schema.table.column (names as PostgreSQL stores them).
    #[arg(value_name = "SCHEMA.TABLE.COLUMN")]
    column: String,
    /// From this time on (default: 30d).
    #[arg(long, default_value = "30d")]
    since: String,
    #[arg(long)]
    until: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn who_read(args: WhoReadArgs) -> Result<(), String> {
    let mut parts = args.column.rsplitn(2, '.');
    let (column, table) = match (parts.next(), parts.next()) {
        (Some(c), Some(t)) if !c.is_empty() && t.contains('.') => (c.to_owned(), t.to_owned()),
        _ => return Err(format!("{:?}: give schema.table.column", args.column)),
    };
    let store = args.store.open()?;
    let now = time::now_micros();
    let filter = Filter {
        kinds: vec![RecordKind::Statement],
        object: Some(table),
        column: Some(column),
        access: Some(Access::Read),
        since: Some(time::parse(&args.since, now)?),
        until: args
            .until
            .as_deref()
            .map(|t| time::parse(t, now))
            .transpose()?,
        ..Filter::default()
    };
    // subject -> (statements, allowed, last time)
    let mut who: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
    for f in all(&store, filter)? {
        if let Record::Statement(s) = &f.record {
            let e = who.entry(s.identity.subject.clone()).or_default();
            e.0 += 1;
            if s.decision.effect != Effect::Denied && s.decision.effect != Effect::Held {
                e.1 += 1;
            }
            e.2 = e.2.max(f.ts_micros);
        }
    }
    if args.json {
        for (subject, (n, ran, last)) in &who {
            println!(
                "{}",
                serde_json::json!({"subject": subject, "statements": n, "ran": ran, "last": time::format(*last)})
            );
        }
        return Ok(());
    }
    if who.is_empty() {
        println!("nobody read {} in that time", args.column);
        return Ok(());
    }
    println!("{:<24} {:>10} {:>10}  last", "who", "statements", "ran");
    for (subject, (n, ran, last)) in &who {
        println!("{subject:<24} {n:>10} {ran:>10}  {}", time::format(*last));
    }
    Ok(())
}

/// Every record a filter finds, newest first, page by page.
fn all(store: &SqliteStore, mut filter: Filter) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    filter.limit = 1000;
    loop {
        let page = find(store, &filter).map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        filter.before_seq = Some(last.seq);
        out.extend(page);
    }
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    filters: Filters,
    /// How many of the newest records to print first.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    /// Keep printing records as they are written, until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// With --follow: stop after this long (30s, 5m), for scripts.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn tail(args: TailArgs) -> Result<(), String> {
    let store = args.store.open()?;
    let format = if args.json {
        Format::Json
    } else {
        Format::Table
    };
    let mut filter = args.filters.filter()?;
    filter.limit = args.lines.max(1);
    let mut found = find(&store, &filter).map_err(|e| e.to_string())?;
    found.reverse();
    let mut last = found
        .last()
        .map_or_else(|| newest_seq(&store), |f| Ok(f.seq))?;
    render::print(&store, &found, format)?;
    if !args.follow {
        return Ok(());
    }
    let stop = match &args.for_ {
        Some(d) => Some(
            Instant::now()
                + portcullis_config::Duration::parse(d)
                    .map_err(|e| format!("--for: {e}"))?
                    .0,
        ),
        None => None,
    };
    while stop.is_none_or(|s| Instant::now() < s) {
        std::thread::sleep(Duration::from_millis(250));
        let mut new = Vec::new();
        let mut page_filter = filter.clone();
        page_filter.limit = 1000;
        'pages: loop {
            let page = find(&store, &page_filter).map_err(|e| e.to_string())?;
            let full = page.len() == page_filter.limit;
            for f in page {
                if f.seq <= last {
                    break 'pages;
                }
                page_filter.before_seq = Some(f.seq);
                new.push(f);
            }
            if !full {
                break;
            }
        }
        new.reverse();
        if let Some(f) = new.last() {
            last = f.seq;
        }
        render::print(&store, &new, format)?;
    }
    Ok(())
}

/// The newest seq in the store (0 when empty).
fn newest_seq(store: &SqliteStore) -> Result<u64, String> {
    let f = find(
        store,
        &Filter {
            limit: 1,
            ..Filter::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(f.first().map_or(0, |f| f.seq))
}
