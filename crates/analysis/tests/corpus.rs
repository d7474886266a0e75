//! The statement corpus: every family the analysis must recognise, the
//! evasions that must not work, and the look-alikes that must stay
//! harmless. Each case lists key facts as tags (see `tags`): every listed
//! tag must be present; a tag written `!x` must be absent, and `!x=` means
//! no tag starting with `x=`.

use portcullis_analysis::*;

// The cases live in their own file so that the parser's unit tests can
// compare its two decodings on them too (src/parse/mod.rs).
include!("corpus/cases.rs");

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn filter_tag(f: Filter) -> String {
    snake(&format!("{f:?}"))
}

fn exec_prefix(e: Execution) -> &'static str {
    match e {
        Execution::Now => "",
        Execution::Deferred => "deferred-",
        Execution::Never => "never-",
    }
}

/// The key facts of an analysis, as flat strings.
fn tags(sql: &str) -> Vec<String> {
    let analysis = match analyze(sql) {
        Ok(a) => a,
        Err(e) => {
            let kind = match e {
                AnalysisError::Syntax { .. } => "syntax",
                AnalysisError::NulByte => "nul",
                AnalysisError::TooDeep => "too_deep",
                AnalysisError::Internal(_) => "internal",
            };
            return vec![format!("error={kind}")];
        }
    };
    let mut t = vec![format!("stmts={}", analysis.statement_count())];
    for s in &analysis.statements {
        t.push(format!("class={}", s.class));
        for a in &s.actions {
            let p = exec_prefix(a.execution);
            t.push(format!("{p}action={}", a.kind.class()));
            if let Some(f) = a.kind.filter() {
                t.push(format!("filter={}", filter_tag(f)));
                if !f.is_effective() {
                    t.push("unfiltered".into());
                }
            }
            match &a.kind {
                ActionKind::Select | ActionKind::Do => {}
                ActionKind::SelectInto { table } => t.push(format!("select_into={table}")),
                ActionKind::CreateTableAs {
                    table,
                    materialized,
                    with_data,
                } => {
                    t.push(format!("ctas={table}"));
                    if *materialized {
                        t.push("materialized".into());
                    }
                    if !with_data {
                        t.push("no_data".into());
                    }
                }
                ActionKind::Insert {
                    table,
                    on_conflict,
                    returning,
                } => {
                    t.push(format!("{p}insert={table}"));
                    match on_conflict {
                        Some(OnConflict::DoUpdate) => t.push("on_conflict=update".into()),
                        Some(OnConflict::DoNothing) => t.push("on_conflict=nothing".into()),
                        None => {}
                    }
                    if *returning {
                        t.push("returning".into());
                    }
                }
                ActionKind::Update {
                    table, returning, ..
                }
                | ActionKind::Delete {
                    table, returning, ..
                } => {
                    t.push(format!("{p}{}={table}", a.kind.class()));
                    if *returning {
                        t.push("returning".into());
                    }
                }
                ActionKind::Merge {
                    table,
                    clauses,
                    returning,
                    join,
                } => {
                    t.push(format!("merge={table}"));
                    t.push(format!("merge_join={}", filter_tag(*join)));
                    for c in clauses {
                        t.push(format!(
                            "merge_when={}_{}",
                            snake(&format!("{:?}", c.when)),
                            snake(&format!("{:?}", c.command))
                        ));
                    }
                    if *returning {
                        t.push("returning".into());
                    }
                }
                ActionKind::Copy {
                    table,
                    direction,
                    endpoint,
                } => {
                    let end = match endpoint {
                        CopyEndpoint::Client => "client",
                        CopyEndpoint::ServerFile(_) => "file",
                        CopyEndpoint::Program(_) => "program",
                    };
                    t.push(format!("copy={}:{end}", snake(&format!("{direction:?}"))));
                    if let Some(table) = table {
                        t.push(format!("copy_table={table}"));
                    }
                }
                ActionKind::Explain { analyze } => t.push(format!(
                    "explain={}",
                    if *analyze { "analyze" } else { "plain" }
                )),
                ActionKind::Truncate { tables, cascade } => {
                    for table in tables {
                        t.push(format!("truncate={table}"));
                    }
                    if *cascade {
                        t.push("cascade".into());
                    }
                }
                ActionKind::Drop {
                    object,
                    names,
                    cascade,
                } => {
                    for n in names {
                        t.push(format!("drop={object}:{n}"));
                    }
                    if *cascade {
                        t.push("cascade".into());
                    }
                }
                ActionKind::DropOwned { roles, cascade } => {
                    for r in roles {
                        t.push(format!("drop_owned={r}"));
                    }
                    if *cascade {
                        t.push("cascade".into());
                    }
                }
                ActionKind::Rename {
                    object,
                    name,
                    member,
                    new_name,
                } => {
                    let member = member
                        .as_deref()
                        .map(|m| format!("/{m}"))
                        .unwrap_or_default();
                    t.push(format!("rename={object}:{name}{member}->{new_name}"));
                }
                ActionKind::SetSchema {
                    object,
                    name,
                    new_schema,
                } => t.push(format!("set_schema={object}:{name}->{new_schema}")),
                ActionKind::AlterTable {
                    table,
                    command,
                    effect,
                    ..
                } => {
                    t.push(format!("alter_table={table}:{command}"));
                    t.push(format!("effect={}", snake(&format!("{effect:?}"))));
                }
                ActionKind::SchemaChange { statement }
                | ActionKind::Privileges { statement }
                | ActionKind::Session { statement }
                | ActionKind::Maintenance { statement }
                | ActionKind::Notification { statement }
                | ActionKind::Administration { statement }
                | ActionKind::Other { statement } => t.push(format!("stmt={statement}")),
                ActionKind::Prepare { name } => t.push(format!("prepare={name}")),
                ActionKind::Execute { name } => t.push(format!("execute={name}")),
                ActionKind::Deallocate { name } => {
                    t.push(format!("deallocate={}", name.as_deref().unwrap_or("all")))
                }
                ActionKind::Discard { target } => {
                    t.push(format!("discard={}", snake(&format!("{target:?}"))))
                }
                ActionKind::Transaction { kind } => {
                    t.push(format!("tx={}", snake(&format!("{kind:?}"))))
                }
                ActionKind::Cursor { statement, name } => {
                    t.push(format!("cursor={statement}:{name}"))
                }
                ActionKind::Lock { tables } => {
                    for table in tables {
                        t.push(format!("lock_table={table}"));
                    }
                }
                ActionKind::Call { procedure } => t.push(format!("call={procedure}")),
                ActionKind::Database { operation, name } => t.push(format!(
                    "database={}:{name}",
                    snake(&format!("{operation:?}"))
                )),
            }
        }
        if !s.unfiltered_modifications().is_empty() {
            t.push("has_unfiltered".into());
        }
        if s.modifies_data() {
            t.push("modifies".into());
        }
        for r in &s.relations {
            let a = r.access;
            for (flag, name) in [
                (a.read, "read"),
                (a.write, "write"),
                (a.alter, "alter"),
                (a.create, "create"),
                (a.lock, "lock"),
            ] {
                if flag {
                    t.push(format!("{name}={}", r.relation));
                }
            }
            if !r.include_descendants {
                t.push(format!("only={}", r.relation));
            }
        }
        for c in &s.columns {
            let rel = c
                .relation
                .as_ref()
                .map_or("?".to_owned(), ToString::to_string);
            let col = match &c.column {
                ColumnName::Named(n) => n.clone(),
                ColumnName::All => "*".into(),
            };
            if c.read {
                t.push(format!("col_read={rel}.{col}"));
            }
            if c.written {
                t.push(format!("col_write={rel}.{col}"));
            }
        }
        for f in &s.functions {
            t.push(format!(
                "{}fn={}/{}",
                exec_prefix(f.execution),
                f.name,
                f.args
            ));
        }
        for o in &s.operators {
            t.push(format!("op={o}"));
        }
        let late_catalog = ["evil".to_owned(), "pg_catalog".to_owned()];
        if s.is_opaque(&late_catalog, None) {
            t.push("opaque_with_late_pg_catalog".into());
        }
        for o in &s.opaque {
            t.push(format!(
                "{}opaque={}",
                exec_prefix(o.execution),
                snake(&format!("{:?}", o.kind))
            ));
        }
        for f in s.opaque_calls(&[], None) {
            t.push(format!("opaque_call={}", f.name));
        }
        if s.is_opaque(&[], None) {
            t.push("opaque_any".into());
        }
        for c in &s.capabilities {
            t.push(format!("{}cap={}", exec_prefix(c.execution), c.capability));
        }
        for st in &s.settings {
            let name = match &st.target {
                SettingTarget::Named(n) => n.clone(),
                SettingTarget::All => "all".into(),
                SettingTarget::Unknown => "unknown".into(),
            };
            t.push(format!("set={name}"));
            let value = match &st.value {
                SettingValue::Values(v) => v.join(","),
                SettingValue::Default => "default".into(),
                SettingValue::Unknown => "unknown".into(),
            };
            t.push(format!("setval={name}:{value}"));
            if st.scope == SettingScope::Transaction {
                t.push(format!("set_local={name}"));
            }
        }
    }
    t
}

#[test]
fn corpus() {
    assert!(
        CORPUS.len() >= 150,
        "corpus has {} statements",
        CORPUS.len()
    );
    let mut failures = Vec::new();
    for c in CORPUS {
        let got = tags(c.sql);
        for want in c.expect {
            let ok = match want.strip_prefix('!') {
                Some(absent) if absent.ends_with('=') => !got.iter().any(|t| t.starts_with(absent)),
                Some(absent) => !got.iter().any(|t| t == absent),
                None => got.iter().any(|t| t == want),
            };
            if !ok {
                failures.push(format!("{:?}: expected {want}\n    got {got:?}", c.sql));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_statements_are_distinct() {
    let mut seen = std::collections::HashSet::new();
    for c in CORPUS {
        assert!(seen.insert(c.sql), "duplicate corpus entry {:?}", c.sql);
    }
}

/// Every analysis serialises (the CLI's `policy explain` and the audit log
/// print facts as JSON).
#[test]
fn corpus_analyses_serialise() {
    for c in CORPUS {
        if let Ok(analysis) = analyze(c.sql) {
            let json = serde_json::to_value(&analysis).expect("serialises");
            assert_eq!(
                json["statements"].as_array().map(Vec::len),
                Some(analysis.statement_count()),
                "{}",
                c.sql
            );
        }
    }
}
