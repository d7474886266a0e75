//! Search filters on the command line, shared by `search` and `tail`.

use portcullis_audit::record::{Effect, RecordKind};
use portcullis_audit::search::Access;
use portcullis_audit::Filter;

use super::time::parse_instant;

#[derive(clap::Args, Clone, Default)]
pub struct FilterArgs {
    /// Only records of this user (the identity's subject).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Only records of this target, by the name clients connect with.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Only records of targets in this environment.
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
    /// Only records of this session (the proxy's session id).
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Only records at or after this time: RFC 3339 (2026-12-04T09:30:00Z),
    /// a date (2026-12-04, UTC) or an age (30d, 12h, 15m, 45s).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only statements that touched this table, schema-qualified as
    /// recorded (public.customers).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    table: Option<String>,
    /// With --table: only statements that touched this column of it.
    #[arg(long, value_name = "NAME", requires = "table")]
    column: Option<String>,
    /// Only statements that read the table or column (or, without --table,
    /// that read anything).
    #[arg(long, conflicts_with = "write")]
    read: bool,
    /// Only statements that wrote the table or column.
    #[arg(long)]
    write: bool,
    /// Only statements with this decision.
    #[arg(long, value_name = "DECISION", value_parser = parse_effect)]
    decision: Option<Effect>,
    /// Only statements with this fingerprint (the same for every statement
    /// that differs only in its literals).
    #[arg(long, value_name = "HEX")]
    fingerprint: Option<String>,
    /// Only statements whose outcome had this SQLSTATE, and connection
    /// attempts refused with it.
    #[arg(long, value_name = "CODE")]
    sqlstate: Option<String>,
    /// Only records whose stored JSON contains this text (case-sensitive;
    /// statement text is normalised: literals are placeholders).
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// Only records of this kind; repeat for several.
    #[arg(long = "kind", value_name = "KIND", value_parser = parse_kind)]
    kinds: Vec<RecordKind>,
}

fn parse_effect(s: &str) -> Result<Effect, String> {
    Ok(match s {
        "allowed" => Effect::Allowed,
        "denied" => Effect::Denied,
        "held" => Effect::Held,
        "masked" => Effect::Masked,
        _ => return Err("one of allowed, denied, held, masked".into()),
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
        _ => return Err("one of connection, statement, outcome, approval, reload, admin".into()),
    })
}

/// A relation as the trail records it: `schema.table`.
pub fn check_table(t: &str) -> Result<String, String> {
    match t.split_once('.') {
        Some((s, n)) if !s.is_empty() && !n.is_empty() => Ok(t.to_owned()),
        _ => Err(format!(
            "{t:?}: name the table with its schema, as the trail records it (public.{t})"
        )),
    }
}

impl FilterArgs {
    /// The library filter, with times taken relative to `now`.
    pub fn to_filter(&self, now: i64) -> Result<Filter, String> {
        let at = |t: &Option<String>| t.as_deref().map(|t| parse_instant(t, now)).transpose();
        Ok(Filter {
            kinds: self.kinds.clone(),
            subject: self.user.clone(),
            target: self.target.clone(),
            environment: self.environment.clone(),
            session_id: self.session.clone(),
            since: at(&self.since)?,
            until: at(&self.until)?,
            object: self.table.as_deref().map(check_table).transpose()?,
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
            ..Filter::default()
        })
    }
}
