//! Statement records as OCSF events: class *Datastore Activity*
//! (`class_uid` 6005, category *Application Activity*, 6), schema version
//! [`OCSF_VERSION`], one JSON object per statement with its outcome
//! folded in.
//!
//! The mapping:
//!
//! | OCSF | from |
//! |---|---|
//! | `activity_id` | the statement's command (the outcome's command tag, else the text's first word): `SELECT`, `TABLE`, `VALUES`, `WITH` without writes → Query (4); `COPY`/`FETCH` reading → Read (1); `INSERT`, `MERGE`, `COPY` writing, `WITH` writing → Write (5); `UPDATE`, `ALTER` → Update (2); `DELETE`, `TRUNCATE`, `DROP` → Delete (7); `CREATE` → Create (6); anything else: Write if it writes, Query if it reads, otherwise Other (99) |
//! | `time` | the record's `ts`, in ms |
//! | `actor.user` | the identity's subject (`name`), groups; `type_id` 1 (User) for people, 99 (Other) for agents and services |
//! | `src_endpoint` | the client's address and port |
//! | `database` | the Portcullis target (`name`), relational (`type_id` 1) |
//! | `table` | the first object written, else the first read (`schema.table`); `type_id` 3 (Table) when there is one, 1 (Database) otherwise |
//! | `query_info` | the normalised text (`query_string`) and its fingerprint (`uid`) |
//! | `session.uid` | the proxy's session id |
//! | `status_id` | 2 (Failure) when the statement was denied or held, or its outcome carries a SQLSTATE (`status_code`); 1 (Success) when its outcome has none; 0 (Unknown) when no outcome was recorded |
//! | `disposition_id` | 1 (Allowed) for allowed and masked, 2 (Blocked) for denied, 99 (Other, "Held") for held |
//! | `duration` | the outcome's duration, in ms |
//! | `metadata` | product "Portcullis", `uid` `<log id>:<seq>`, `correlation_uid` the session id |
//! | `unmapped` | everything else: seq, log, environment, backend PID, statement number, protocol, decision (effect, policies, bundle hash, reason), every object and column read and written, masked columns, identity kind and on-behalf-of, TLS, the outcome's seq, command, rows, bytes, masked values and detector hits |
//!
//! Connection, approval, reload and admin records are not exported here.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::chain::{Entry, LogId};
use crate::record::{Effect, IdentityKind, Record, StatementOutcome, StatementRecord, Touched};
use crate::search::statement_outcome;
use crate::store::sqlite::rows::{self, Order};
use crate::store::sqlite::SqliteStore;
use crate::AuditError;

pub const OCSF_VERSION: &str = "1.3.0";
pub const CLASS_UID: u32 = 6005;
pub const CATEGORY_UID: u32 = 6;

/// An OCSF activity of class 6005.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Read = 1,
    Update = 2,
    Query = 4,
    Write = 5,
    Create = 6,
    Delete = 7,
    Other = 99,
}

impl Activity {
    pub fn name(self) -> &'static str {
        match self {
            Activity::Read => "Read",
            Activity::Update => "Update",
            Activity::Query => "Query",
            Activity::Write => "Write",
            Activity::Create => "Create",
            Activity::Delete => "Delete",
            Activity::Other => "Other",
        }
    }
}

/// The activity of a statement whose command is `command` (a command tag
/// or the text's first word, any case).
pub fn activity(command: &str, reads: &[Touched], writes: &[Touched]) -> Activity {
    let verb = command
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let writing = !writes.is_empty();
    let reading = !reads.is_empty();
    match verb.as_str() {
        "SELECT" | "TABLE" | "VALUES" if !writing => Activity::Query,
        "WITH" if !writing => Activity::Query,
        "COPY" | "FETCH" if !writing => Activity::Read,
        "INSERT" | "MERGE" | "COPY" | "WITH" | "SELECT" => Activity::Write,
        "UPDATE" | "ALTER" => Activity::Update,
        "DELETE" | "TRUNCATE" | "DROP" => Activity::Delete,
        "CREATE" => Activity::Create,
        _ if writing => Activity::Write,
        _ if reading => Activity::Query,
        _ => Activity::Other,
    }
}

/// The OCSF event for the statement record at `seq`, with its outcome
/// when one was recorded (and the outcome record's seq when it has one of
/// its own, see [`crate::search::statement_outcome`]).
pub fn statement_event(
    log: &LogId,
    seq: u64,
    ts_micros: i64,
    s: &StatementRecord,
    outcome: Option<(Option<u64>, &StatementOutcome)>,
) -> Value {
    let command = outcome
        .and_then(|(_, o)| o.command.clone())
        .unwrap_or_else(|| {
            s.text
                .as_str()
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        });
    let act = activity(&command, &s.reads, &s.writes);
    let activity_name = if act == Activity::Other && !command.is_empty() {
        command.clone()
    } else {
        act.name().to_owned()
    };

    let sqlstate = outcome.and_then(|(_, o)| o.sqlstate.as_ref().map(|s| s.as_str().to_owned()));
    let refused = matches!(s.decision.effect, Effect::Denied | Effect::Held);
    let (status_id, status) = if refused || sqlstate.is_some() {
        (2, "Failure")
    } else if outcome.is_some() {
        (1, "Success")
    } else {
        (0, "Unknown")
    };
    let (disposition_id, disposition) = match s.decision.effect {
        Effect::Allowed | Effect::Masked => (1, "Allowed"),
        Effect::Denied => (2, "Blocked"),
        Effect::Held => (99, "Held"),
    };

    let mut event = Map::new();
    let mut put = |k: &str, v: Value| {
        event.insert(k.to_owned(), v);
    };
    put("class_uid", json!(CLASS_UID));
    put("class_name", json!("Datastore Activity"));
    put("category_uid", json!(CATEGORY_UID));
    put("category_name", json!("Application Activity"));
    put("activity_id", json!(act as u32));
    put("activity_name", json!(activity_name));
    put("type_uid", json!(u64::from(CLASS_UID) * 100 + act as u64));
    put(
        "type_name",
        json!(format!("Datastore Activity: {activity_name}")),
    );
    put("time", json!(ts_micros.div_euclid(1000)));
    put("severity_id", json!(1));
    put("severity", json!("Informational"));
    put("status_id", json!(status_id));
    put("status", json!(status));
    if let Some(code) = &sqlstate {
        put("status_code", json!(code));
    }
    if let Some(reason) = &s.decision.reason {
        put("status_detail", json!(reason));
    }
    put("disposition_id", json!(disposition_id));
    put("disposition", json!(disposition));

    let identity = &s.identity;
    let mut user = json!({ "name": identity.subject });
    match identity.kind {
        IdentityKind::Human => {
            user["type_id"] = json!(1);
            user["type"] = json!("User");
        }
        IdentityKind::Agent => {
            user["type_id"] = json!(99);
            user["type"] = json!("Agent");
        }
        IdentityKind::Service => {
            user["type_id"] = json!(99);
            user["type"] = json!("Service");
        }
    }
    if !identity.groups.is_empty() {
        user["groups"] = Value::Array(
            identity
                .groups
                .iter()
                .map(|g| json!({ "name": g }))
                .collect(),
        );
    }
    put("actor", json!({ "user": user }));
    if let Some(addr) = s.source.address {
        put(
            "src_endpoint",
            json!({ "ip": addr.ip().to_string(), "port": addr.port() }),
        );
    }
    put(
        "database",
        json!({ "name": s.destination.target, "type_id": 1, "type": "Relational" }),
    );
    let table = s
        .writes
        .iter()
        .chain(&s.reads)
        .map(|t| t.object.as_str())
        .find(|o| o.contains('.') && !o.starts_with("database "));
    match table {
        Some(name) => {
            put("table", json!({ "name": name }));
            put("type_id", json!(3));
            put("type", json!("Table"));
        }
        None => {
            put("type_id", json!(1));
            put("type", json!("Database"));
        }
    }
    let mut query = json!({ "query_string": s.text.as_str() });
    if !s.fingerprint.is_empty() {
        query["uid"] = json!(s.fingerprint);
    }
    put("query_info", query);
    put("session", json!({ "uid": s.destination.session_id }));
    if let Some((_, o)) = outcome {
        put("duration", json!(o.duration_micros / 1000));
    }
    put(
        "metadata",
        json!({
            "version": OCSF_VERSION,
            "product": {
                "name": "Portcullis",
                "vendor_name": "Portcullis",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": format!("{log}:{seq}"),
            "correlation_uid": s.destination.session_id,
            "log_name": "audit",
        }),
    );
    let message = format!(
        "{} {} {}{}",
        identity.subject,
        s.decision.effect.as_str(),
        activity_name,
        table.map(|t| format!(" on {t}")).unwrap_or_default()
    );
    put("message", json!(message));

    let mut unmapped = Map::new();
    let mut keep = |k: &str, v: Value| {
        if !v.is_null() {
            unmapped.insert(k.to_owned(), v);
        }
    };
    keep("seq", json!(seq));
    keep("log", json!(log));
    keep("environment", json!(s.destination.environment));
    keep("backend_pid", json!(s.destination.backend_pid));
    keep("statement_id", json!(s.statement_id));
    keep("protocol", to_value(&s.protocol));
    keep("statement_name", json!(s.statement_name));
    keep("decision", to_value(&s.decision));
    keep("reads", to_value(&s.reads));
    keep("writes", to_value(&s.writes));
    if !s.masked_columns.is_empty() {
        keep("masked_columns", to_value(&s.masked_columns));
    }
    if !s.params.is_off() {
        keep("params", to_value(&s.params));
    }
    keep("identity_kind", to_value(&identity.kind));
    keep("on_behalf_of", json!(identity.on_behalf_of));
    keep("tls", to_value(&s.source.tls));
    if let Some((outcome_seq, o)) = outcome {
        let mut v = to_value(o);
        if let Some(seq) = outcome_seq {
            v["seq"] = json!(seq);
        }
        keep("outcome", v);
    }
    event.insert("unmapped".to_owned(), Value::Object(unmapped));
    Value::Object(event)
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Writes one OCSF event per statement record whose `ts` is in
/// `[from, to)` (µs; `None` open-ended), oldest first, as JSON lines.
/// Returns how many were written.
pub fn export(
    store: &SqliteStore,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let conn = store.conn();
    let from = from.unwrap_or(i64::MIN);
    let to = to.unwrap_or(i64::MAX);
    // ts never decreases along the chain: the window is a seq range.
    let lo = rows::first_at_or_after(conn, from)?.unwrap_or(u64::MAX);
    let hi = match rows::first_at_or_after(conn, to)? {
        Some(first) => first.saturating_sub(1),
        None => u64::MAX,
    };
    let mut written = 0;
    let write_err = |source| AuditError::Io {
        path: "output".into(),
        source,
    };
    rows::scan(conn, lo, hi, Order::Ascending, &mut |r| {
        if r.kind != "statement" || r.ts < from || r.ts >= to {
            return Ok(true);
        }
        let (seq, ts) = (r.seq, r.ts);
        let entry = Entry::parse(r.envelope).map_err(|e| AuditError::Corrupt {
            what: "record",
            why: format!("seq {seq} unreadable at column {}", e.column()),
        })?;
        let Record::Statement(s) = entry.record else {
            return Ok(true);
        };
        let outcome = statement_outcome(store, store.log(), seq, &s)?;
        let outcome = outcome.as_ref().map(|(at, o)| (*at, o));
        let event = statement_event(store.log(), seq, ts, &s, outcome);
        serde_json::to_writer(&mut *out, &event).map_err(|e| write_err(e.into()))?;
        out.write_all(b"\n").map_err(write_err)?;
        written += 1;
        Ok(true)
    })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::*;

    fn sample() -> StatementRecord {
        StatementRecord {
            identity: Identity {
                kind: IdentityKind::Human,
                subject: "alice".into(),
                groups: vec!["analysts".into()],
                on_behalf_of: None,
            },
            source: Source {
                address: Some("10.1.2.3:51544".parse().unwrap()),
                tls: None,
            },
            destination: Destination {
                target: "app".into(),
                environment: Some("production".into()),
                session_id: "s-1".into(),
                backend_pid: Some(4242),
            },
            statement_id: 3,
            protocol: Protocol::Simple,
            statement_name: None,
            text: NormalisedText::from_normalised("SELECT id, ssn FROM customers WHERE id = $1"),
            fingerprint: "ab12".into(),
            reads: vec![Touched {
                object: "public.customers".into(),
                columns: vec!["id".into(), "ssn".into()],
            }],
            writes: vec![],
            decision: Decision {
                effect: Effect::Allowed,
                policies: vec!["read-customers".into()],
                bundle_hash: "b3".into(),
                reason: None,
            },
            masked_columns: vec![],
            params: BindParams::Off,
            outcome: None,
        }
    }

    fn outcome(sqlstate: Option<&str>) -> OutcomeRecord {
        OutcomeRecord {
            statement_seq: 7,
            session_id: "s-1".into(),
            statement_id: 3,
            outcome: StatementOutcome {
                command: Some("SELECT".into()),
                rows: Some(2),
                bytes: 99,
                duration_micros: 4_500,
                sqlstate: sqlstate.map(|s| SqlState::new(s).unwrap()),
                masked_values: BTreeMap::new(),
                detector_hits: BTreeMap::new(),
            },
        }
    }

    #[test]
    fn a_select_with_its_outcome() {
        let log = LogId::new("L");
        let o = outcome(None);
        let e = statement_event(
            &log,
            7,
            1_733_350_000_123_456,
            &sample(),
            Some((Some(8), &o.outcome)),
        );
        assert_eq!(e["class_uid"], 6005);
        assert_eq!(e["category_uid"], 6);
        assert_eq!(e["activity_id"], 4);
        assert_eq!(e["activity_name"], "Query");
        assert_eq!(e["type_uid"], 600504);
        assert_eq!(e["time"], 1_733_350_000_123i64);
        assert_eq!(e["actor"]["user"]["name"], "alice");
        assert_eq!(e["actor"]["user"]["groups"][0]["name"], "analysts");
        assert_eq!(e["src_endpoint"]["ip"], "10.1.2.3");
        assert_eq!(e["src_endpoint"]["port"], 51544);
        assert_eq!(e["database"]["name"], "app");
        assert_eq!(e["table"]["name"], "public.customers");
        assert_eq!(e["type_id"], 3);
        assert_eq!(
            e["query_info"]["query_string"],
            "SELECT id, ssn FROM customers WHERE id = $1"
        );
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["status"], "Success");
        assert_eq!(e["disposition_id"], 1);
        assert_eq!(e["duration"], 4);
        assert_eq!(e["session"]["uid"], "s-1");
        assert_eq!(e["metadata"]["product"]["name"], "Portcullis");
        assert_eq!(e["metadata"]["version"], OCSF_VERSION);
        assert_eq!(e["metadata"]["uid"], "L:7");
        let u = &e["unmapped"];
        assert_eq!(u["seq"], 7);
        assert_eq!(u["environment"], "production");
        assert_eq!(u["backend_pid"], 4242);
        assert_eq!(u["decision"]["effect"], "allowed");
        assert_eq!(u["decision"]["policies"][0], "read-customers");
        assert_eq!(u["reads"][0]["columns"][1], "ssn");
        assert_eq!(u["outcome"]["seq"], 8);
        assert_eq!(u["outcome"]["rows"], 2);
        assert!(u.get("on_behalf_of").is_none());
    }

    #[test]
    fn failures_and_refusals() {
        let log = LogId::new("L");
        let o = outcome(Some("42P01"));
        let e = statement_event(&log, 7, 0, &sample(), Some((Some(8), &o.outcome)));
        assert_eq!(
            (e["status_id"].clone(), e["status_code"].clone()),
            (json!(2), json!("42P01"))
        );

        let mut s = sample();
        s.text = NormalisedText::from_normalised("DROP TABLE customers");
        s.reads.clear();
        s.writes = vec![Touched {
            object: "public.customers".into(),
            columns: vec![],
        }];
        s.decision.effect = Effect::Denied;
        s.decision.reason = Some("denied by policy".into());
        let e = statement_event(&log, 9, 0, &s, None);
        assert_eq!(e["activity_name"], "Delete");
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["status_detail"], "denied by policy");
        assert_eq!(e["disposition"], "Blocked");
        assert!(e.get("duration").is_none());

        s.decision.effect = Effect::Allowed;
        s.decision.reason = None;
        let e = statement_event(&log, 9, 0, &s, None);
        assert_eq!(
            (e["status_id"].clone(), e["status"].clone()),
            (json!(0), json!("Unknown"))
        );
    }

    #[test]
    fn activities() {
        let t = |o: &str| Touched {
            object: o.into(),
            columns: vec![],
        };
        let r = [t("public.a")];
        let none: [Touched; 0] = [];
        assert_eq!(activity("SELECT", &r, &none), Activity::Query);
        assert_eq!(activity("select", &none, &none), Activity::Query);
        assert_eq!(activity("COPY", &r, &none), Activity::Read);
        assert_eq!(activity("COPY", &none, &r), Activity::Write);
        assert_eq!(activity("INSERT", &none, &r), Activity::Write);
        assert_eq!(activity("WITH", &r, &r), Activity::Write);
        assert_eq!(activity("UPDATE", &r, &r), Activity::Update);
        assert_eq!(activity("DELETE", &none, &r), Activity::Delete);
        assert_eq!(activity("DROP TABLE", &none, &r), Activity::Delete);
        assert_eq!(activity("TRUNCATE", &none, &r), Activity::Delete);
        assert_eq!(activity("CREATE TABLE", &none, &r), Activity::Create);
        assert_eq!(activity("SET", &none, &none), Activity::Other);
        assert_eq!(activity("CALL", &r, &none), Activity::Query);
    }
}
