//! The statement corpus: every family the analysis must recognise, the
//! evasions that must not work, and the look-alikes that must stay
//! harmless. Each case lists key facts as tags (see `tags`): every listed
//! tag must be present; a tag written `!x` must be absent, and `!x=` means
//! no tag starting with `x=`.

use portcullis_analysis::*;

struct Case {
    sql: &'static str,
    expect: &'static [&'static str],
}

const fn case(sql: &'static str, expect: &'static [&'static str]) -> Case {
    Case { sql, expect }
}

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

const CORPUS: &[Case] = &[
    // ---- Queries and false positives that must stay harmless ----
    case("SELECT 1", &["stmts=1", "class=select", "!opaque_any", "!cap=", "!modifies"]),
    case("SELECT 'DROP TABLE x'", &["class=select", "!action=drop", "!opaque_any", "!cap="]),
    case("-- DROP TABLE x\nSELECT 1", &["stmts=1", "class=select", "!action=drop"]),
    case("/* DROP TABLE x; */ SELECT 2", &["stmts=1", "class=select", "!action=drop"]),
    case("SELECT $$DROP TABLE x$$", &["class=select", "!action=drop"]),
    case("SELECT $tag$; DELETE FROM t; $tag$", &["stmts=1", "class=select", "!action=delete"]),
    case("SELECT \"drop\" FROM t", &["class=select", "col_read=t.drop", "!action=drop"]),
    case("SELECT drop.x FROM t AS \"drop\"", &["class=select", "col_read=t.x"]),
    case(
        "SELECT now(), lower(name), count(*) FROM t",
        &["class=select", "fn=now/0", "fn=lower/1", "fn=count/0", "col_read=t.name", "!opaque_any", "!cap="],
    ),
    case(
        "SELECT jsonb_build_object('id', id, 'name', name) FROM users WHERE id = $1",
        &["fn=jsonb_build_object/4", "col_read=users.id", "col_read=users.name", "!opaque_any"],
    ),
    case(
        "SELECT coalesce(a, b), greatest(a, 1), nullif(a, 0), CASE WHEN a THEN 1 END FROM t",
        &["!opaque_any", "col_read=t.a", "col_read=t.b"],
    ),
    case(
        "SELECT date_trunc('day', created_at), to_char(now(), 'YYYY'), extract(year FROM now()) FROM t",
        &["!opaque_any", "fn=pg_catalog.extract/2"],
    ),
    case("SELECT substring(name FROM 1 FOR 3), trim(name), position('a' IN name) FROM t", &["!opaque_any"]),
    case("SELECT random(), gen_random_uuid(), clock_timestamp(), currval('s')", &["!opaque_any"]),
    case("SELECT string_agg(name, ',' ORDER BY name) FROM t GROUP BY g HAVING count(*) > 1", &["!opaque_any"]),
    case("SELECT row_number() OVER (PARTITION BY g ORDER BY id) FROM t", &["!opaque_any"]),
    case("SELECT * FROM users", &["class=select", "read=users", "col_read=users.*"]),
    case("SELECT u.* , o.id FROM users u JOIN orders o ON o.user_id = u.id", &[
        "col_read=users.*",
        "col_read=orders.id",
        "col_read=orders.user_id",
        "col_read=users.id",
    ]),
    case("SELECT id FROM a, b", &["col_read=?.id", "read=a", "read=b"]),
    case("SELECT public.users.email FROM public.users", &["read=public.users", "col_read=public.users.email"]),
    case("SELECT * FROM ONLY parent", &["only=parent"]),
    case("TABLE users", &["class=select", "read=users"]),
    case("VALUES (1, 'a'), (2, 'b')", &["class=select", "!read="]),
    case(
        "SELECT * FROM (SELECT id FROM users WHERE active) AS s WHERE s.id > 3",
        &["read=users", "col_read=users.id", "col_read=users.active", "!col_read=?.id"],
    ),
    case(
        "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 10)",
        &["read=users", "read=orders", "col_read=orders.user_id", "col_read=orders.total"],
    ),
    case("SELECT * FROM generate_series(1, 10) g", &["fn=generate_series/2", "!opaque_any", "!read="]),
    case(
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT count(*) FROM recent",
        &["read=orders", "!read=recent", "!action=delete"],
    ),
    case(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
        &["!read=r"],
    ),
    case("WITH users AS (SELECT 1 AS id) SELECT * FROM users", &["!read=users"]),
    case("WITH x AS (SELECT 1) SELECT * FROM public.x", &["read=public.x"]),
    case("SELECT * FROM t FOR UPDATE", &["class=select", "read=t"]),
    case("SELECT 1; SELECT 2; SELECT 3", &["stmts=3"]),
    case("", &["stmts=0"]),
    case(";;", &["stmts=0"]),
    case("-- nothing", &["stmts=0"]),
    // ---- DML and effective WHERE ----
    case("INSERT INTO t (a, b) VALUES (1, 2)", &[
        "class=insert",
        "insert=t",
        "write=t",
        "col_write=t.a",
        "col_write=t.b",
        "modifies",
    ]),
    case("INSERT INTO t VALUES (1)", &["col_write=t.*"]),
    case("INSERT INTO t SELECT * FROM s", &["write=t", "read=s", "col_read=s.*", "col_write=t.*"]),
    case(
        "INSERT INTO t (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = t.n + EXCLUDED.n RETURNING id",
        &["on_conflict=update", "returning", "col_write=t.n", "col_read=t.n", "col_read=t.id", "read=t"],
    ),
    case("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", &["on_conflict=nothing"]),
    case("INSERT INTO t (id) VALUES (nextval('t_id_seq'))", &["fn=nextval/1", "opaque_call=nextval", "opaque_any"]),
    case("INSERT INTO t (v) VALUES ((SELECT pg_read_file('/etc/passwd')))", &["cap=server_files"]),
    case("UPDATE t SET a = 1 WHERE id = 5", &["class=update", "filter=restrictive", "!unfiltered", "col_write=t.a", "col_read=t.id"]),
    case("UPDATE t SET a = 1", &["filter=absent", "unfiltered", "has_unfiltered"]),
    case("UPDATE t SET a = 1 WHERE true", &["filter=tautology", "unfiltered"]),
    case("UPDATE t SET a = 1 WHERE 1=1", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE 'a'='a'", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE id = id", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE x IS NOT NULL OR x IS NULL", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE NOT false", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE 1 < 2", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE id = 3 OR true", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE name LIKE '%'", &["filter=tautology"]),
    case("UPDATE t SET a = 1 WHERE $1", &["filter=row_independent", "unfiltered"]),
    case("UPDATE t SET a = 1 WHERE CURRENT OF c", &["filter=current_of", "!unfiltered"]),
    case("UPDATE t SET a = b FROM s WHERE s.id = t.id", &["filter=restrictive", "read=s", "col_read=s.id", "col_read=t.id"]),
    case("UPDATE t SET (a, b) = (SELECT x, y FROM s WHERE s.id = t.id) WHERE t.id = 1", &[
        "col_write=t.a",
        "col_write=t.b",
        "read=s",
    ]),
    case("UPDATE t SET a = 1 WHERE id = 1 RETURNING *", &["returning", "col_read=t.*"]),
    case("DELETE FROM t WHERE id = $1", &["class=delete", "delete=t", "filter=restrictive"]),
    case("DELETE FROM t", &["filter=absent", "has_unfiltered"]),
    case("DELETE FROM t WHERE TRUE", &["filter=tautology"]),
    case("dElEtE fRoM t wHeRe 1 = 1", &["class=delete", "filter=tautology"]),
    case("DELETE FROM t WHERE false", &["filter=contradiction", "!unfiltered"]),
    case("DELETE FROM t USING s WHERE s.id = t.sid", &["filter=restrictive", "read=s"]),
    case("DELETE FROM t WHERE EXISTS (SELECT 1 FROM s WHERE s.flag)", &["filter=row_independent"]),
    case("DELETE FROM ONLY t WHERE id = 1", &["only=t"]),
    case(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)",
        &[
            "class=merge",
            "merge=t",
            "merge_join=restrictive",
            "merge_when=matched_update",
            "merge_when=not_matched_by_target_insert",
            "!unfiltered",
            "col_write=t.v",
            "col_write=t.id",
            "read=s",
        ],
    ),
    case("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", &["merge_join=tautology", "unfiltered"]),
    case(
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        &["merge_when=not_matched_by_source_delete", "unfiltered"],
    ),
    case(
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE AND t.archived THEN DELETE",
        &["!unfiltered"],
    ),
    // ---- Nested actions ----
    case("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", &[
        "class=select",
        "action=delete",
        "delete=t",
        "unfiltered",
        "!read=d",
    ]),
    case("WITH d AS (DELETE FROM t) SELECT 1", &["action=delete", "delete=t", "unfiltered"]),
    case("WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING id) INSERT INTO log SELECT id FROM u", &[
        "class=insert",
        "action=update",
        "update=t",
        "insert=log",
    ]),
    case("WITH m AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE RETURNING t.id) SELECT * FROM m", &[
        "action=merge",
        "unfiltered",
    ]),
    case("SELECT (WITH d AS (DELETE FROM t RETURNING 1) SELECT 1)", &["action=delete"]),
    case("EXPLAIN DELETE FROM t", &["class=explain", "explain=plain", "never-action=delete", "never-delete=t"]),
    case("EXPLAIN ANALYZE DELETE FROM t", &["explain=analyze", "action=delete", "!never-action=delete"]),
    case("EXPLAIN (ANALYZE) DELETE FROM t", &["explain=analyze", "action=delete"]),
    case("EXPLAIN (ANALYZE true, BUFFERS) UPDATE t SET a = 1", &["explain=analyze", "action=update"]),
    case("EXPLAIN (ANALYZE false) DELETE FROM t", &["explain=plain", "never-action=delete"]),
    case("EXPLAIN (ANALYZE off) DELETE FROM t", &["explain=plain"]),
    case("EXPLAIN SELECT * FROM t", &["explain=plain", "never-action=select", "read=t"]),
    case("COPY (DELETE FROM t RETURNING *) TO STDOUT", &["class=copy", "copy=to:client", "action=delete"]),
    case("COPY (SELECT * FROM t) TO STDOUT", &["copy=to:client", "action=select", "read=t"]),
    case("CREATE TABLE t2 AS SELECT * FROM t", &[
        "class=create_table_as",
        "ctas=t2",
        "create=t2",
        "read=t",
        "action=select",
        "modifies",
    ]),
    case("CREATE TABLE t2 AS SELECT * FROM t WITH NO DATA", &["no_data", "never-action=select"]),
    case("CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", &["class=create_table_as", "materialized"]),
    case("SELECT * INTO t2 FROM t", &["class=create_table_as", "select_into=t2", "create=t2", "read=t"]),
    case("SELECT * INTO TEMP t2 FROM t", &["select_into=pg_temp.t2"]),
    case("PREPARE p AS DELETE FROM t", &["class=prepare", "prepare=p", "deferred-action=delete", "deferred-delete=t"]),
    case("PREPARE q (int) AS SELECT * FROM t WHERE id = $1", &["prepare=q", "deferred-action=select"]),
    case("EXECUTE p", &["class=execute", "execute=p"]),
    case("EXECUTE p(1, now())", &["execute=p", "fn=now/0"]),
    case("DEALLOCATE p", &["class=deallocate", "deallocate=p"]),
    case("DEALLOCATE ALL", &["deallocate=all"]),
    case("DISCARD ALL", &["class=session", "discard=all", "cap=identity_reset", "set=all"]),
    case("DISCARD PLANS", &["discard=plans", "!cap="]),
    case(
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM audit",
        &["class=schema_change", "opaque=rule_definition", "deferred-action=delete", "deferred-delete=audit", "alter=t"],
    ),
    case(
        "CREATE RULE r AS ON UPDATE TO t WHERE NEW.x > 0 DO INSTEAD NOTHING",
        &["opaque=rule_definition", "col_read=t.x"],
    ),
    case(
        "CREATE TRIGGER tr BEFORE UPDATE ON t FOR EACH ROW WHEN (OLD.v IS DISTINCT FROM NEW.v) EXECUTE FUNCTION f()",
        &["class=schema_change", "opaque=trigger_definition", "alter=t", "col_read=t.v"],
    ),
    case(
        "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW WHEN (pg_read_file('x') IS NOT NULL) EXECUTE FUNCTION f()",
        &["deferred-cap=server_files"],
    ),
    case("DECLARE c CURSOR FOR SELECT * FROM t", &["class=cursor", "deferred-action=select", "read=t"]),
    case("FETCH 10 FROM c", &["class=cursor"]),
    case("CLOSE c", &["class=cursor"]),
    // ---- Every DROP form ----
    case("DROP TABLE t", &["class=drop", "drop=table:t", "alter=t"]),
    case("DROP TABLE IF EXISTS s.a, b CASCADE", &["drop=table:s.a", "drop=table:b", "cascade", "alter=s.a"]),
    case("DROP SCHEMA app CASCADE", &["drop=schema:app", "cascade"]),
    case("DROP TYPE mood CASCADE", &["drop=type:mood", "cascade"]),
    case("DROP VIEW v CASCADE", &["drop=view:v", "cascade", "alter=v"]),
    case("DROP MATERIALIZED VIEW mv", &["drop=materialized view:mv"]),
    case("DROP INDEX CONCURRENTLY i", &["drop=index:i"]),
    case("DROP SEQUENCE s", &["drop=sequence:s"]),
    case("DROP FUNCTION f(int, text)", &["drop=function:f/2"]),
    case("DROP PROCEDURE p", &["drop=procedure:p"]),
    case("DROP TRIGGER tr ON t", &["drop=trigger:t.tr", "alter=t"]),
    case("DROP POLICY p ON t", &["drop=policy:t.p"]),
    case("DROP EXTENSION pgcrypto", &["drop=extension:pgcrypto"]),
    case("DROP DATABASE prod", &["class=drop", "drop=database:prod"]),
    case("DROP DATABASE prod WITH (FORCE)", &["drop=database:prod"]),
    case("DROP ROLE alice, bob", &["drop=role:alice", "drop=role:bob"]),
    case("DROP USER carol", &["drop=role:carol"]),
    case("DROP OWNED BY alice CASCADE", &["class=drop", "drop_owned=alice", "cascade"]),
    case("DROP TABLESPACE ts", &["drop=tablespace:ts"]),
    case("DROP DOMAIN d", &["drop=domain:d"]),
    case("DROP FOREIGN TABLE ft", &["drop=foreign table:ft"]),
    case("DROP SERVER srv CASCADE", &["drop=server:srv"]),
    case("DROP SUBSCRIPTION sub", &["drop=subscription:sub", "cap=foreign_data"]),
    case("DROP USER MAPPING FOR bob SERVER srv", &["class=drop", "cap=foreign_data"]),
    // ---- Every rename form ----
    case("ALTER TABLE t RENAME TO t_old", &["class=rename", "rename=table:t->t_old", "alter=t"]),
    case("ALTER TABLE t RENAME COLUMN a TO b", &["class=rename", "rename=column:t/a->b"]),
    case("ALTER TABLE t RENAME CONSTRAINT c1 TO c2", &["rename=constraint:t/c1->c2"]),
    case("ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'", &["class=rename", "rename=enum value:mood/sad->unhappy"]),
    case("ALTER TYPE mood RENAME TO feeling", &["class=rename", "rename=type:mood->feeling"]),
    case("ALTER TYPE addr RENAME ATTRIBUTE zip TO postcode", &["class=rename"]),
    case("ALTER SCHEMA app RENAME TO app2", &["rename=schema:app->app2"]),
    case("ALTER INDEX i RENAME TO j", &["rename=index:i->j"]),
    case("ALTER VIEW v RENAME COLUMN a TO b", &["class=rename"]),
    case("ALTER TRIGGER tr ON t RENAME TO tr2", &["rename=trigger:t/tr->tr2"]),
    case("ALTER DATABASE prod RENAME TO prod_old", &["rename=database:prod->prod_old"]),
    case("ALTER ROLE alice RENAME TO alicia", &["class=rename"]),
    case("ALTER FUNCTION f(int) RENAME TO g", &["class=rename"]),
    case("ALTER TABLE t SET SCHEMA archive", &["class=rename", "set_schema=table:t->archive", "alter=t"]),
    case("ALTER FUNCTION f() SET SCHEMA archive", &["class=rename", "set_schema=function:f/0->archive"]),
    case("ALTER TYPE mood SET SCHEMA archive", &["set_schema=type:mood->archive"]),
    // ---- TRUNCATE ----
    case("TRUNCATE a, s.b", &["class=truncate", "truncate=a", "truncate=s.b", "write=a", "write=s.b", "modifies"]),
    case("TRUNCATE TABLE ONLY a RESTART IDENTITY CASCADE", &["truncate=a", "cascade", "only=a"]),
    // ---- ALTER TABLE sub-commands ----
    case("ALTER TABLE t DROP COLUMN c", &["class=alter_table", "alter_table=t:AT_DropColumn", "effect=destroys_data", "col_write=t.c"]),
    case("ALTER TABLE t ALTER COLUMN c TYPE bigint", &["alter_table=t:AT_AlterColumnType", "effect=rewrites_data"]),
    case("ALTER TABLE t ALTER COLUMN c TYPE int USING length(c)", &["effect=rewrites_data", "col_read=t.c", "fn=length/1"]),
    case("ALTER TABLE p DETACH PARTITION p2024", &["alter_table=p:AT_DetachPartition", "effect=destroys_data", "alter=p2024"]),
    case("ALTER TABLE t DROP CONSTRAINT t_pkey", &["effect=weakens_integrity"]),
    case("ALTER TABLE t ALTER COLUMN c DROP NOT NULL", &["effect=weakens_integrity"]),
    case("ALTER TABLE t NO INHERIT parent", &["effect=destroys_data"]),
    case("ALTER TABLE t ADD COLUMN d int DEFAULT 0, DROP COLUMN e", &["alter_table=t:AT_AddColumn", "effect=schema_only", "effect=destroys_data"]),
    case("ALTER TABLE t SET UNLOGGED", &["effect=rewrites_data"]),
    case("ALTER TABLE t ADD COLUMN id2 uuid DEFAULT gen_random_uuid()", &["effect=schema_only", "fn=gen_random_uuid/0"]),
    case("ALTER TABLE t ADD COLUMN x int DEFAULT pg_read_file('f')::int", &["cap=server_files"]),
    // ---- Other schema changes ----
    case("CREATE TABLE t (id serial PRIMARY KEY, v text DEFAULT lower('X'))", &["class=schema_change", "create=t", "!opaque_any"]),
    case("CREATE TEMP TABLE tt (id int)", &["create=pg_temp.tt"]),
    case("CREATE TABLE child (LIKE parent) INHERITS (parent)", &["create=child", "alter=parent"]),
    case("CREATE TABLE o (uid int REFERENCES users(id))", &["create=o", "alter=users"]),
    case("CREATE INDEX CONCURRENTLY i ON t (lower(email))", &["class=schema_change", "alter=t", "col_read=t.email"]),
    case("CREATE VIEW v AS SELECT id FROM users", &["create=v", "read=users", "deferred-action=select"]),
    case("CREATE SCHEMA app CREATE TABLE app_t (id int)", &["class=schema_change", "create=app_t"]),
    case("CREATE SEQUENCE s", &["class=schema_change"]),
    case("ALTER SEQUENCE s RESTART", &["class=schema_change"]),
    case("COMMENT ON TABLE t IS 'x'", &["class=schema_change"]),
    case("CREATE TYPE mood AS ENUM ('a', 'b')", &["class=schema_change"]),
    case("ALTER TYPE mood ADD VALUE 'c'", &["class=schema_change"]),
    case("CREATE POLICY p ON t USING (owner = current_user)", &["class=schema_change", "alter=t", "col_read=t.owner"]),
    case("GRANT SELECT ON t TO alice", &["class=privileges", "alter=t"]),
    case("REVOKE ALL ON SCHEMA public FROM PUBLIC", &["class=privileges"]),
    case("GRANT admin TO alice", &["class=privileges"]),
    case("CREATE ROLE r LOGIN SUPERUSER", &["class=privileges"]),
    case("ALTER TABLE t OWNER TO bob", &["class=alter_table", "alter_table=t:AT_ChangeOwner"]),
    case("VACUUM FULL t", &["class=maintenance"]),
    case("ANALYZE t", &["class=maintenance"]),
    case("REINDEX TABLE t", &["class=maintenance"]),
    case("REFRESH MATERIALIZED VIEW mv", &["class=maintenance", "write=mv"]),
    case("CLUSTER t USING i", &["class=maintenance"]),
    case("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", &["class=lock", "lock_table=t", "lock=t"]),
    case("LISTEN ch", &["class=notification"]),
    case("NOTIFY ch, 'x'", &["class=notification"]),
    case("BEGIN", &["class=transaction", "tx=begin"]),
    case("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", &["tx=begin"]),
    case("COMMIT", &["tx=commit"]),
    case("ROLLBACK", &["tx=rollback"]),
    case("SAVEPOINT s1", &["tx=savepoint"]),
    case("ROLLBACK TO SAVEPOINT s1", &["tx=rollback_to"]),
    case("RELEASE SAVEPOINT s1", &["tx=release"]),
    case("SET CONSTRAINTS ALL DEFERRED", &["class=transaction"]),
    // ---- Opaque code ----
    case("DO $$ BEGIN DELETE FROM t; END $$", &["class=do", "opaque=do_block", "opaque_any", "!action=delete"]),
    case("DO LANGUAGE plpgsql 'BEGIN NULL; END'", &["opaque=do_block"]),
    case("DO LANGUAGE plpython3u $$ import os $$", &["opaque=do_block", "cap=server_program"]),
    case(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ DELETE FROM t RETURNING 1 $$",
        &["class=schema_change", "opaque=function_definition"],
    ),
    case(
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM t; SELECT 1; END",
        &["opaque=function_definition", "deferred-action=delete", "deferred-delete=t"],
    ),
    case("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$", &["opaque=function_definition"]),
    case("CREATE FUNCTION f() RETURNS void LANGUAGE plperlu AS $$ $$", &["deferred-cap=server_program"]),
    case("ALTER FUNCTION f() STABLE", &["class=schema_change", "opaque=function_definition"]),
    case("CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()", &["opaque=trigger_definition"]),
    case("CALL p(1, now())", &["class=call", "call=p", "opaque=procedure_call", "fn=now/0", "!fn=p/2"]),
    case("CALL app.cleanup()", &["call=app.cleanup", "opaque=procedure_call"]),
    case("SELECT my_func(1)", &["opaque_call=my_func", "opaque_any"]),
    case("SELECT app.helper(id) FROM t", &["opaque_call=app.helper"]),
    case("SELECT nextval('seq')", &["opaque_call=nextval"]),
    case("SELECT setval('seq', 1)", &["opaque_call=setval"]),
    case("SELECT pg_sleep(10)", &["opaque_call=pg_sleep"]),
    case("SELECT query_to_xml('DELETE FROM t RETURNING 1', true, false, '')", &["opaque=dynamic_sql"]),
    case("SELECT table_to_xml('secrets', true, false, '')", &["opaque=dynamic_sql"]),
    case("SELECT 1 ### 2", &["opaque=unknown_operator"]),
    // The lexer splits `+++` into `+` and two unary `+`: all built-in.
    case("SELECT 1 +++ 2", &["!opaque="]),
    case("SELECT 1 OPERATOR(public.+) 2", &["opaque=unknown_operator"]),
    case("SELECT 1 OPERATOR(pg_catalog.+) 2", &["!opaque=unknown_operator"]),
    case("SELECT a || b, j -> 'k', j ->> 'k', x @> y FROM t", &["!opaque_any"]),
    case("CREATE EXTENSION pgcrypto", &["opaque=extension", "!cap="]),
    case("CREATE EXTENSION dblink", &["opaque=extension", "cap=foreign_data"]),
    case("ALTER EXTENSION postgis UPDATE", &["opaque=extension"]),
    // ---- Dangerous capabilities ----
    case("COPY t TO '/tmp/out.csv'", &["copy=to:file", "cap=server_files", "read=t", "col_read=t.*"]),
    case("COPY t FROM '/tmp/in.csv'", &["copy=from:file", "cap=server_files", "write=t", "modifies"]),
    case("COPY t FROM PROGRAM 'curl http://x'", &["copy=from:program", "cap=server_program"]),
    case("COPY (SELECT 1) TO PROGRAM 'sh'", &["cap=server_program"]),
    case("COPY t (a, b) FROM STDIN", &["copy=from:client", "!cap=", "col_write=t.a", "col_write=t.b"]),
    case("COPY t TO STDOUT WITH (FORMAT csv)", &["copy=to:client", "!cap="]),
    case("SELECT pg_read_file('/etc/passwd')", &["cap=server_files"]),
    case("SELECT pg_read_binary_file('/etc/passwd')", &["cap=server_files"]),
    case("SELECT * FROM pg_ls_dir('.')", &["cap=server_files"]),
    case("SELECT pg_stat_file('postgresql.conf')", &["cap=server_files"]),
    case("SELECT lo_import('/etc/passwd')", &["cap=server_files"]),
    case("SELECT lo_export(1234, '/tmp/x')", &["cap=server_files"]),
    case("SELECT * FROM dblink('host=evil', 'SELECT 1') AS r(x int)", &["cap=foreign_data", "opaque=dynamic_sql"]),
    case("SELECT dblink_exec('host=evil', 'DROP TABLE t')", &["cap=foreign_data"]),
    case("CREATE SERVER srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'evil')", &["cap=foreign_data"]),
    case("CREATE FOREIGN DATA WRAPPER w", &["cap=foreign_data"]),
    case("CREATE FOREIGN TABLE ft (id int) SERVER srv", &["cap=foreign_data", "create=ft"]),
    case("IMPORT FOREIGN SCHEMA public FROM SERVER srv INTO local", &["cap=foreign_data"]),
    case("CREATE USER MAPPING FOR CURRENT_USER SERVER srv OPTIONS (user 'u')", &["cap=foreign_data"]),
    case("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", &["cap=foreign_data"]),
    case("SET ROLE admin", &["class=session", "cap=identity_change", "set=role", "setval=role:admin"]),
    case("SET LOCAL ROLE admin", &["cap=identity_change", "set_local=role"]),
    case("SET SESSION AUTHORIZATION 'postgres'", &["cap=identity_change", "set=session_authorization"]),
    case("SET \"role\" TO admin", &["cap=identity_change"]),
    case("SET \"ROLE\" TO admin", &["cap=identity_change"]),
    case("RESET ROLE", &["cap=identity_reset", "!cap=identity_change", "setval=role:default"]),
    case("SET ROLE NONE", &["cap=identity_reset", "!cap=identity_change"]),
    case("RESET SESSION AUTHORIZATION", &["cap=identity_reset"]),
    case("SET SESSION AUTHORIZATION DEFAULT", &["cap=identity_reset"]),
    case("SELECT set_config('role', 'admin', false)", &["cap=identity_change", "set=role", "fn=set_config/3"]),
    case("SELECT set_config('ROLE', 'admin', true)", &["cap=identity_change", "set_local=role"]),
    case("SELECT set_config('session_authorization', 'postgres', false)", &["cap=identity_change"]),
    case("SELECT set_config(name, 'x', false) FROM t", &["cap=identity_change", "cap=silenced_safeguards", "set=unknown"]),
    case("ALTER ROLE alice SET search_path = evil", &["cap=permanent_session_change", "!set=search_path"]),
    case("ALTER ROLE alice IN DATABASE prod SET role = admin", &["cap=permanent_session_change", "!cap=identity_change"]),
    case("ALTER DATABASE prod SET session_replication_role = replica", &[
        "cap=permanent_session_change",
        "!cap=silenced_safeguards",
    ]),
    case("ALTER SYSTEM SET max_connections = 10", &["class=administration", "cap=server_administration", "!set="]),
    case("LOAD 'auto_explain'", &["class=administration", "cap=server_administration"]),
    case("PREPARE TRANSACTION 'x'", &["tx=prepare", "cap=server_administration"]),
    case("COMMIT PREPARED 'x'", &["tx=commit_prepared", "cap=server_administration"]),
    case("ROLLBACK PREPARED 'x'", &["cap=server_administration"]),
    case("CHECKPOINT", &["cap=server_administration"]),
    case("SELECT pg_terminate_backend(123)", &["cap=server_administration"]),
    case("SELECT pg_reload_conf()", &["cap=server_administration"]),
    case("CREATE TABLESPACE ts LOCATION '/data/ts'", &["cap=server_files"]),
    case("ALTER TABLE t DISABLE TRIGGER ALL", &["cap=silenced_safeguards", "effect=silences_safeguards"]),
    case("ALTER TABLE t DISABLE TRIGGER audit_tr", &["cap=silenced_safeguards"]),
    case("ALTER TABLE t ENABLE REPLICA TRIGGER audit_tr", &["cap=silenced_safeguards"]),
    case("ALTER TABLE t DISABLE ROW LEVEL SECURITY", &["cap=silenced_safeguards"]),
    case("ALTER TABLE t ENABLE TRIGGER audit_tr", &["!cap="]),
    case("ALTER EVENT TRIGGER et DISABLE", &["cap=silenced_safeguards"]),
    case("SET session_replication_role = replica", &["cap=silenced_safeguards", "set=session_replication_role"]),
    case("SET session_replication_role TO origin", &["!cap="]),
    case("SELECT set_config('session_replication_role', 'replica', false)", &["cap=silenced_safeguards"]),
    // ---- Settings that matter to the analysis ----
    case("SET search_path = app, public", &["set=search_path", "setval=search_path:app,public", "!cap="]),
    case("SET search_path TO \"App\", '$user'", &["setval=search_path:App,$user"]),
    case("SET SCHEMA 'app'", &["set=search_path", "setval=search_path:app"]),
    case("SET LOCAL search_path = app", &["set_local=search_path"]),
    case("RESET search_path", &["setval=search_path:default"]),
    case("SET search_path TO DEFAULT", &["setval=search_path:default"]),
    case("RESET ALL", &["set=all", "!cap="]),
    case("SELECT set_config('search_path', 'evil, public', false)", &["set=search_path", "setval=search_path:evil, public"]),
    case("SET standard_conforming_strings = off", &["set=standard_conforming_strings", "setval=standard_conforming_strings:off"]),
    case("SET client_encoding = 'SJIS'", &["set=client_encoding", "setval=client_encoding:SJIS"]),
    case("SET NAMES 'GBK'", &["set=client_encoding"]),
    case("SET TIME ZONE 'UTC'", &["set=timezone"]),
    case("SET statement_timeout = 5000", &["setval=statement_timeout:5000"]),
    case("SET TRANSACTION READ WRITE", &["class=session"]),
    case("SHOW search_path", &["class=session", "!set="]),
    // ---- Evasions ----
    case("/* harmless */ DROP /* really */ TABLE t", &["class=drop", "drop=table:t"]),
    case("DrOp TaBlE t", &["class=drop", "drop=table:t"]),
    case("DROP TABLE \"Users\"", &["drop=table:Users"]),
    case("DROP TABLE U&\"\\0075sers\"", &["drop=table:users"]),
    case("DELETE FROM U&\"d\\0061ta\"", &["delete=data", "unfiltered"]),
    case("SELECT \"pg_read_file\"('/etc/passwd')", &["cap=server_files"]),
    case("SELECT PG_READ_FILE('/etc/passwd')", &["cap=server_files"]),
    case("SELECT pg_catalog.pg_read_file('/etc/passwd')", &["cap=server_files"]),
    case("SELECT U&\"pg_read\\005ffile\"('/etc/passwd')", &["cap=server_files"]),
    case("SELECT pg_read_file($$/etc/passwd$$)", &["cap=server_files"]),
    case("WITH x AS (SELECT pg_read_file('/etc/passwd')) SELECT * FROM x", &["cap=server_files"]),
    case("SELECT * FROM (SELECT pg_ls_dir('.')) s", &["cap=server_files"]),
    case("SELECT lower(pg_read_file('/etc/passwd'))", &["cap=server_files"]),
    case("SELECT 1 WHERE EXISTS (SELECT pg_read_file('x'))", &["cap=server_files"]),
    case("VALUES (pg_read_file('x'))", &["cap=server_files"]),
    case("SELECT * FROM t ORDER BY pg_read_file('x')", &["cap=server_files"]),
    case("SELECT count(*) FILTER (WHERE pg_read_file('x') > '') FROM t", &["cap=server_files"]),
    case("SELECT ARRAY[pg_read_file('x')]", &["cap=server_files"]),
    case("SELECT ROW(pg_read_file('x'))", &["cap=server_files"]),
    case("SELECT CASE WHEN true THEN pg_read_file('x') END", &["cap=server_files"]),
    case("SELECT * FROM ROWS FROM (pg_ls_dir('.'))", &["cap=server_files"]),
    case("SELECT * FROM t WHERE id = 1; DROP TABLE t", &["stmts=2", "class=select", "class=drop"]),
    case("SELECT 1;DROP TABLE t;--", &["stmts=2", "drop=table:t"]),
    case("SELECT E'\\';DROP TABLE t;--'", &["stmts=1", "!action=drop"]),
    case("SELECT 'it''s'; DROP TABLE t", &["stmts=2", "drop=table:t"]),
    case("SELECT $a$ $b$ $a$; DELETE FROM t", &["stmts=2", "delete=t"]),
    case("SET search_path = evil, pg_catalog; SELECT lower('x')", &["stmts=2", "set=search_path"]),
    // With pg_catalog searched late, built-in names and symbols could be
    // shadowed: everything unqualified becomes opaque.
    case("SELECT lower(name) FROM t", &["!opaque_any", "opaque_with_late_pg_catalog"]),
    case("SELECT 1 + 1", &["op=+", "!opaque_any", "opaque_with_late_pg_catalog"]),
    case("SELECT x BETWEEN 1 AND 2 FROM t", &["op=>=", "op=<=", "opaque_with_late_pg_catalog"]),
    case("SELECT CASE x WHEN 1 THEN 'a' END FROM t", &["op==", "opaque_with_late_pg_catalog"]),
    case("SELECT * FROM a JOIN b USING (id)", &["op==", "opaque_with_late_pg_catalog"]),
    case("SELECT * FROM a NATURAL JOIN b", &["op==", "opaque_with_late_pg_catalog"]),
    case("SELECT pg_catalog.lower(name) FROM t WHERE a OPERATOR(pg_catalog.=) 1", &[
        "op=pg_catalog.=",
        "!opaque_with_late_pg_catalog",
    ]),
    case("EXECUTE p; DEALLOCATE p", &["stmts=2", "execute=p", "deallocate=p"]),
    case("SELECT 1 /* unterminated", &["error=syntax"]),
    case("SELEC 1", &["error=syntax"]),
    case("SELECT 'unterminated", &["error=syntax"]),
    case("SELECT 1; SELEC 2", &["error=syntax"]),
    case("DROP", &["error=syntax"]),
];

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
