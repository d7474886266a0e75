//! `portcullis audit who-read`: who read a column, or a table, with counts
//! and when last; one command for the question auditors ask most.

use std::io::Write;
use std::process::ExitCode;

use portcullis_audit::search::{self, Access};
use portcullis_audit::Filter;
use serde_json::json;

use super::filter::check_table;
use super::time::{format_micros, now_micros, parse_instant};
use super::{fail, output_failed, stdout, StoreArgs};

#[derive(clap::Args)]
pub struct WhoReadArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The column, as schema.table.column (public.customers.ssn), or a
    /// whole table as schema.table.
    #[arg(value_name = "COLUMN")]
    what: String,
    /// Only reads at or after this time: RFC 3339, a date, or an age
    /// (30d, 12h, 15m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only reads before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only reads through this target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Only reads on targets in this environment.
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
    /// One JSON object per user instead of a table.
    #[arg(long)]
    json: bool,
}

/// `schema.table.column` → (`schema.table`, Some(column)); `schema.table`
/// → (`schema.table`, None).
fn split(what: &str) -> Result<(String, Option<String>), String> {
    let parts: Vec<&str> = what.split('.').collect();
    match parts.as_slice() {
        [s, t, c] if !c.is_empty() => {
            Ok((check_table(&format!("{s}.{t}"))?, Some((*c).to_owned())))
        }
        [_, _] => Ok((check_table(what)?, None)),
        _ => Err(format!(
            "{what:?}: give schema.table.column (public.customers.ssn) or schema.table"
        )),
    }
}

pub fn run(args: &WhoReadArgs) -> ExitCode {
    let (object, column) = match split(&args.what) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let now = now_micros();
    let at = |t: &Option<String>| t.as_deref().map(|t| parse_instant(t, now)).transpose();
    let (since, until) = match (at(&args.since), at(&args.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let (_, store) = match args.store.open() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let filter = Filter {
        object: Some(object),
        column,
        access: Some(Access::Read),
        since,
        until,
        target: args.target.clone(),
        environment: args.environment.clone(),
        ..Filter::default()
    };
    let subjects = match search::subjects(&store, &filter) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };

    let mut out = stdout();
    let result = (|| -> std::io::Result<()> {
        if args.json {
            for s in &subjects {
                let v = json!({
                    "user": s.subject,
                    "reads": s.allowed,
                    "refused": s.refused,
                    "last_seq": s.last_seq,
                    "last_ts": s.last_ts_micros,
                    "last_time": format_micros(s.last_ts_micros),
                });
                writeln!(out, "{v}")?;
            }
            return out.flush();
        }
        let period = match (since, until) {
            (None, None) => String::new(),
            (Some(s), None) => format!(" since {}", format_micros(s)),
            (None, Some(u)) => format!(" before {}", format_micros(u)),
            (Some(s), Some(u)) => format!(" from {} to {}", format_micros(s), format_micros(u)),
        };
        if subjects.is_empty() {
            writeln!(out, "nobody read {}{period}", args.what)?;
            return out.flush();
        }
        writeln!(out, "who read {}{period}:", args.what)?;
        let width = subjects
            .iter()
            .map(|s| s.subject.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}  {:<24}  LAST SEQ",
            "USER", "READS", "REFUSED", "LAST"
        )?;
        for s in &subjects {
            writeln!(
                out,
                "{:<width$}  {:>7}  {:>7}  {:<24}  {}",
                s.subject,
                s.allowed,
                s.refused,
                format_micros(s.last_ts_micros),
                s.last_seq
            )?;
        }
        writeln!(
            out,
            "READS: statements let through (allowed or masked); REFUSED: denied or held, not run."
        )?;
        out.flush()
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output_failed(&e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(
            super::split("public.customers.ssn").unwrap(),
            ("public.customers".to_owned(), Some("ssn".to_owned()))
        );
        assert_eq!(
            super::split("public.customers").unwrap(),
            ("public.customers".to_owned(), None)
        );
        assert!(super::split("customers").is_err());
        assert!(super::split("a.b.c.d").is_err());
    }
}
