//! Dangerous capabilities hidden in DO blocks and function bodies: what
//! the scan finds, and what the guard with the default bundle makes of it
//! in development, where opaque code itself is allowed.

use std::collections::BTreeSet;
use std::sync::Arc;

use portcullis_guard::opaque_scan::{scan, Blind, HiddenCode, MAX_BODY_BYTES, MAX_SNIPPETS};
use portcullis_guard::{shared_analysis_cache, Guard, GuardSettings, Judgement, SessionState, Who};
use portcullis_policy::{
    Capability, Enforcement, PolicyEngine, Principal, PrincipalKind, TargetRef,
};
use portcullis_wire::Refusal;

use Capability::*;

/// The scan of a one-statement string.
fn hidden(sql: &str) -> HiddenCode {
    let analysis = portcullis_analysis::analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(analysis.statements.len(), 1, "{sql}");
    scan(&analysis.statements[0], sql)
}

fn caps(list: &[Capability]) -> BTreeSet<Capability> {
    list.iter().copied().collect()
}

#[track_caller]
fn finds(sql: &str, expected: &[Capability]) {
    let h = hidden(sql);
    assert_eq!(h.blind, None, "{sql}");
    assert_eq!(h.capabilities, caps(expected), "{sql}");
}

#[track_caller]
fn blind(sql: &str, why: Blind) {
    let h = hidden(sql);
    assert_eq!(h.blind, Some(why), "{sql}");
    // Blind means every capability reachable from SQL.
    for c in Capability::ALL {
        assert_eq!(
            h.capabilities.contains(&c),
            c != FunctionCallMessage,
            "{sql}: {c}"
        );
    }
}

#[track_caller]
fn clean(sql: &str) {
    let h = hidden(sql);
    assert_eq!((h.capabilities, h.blind), (BTreeSet::new(), None), "{sql}");
}

fn guard(environment: &str) -> Guard {
    Guard::new(
        Arc::new(PolicyEngine::default_bundle().expect("default bundle loads")),
        shared_analysis_cache(),
        GuardSettings {
            target: TargetRef::new("shop", environment),
            enforcement: Enforcement::Enforce,
            row_limit: None,
            masking: Default::default(),
        },
    )
}

fn judge(environment: &str, sql: &str) -> Judgement {
    let who = Who {
        principal: Principal {
            name: "dana".into(),
            kind: PrincipalKind::Human,
            groups: vec!["developers".into()],
            on_behalf_of: None,
        },
        source: None,
        limits: Default::default(),
        approved: false,
    };
    let session = SessionState::new("app", Some("\"$user\", public"));
    guard(environment).judge_text(sql, &who, &session)
}

fn refusal(environment: &str, sql: &str) -> Option<Refusal> {
    judge(environment, sql).refusal
}

/// The policy that refused `sql`.
fn refused_by(environment: &str, sql: &str) -> Option<String> {
    let j = judge(environment, sql);
    assert!(j.refusal.is_some(), "{sql} passed");
    j.refused_by
}

// ---------------------------------------------------------------------
// Each capability family inside a DO block.
// ---------------------------------------------------------------------

#[test]
fn server_files_and_programs_inside_do() {
    finds(
        "DO $$ BEGIN COPY orders TO PROGRAM 'cat > /tmp/x'; END $$",
        &[ServerProgram],
    );
    finds(
        "DO $$ BEGIN COPY orders TO '/tmp/x'; END $$",
        &[ServerFiles],
    );
    finds(
        "DO $$ BEGIN COPY log (what) FROM PROGRAM 'id'; END $$",
        &[ServerProgram],
    );
    finds(
        "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
        &[ServerFiles],
    );
    finds(
        "DO $$ DECLARE s text; BEGIN SELECT pg_read_file('x') INTO s; END $$",
        &[ServerFiles],
    );
    finds(
        "DO $$ BEGIN PERFORM lo_export(1, '/tmp/x'); END $$",
        &[ServerFiles],
    );
}

#[test]
fn network_and_foreign_data_inside_do() {
    finds(
        "DO $$ BEGIN PERFORM dblink_connect('c', 'host=evil'); END $$",
        &[Network, ForeignData],
    );
    finds(
        "DO $$ BEGIN CREATE SERVER s FOREIGN DATA WRAPPER w; END $$",
        &[ForeignData],
    );
    finds(
        "DO $$ BEGIN CREATE USER MAPPING FOR CURRENT_USER SERVER s; END $$",
        &[ForeignData],
    );
}

#[test]
fn identity_changes_inside_do() {
    finds("DO $$ BEGIN SET ROLE admin; END $$", &[IdentityChange]);
    finds(
        "DO $$ BEGIN EXECUTE 'SET ROLE \"r\"'; END $$",
        &[IdentityChange],
    );
    finds(
        "DO $$ BEGIN SET SESSION AUTHORIZATION admin; END $$",
        &[IdentityChange],
    );
    finds(
        "DO $$ BEGIN PERFORM set_config('role', 'admin', false); END $$",
        &[IdentityChange],
    );
    // Going back to the login identity is not a new power.
    clean("DO $$ BEGIN RESET ROLE; END $$");
}

#[test]
fn persistent_settings_and_administration_inside_do() {
    finds(
        "DO $$ BEGIN ALTER ROLE app SET search_path = evil, pg_catalog; END $$",
        &[PersistentSetting],
    );
    // A database statement inside code may reach another target's
    // database: server administration too.
    finds(
        "DO $$ BEGIN ALTER DATABASE shop SET work_mem = '1MB'; END $$",
        &[PersistentSetting, ServerAdmin],
    );
    finds(
        "DO $$ BEGIN ALTER SYSTEM SET work_mem = '1MB'; END $$",
        &[ServerAdmin],
    );
    finds("DO $$ BEGIN LOAD 'auto_explain'; END $$", &[ServerAdmin]);
    finds(
        "DO $$ BEGIN EXECUTE 'PREPARE TRANSACTION ''x'''; END $$",
        &[ServerAdmin],
    );
    finds(
        "DO $$ BEGIN PERFORM pg_terminate_backend(42); END $$",
        &[ServerAdmin],
    );
}

#[test]
fn database_statements_inside_code_are_administration() {
    for sql in [
        "DO $$ BEGIN ALTER DATABASE shop RENAME TO gone; END $$",
        "DO $$ BEGIN ALTER DATABASE shop WITH ALLOW_CONNECTIONS false; END $$",
        "DO $$ BEGIN EXECUTE 'ALTER DATABASE shop OWNER TO intruder'; END $$",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER DATABASE shop CONNECTION LIMIT 0'",
    ] {
        finds(sql, &[ServerAdmin]);
        // Refused in staging and development too, where DO is allowed.
        for environment in ["staging", "development"] {
            assert_eq!(
                refused_by(environment, sql).as_deref(),
                Some("deny-dangerous-capabilities"),
                "{sql}"
            );
        }
    }
}

#[test]
fn silenced_triggers_inside_do() {
    finds(
        "DO $$ BEGIN ALTER TABLE orders DISABLE TRIGGER ALL; END $$",
        &[TriggerBypass],
    );
    finds(
        "DO $$ BEGIN SET session_replication_role = replica; END $$",
        &[TriggerBypass],
    );
    finds(
        "DO $$ BEGIN PERFORM set_config('session_replication_role', 'replica', false); END $$",
        &[TriggerBypass],
    );
}

// ---------------------------------------------------------------------
// Wherever PL/pgSQL evaluates SQL.
// ---------------------------------------------------------------------

#[test]
fn every_place_plpgsql_runs_sql_is_read() {
    for sql in [
        "DO $$ BEGIN IF pg_read_file('x') <> '' THEN NULL; END IF; END $$",
        "DO $$ BEGIN IF true THEN NULL; ELSIF pg_read_file('x') = '' THEN NULL; END IF; END $$",
        "DO $$ DECLARE s text; BEGIN s := pg_read_file('x'); END $$",
        "DO $$ DECLARE s text := pg_read_file('x'); BEGIN NULL; END $$",
        "DO $$ DECLARE a int[]; BEGIN a[length(pg_read_file('x'))] := 1; END $$",
        "DO $$ BEGIN RAISE NOTICE '%', pg_read_file('x'); END $$",
        "DO $$ BEGIN RAISE EXCEPTION USING MESSAGE = pg_read_file('x'); END $$",
        "DO $$ BEGIN ASSERT pg_read_file('x') IS NOT NULL; END $$",
        "DO $$ BEGIN WHILE pg_read_file('x') = '' LOOP EXIT; END LOOP; END $$",
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT pg_ls_dir('.') LOOP NULL; END LOOP; END $$",
        "DO $$ BEGIN FOR i IN 1..length(pg_read_file('x')) LOOP NULL; END LOOP; END $$",
        "DO $$ BEGIN LOOP EXIT WHEN pg_read_file('x') = ''; END LOOP; END $$",
        "DO $$ BEGIN CASE pg_read_file('x') WHEN '' THEN NULL; ELSE NULL; END CASE; END $$",
        "DO $$ DECLARE c CURSOR FOR SELECT pg_read_file('x'); BEGIN OPEN c; CLOSE c; END $$",
        "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR SELECT pg_read_file('x'); END $$",
        "DO $$ DECLARE c CURSOR (k int) FOR SELECT k; BEGIN OPEN c(length(pg_read_file('x'))); END $$",
        "DO $$ DECLARE c CURSOR (k int) FOR SELECT k; BEGIN \
         FOR r IN c(length(pg_read_file('x'))) LOOP NULL; END LOOP; END $$",
        "DO $$ DECLARE c refcursor; n int; BEGIN FETCH RELATIVE length(pg_read_file('x')) FROM c INTO n; END $$",
        "DO $$ BEGIN BEGIN NULL; EXCEPTION WHEN others THEN PERFORM pg_read_file('x'); END; END $$",
        "DO $$ BEGIN <<inner>> DECLARE n int; BEGIN PERFORM pg_read_file('x'); END inner; END $$",
        "DO $$ DECLARE n int; BEGIN INSERT INTO t VALUES (1) RETURNING length(pg_read_file('x')) INTO n; END $$",
        "DO $$ BEGIN DO $i$ BEGIN PERFORM pg_read_file('x'); END $i$; END $$",
        "DO $$ DECLARE a text[] := ARRAY['x']; s text; BEGIN FOREACH s IN ARRAY a || pg_read_file('x') LOOP NULL; END LOOP; END $$",
    ] {
        finds(sql, &[ServerFiles]);
    }
}

#[test]
fn constant_execute_strings_are_read_recursively() {
    finds(
        "DO $$ BEGIN EXECUTE 'COPY orders TO PROGRAM ''cat > /tmp/x'''; END $$",
        &[ServerProgram],
    );
    finds(
        "DO $$ BEGIN EXECUTE $q$SELECT pg_read_file('x')$q$; END $$",
        &[ServerFiles],
    );
    finds(
        "DO $$ BEGIN EXECUTE E'SET ROLE \\'admin\\''; END $$",
        &[IdentityChange],
    );
    finds(
        "DO $$ BEGIN EXECUTE 'DO $i$ BEGIN EXECUTE ''SET ROLE r''; END $i$'; END $$",
        &[IdentityChange],
    );
    finds(
        "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT pg_ls_dir(''.'')' LOOP NULL; END LOOP; END $$",
        &[ServerFiles],
    );
    finds(
        "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT pg_read_file(''x'')'; END $$",
        &[ServerFiles],
    );
    finds(
        "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE plpgsql AS $$ \
         BEGIN RETURN QUERY EXECUTE 'SELECT pg_read_file(''x'')'; END $$",
        &[ServerFiles],
    );
    // A function created by a DO block, and a DO block run by a SQL
    // function.
    finds(
        "DO $$ BEGIN CREATE FUNCTION g() RETURNS void LANGUAGE sql AS 'SET ROLE r'; END $$",
        &[IdentityChange],
    );
    finds(
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS \
         $$ DO $d$ BEGIN ALTER TABLE t DISABLE TRIGGER ALL; END $d$ $$",
        &[TriggerBypass],
    );
    // Harmless constant SQL is fine.
    clean("DO $$ BEGIN EXECUTE 'CREATE TABLE t (id int)'; EXECUTE 'SELECT 1' USING 2; END $$");
}

#[test]
fn computed_execute_strings_count_as_everything() {
    for sql in [
        "DO $$ BEGIN EXECUTE format('SET ROLE %I', 'r'); END $$",
        "DO $$ BEGIN EXECUTE 'SET ROLE ' || 'r'; END $$",
        "DO $$ DECLARE q text := 'SELECT 1'; BEGIN EXECUTE q; END $$",
        "DO $$ BEGIN EXECUTE 'SELECT 1'::text; END $$",
        "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT ' || 1 LOOP NULL; END LOOP; END $$",
        "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE format('SELECT %s', 1); END $$",
        "CREATE FUNCTION f(q text) RETURNS SETOF record LANGUAGE plpgsql AS $$ \
         BEGIN RETURN QUERY EXECUTE q; END $$",
        "DO $$ BEGIN EXECUTE 'DO $i$ BEGIN EXECUTE format(''SELECT 1''); END $i$'; END $$",
    ] {
        blind(sql, Blind::DynamicSql);
    }
}

// ---------------------------------------------------------------------
// CREATE FUNCTION / PROCEDURE.
// ---------------------------------------------------------------------

#[test]
fn plpgsql_function_and_procedure_bodies() {
    finds(
        "CREATE FUNCTION f(p int) RETURNS int LANGUAGE plpgsql AS $$ \
         BEGIN SET ROLE admin; RETURN p; END $$",
        &[IdentityChange],
    );
    finds(
        "CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ \
         BEGIN ALTER SYSTEM SET fsync = off; END $$",
        &[ServerAdmin],
    );
    // Trigger functions, with NEW, OLD and TG_ variables.
    finds(
        "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN NEW.note := TG_OP; COPY orders TO PROGRAM 'cat > /tmp/x'; RETURN NEW; END $$",
        &[ServerProgram],
    );
    finds(
        "CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM set_config('session_replication_role', 'replica', false); END $$",
        &[TriggerBypass],
    );
    // Options around the body, OUT parameters, table types.
    finds(
        "CREATE FUNCTION f(a orders, OUT n int, OUT s text) LANGUAGE plpgsql STABLE \
         SECURITY INVOKER AS 'BEGIN n := 1; s := pg_read_file(''x''); END'",
        &[ServerFiles],
    );
}

#[test]
fn sql_function_bodies() {
    finds(
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('x') $$",
        &[ServerFiles],
    );
    finds(
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS \
         $$ INSERT INTO t VALUES (1); SET ROLE admin; $$",
        &[IdentityChange],
    );
    finds(
        "CREATE PROCEDURE p() LANGUAGE sql AS 'COPY orders TO PROGRAM ''x'''",
        &[ServerProgram],
    );
    clean("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$");
    clean("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a + 1");
    // A SQL-standard body is in the parse tree: the analysis itself reports
    // what it uses, so the scan adds nothing.
    clean("CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT pg_read_file('x'); END");
    assert!(refusal(
        "development",
        "CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT pg_read_file('x'); END"
    )
    .is_some());
}

#[test]
fn other_languages_count_as_everything() {
    for (sql, language) in [
        ("DO LANGUAGE plperl $$ print 1 $$", "plperl"),
        ("DO $$ import os $$ LANGUAGE plpython3u", "plpython3u"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plv8 AS $$ return 1 $$",
            "plv8",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'",
            "c",
        ),
        (
            "CREATE FUNCTION rf(text) RETURNS text LANGUAGE internal AS 'pg_read_file_off_len'",
            "internal",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE 'SQL' AS $$ SELECT 1 $$",
            "SQL",
        ),
    ] {
        blind(sql, Blind::Language(language.into()));
    }
}

#[test]
fn unreadable_code_counts_as_everything() {
    for sql in [
        // Not a known variable: PostgreSQL refuses it too.
        "DO $$ BEGIN x := 1; END $$",
        "DO $$ BEGIN SELEC 1; END $$",
        "DO $$ BEGIN IF THEN END IF; END $$",
        "DO $$ not plpgsql at all $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELEC 1'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN; $$",
        "DO $$ BEGIN EXECUTE 'SELEC 1'; END $$",
    ] {
        blind(sql, Blind::Unreadable);
    }
}

#[test]
fn nesting_is_bounded() {
    // A DO inside an EXECUTE inside a DO..., `levels` deep, with a
    // capability at the bottom.
    fn nested(levels: usize) -> String {
        let mut sql = "PERFORM pg_read_file('x');".to_owned();
        for level in 0..levels {
            sql = format!("EXECUTE $e{level}$DO $d{level}$ BEGIN {sql} END $d{level}$ $e{level}$;");
        }
        format!("DO $$ BEGIN {sql} END $$")
    }
    finds(&nested(2), &[ServerFiles]);
    blind(&nested(8), Blind::TooDeep);
    // Deeply nested blocks.
    let blocks = format!(
        "DO $$ {} NULL; {} $$",
        "BEGIN ".repeat(200),
        "END; ".repeat(199) + "END"
    );
    blind(&blocks, Blind::TooDeep);
}

#[test]
fn size_is_bounded() {
    let huge = format!(
        "DO $$ BEGIN PERFORM '{}'; END $$",
        "x".repeat(MAX_BODY_BYTES)
    );
    blind(&huge, Blind::TooLarge);
    let many = format!(
        "DO $$ BEGIN {} END $$",
        "PERFORM 1;".repeat(MAX_SNIPPETS + 1)
    );
    blind(&many, Blind::TooLarge);
    let fine = format!("DO $$ BEGIN {} END $$", "PERFORM 1;".repeat(200));
    clean(&fine);
}

// ---------------------------------------------------------------------
// Everyday code is untouched.
// ---------------------------------------------------------------------

const EVERYDAY: &[&str] = &[
    "DO $$ BEGIN INSERT INTO t VALUES (1); END $$",
    "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM t; \
     IF n > 0 THEN UPDATE t SET v = v + 1 WHERE id = 1; END IF; END $$",
    "DO $$ BEGIN FOR i IN 1..10 LOOP INSERT INTO t VALUES (i); END LOOP; END $$",
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM t LOOP \
     RAISE NOTICE 'row %', r.id; END LOOP; END $$",
    "DO $$ BEGIN RAISE NOTICE 'harmless; DROP TABLE orders'; END $$",
    "DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END'",
    "DO $$ BEGIN EXECUTE 'CREATE INDEX ON t (v)'; END $$",
    "DO $$ BEGIN CREATE TABLE t2 (id int); EXCEPTION WHEN duplicate_table THEN NULL; END $$",
    "DO $$ DECLARE n int := 0; BEGIN WHILE n < 3 LOOP n := n + 1; END LOOP; END $$",
    "DO $$ BEGIN PERFORM set_config('search_path', 'public', true); END $$",
    "DO $$ BEGIN CALL archive_orders(); PERFORM bump_total(1); END $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ \
     BEGIN RETURN a + b; END $$",
    "CREATE OR REPLACE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN INSERT INTO log (what) VALUES (TG_OP); NEW.updated := now(); RETURN NEW; END $$",
    "CREATE PROCEDURE p(INOUT n int) LANGUAGE plpgsql AS $$ BEGIN n := n * 2; COMMIT; END $$",
    "CREATE FUNCTION s() RETURNS SETOF orders LANGUAGE plpgsql AS $$ \
     BEGIN RETURN QUERY SELECT * FROM orders WHERE id > 1; END $$",
    "ALTER FUNCTION f() STABLE",
];

#[test]
fn everyday_code_has_nothing_hidden() {
    for sql in EVERYDAY {
        clean(sql);
    }
}

#[test]
fn statements_without_code_are_not_scanned() {
    for sql in [
        "SELECT pg_read_file('x')",
        "SELECT 'DO $$ BEGIN SET ROLE x; END $$'",
        "CALL archive_orders()",
        "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit()",
    ] {
        clean(sql);
    }
}

// ---------------------------------------------------------------------
// The guard: refused everywhere, with a hint that says why.
// ---------------------------------------------------------------------

#[test]
fn development_refuses_hidden_capabilities_and_says_why() {
    for environment in ["development", "staging"] {
        let sql = "DO $$ BEGIN COPY orders TO PROGRAM 'cat > /tmp/x'; END $$";
        let r = refusal(environment, sql).expect("refused");
        assert_eq!(r.sqlstate, "42501");
        assert_eq!(
            refused_by(environment, sql).as_deref(),
            Some("deny-dangerous-capabilities")
        );
        assert!(
            r.message
                .starts_with("statement denied by policy \"deny-dangerous-capabilities\": "),
            "{}",
            r.message
        );
        let hint = r.hint.expect("hint");
        assert!(
            hint.ends_with(
                "Portcullis found these capabilities inside the DO block: server_program."
            ),
            "{hint}"
        );
    }

    let r = refusal(
        "development",
        "DO $$ BEGIN EXECUTE format('SET ROLE %I', 'r'); END $$",
    )
    .expect("refused");
    let hint = r.hint.expect("hint");
    assert!(hint.contains("EXECUTE of a computed string"), "{hint}");
    assert!(hint.contains("EXECUTE only string constants"), "{hint}");

    let policy = refused_by(
        "staging",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plperlu AS $$ `id` $$",
    );
    assert_eq!(policy.as_deref(), Some("deny-dangerous-capabilities"));

    // Several statements: the one with hidden code is refused, and so the
    // whole message.
    let r = refusal(
        "development",
        "SELECT 1; DO $$ BEGIN SET ROLE admin; END $$; SELECT 2",
    )
    .expect("refused");
    assert!(r
        .hint
        .unwrap()
        .ends_with("inside the DO block: identity_change."));
}

#[test]
fn development_allows_everyday_code() {
    for sql in EVERYDAY {
        assert_eq!(refusal("development", sql), None, "{sql}");
        assert_eq!(refusal("staging", sql), None, "{sql}");
    }
}

#[test]
fn production_still_names_the_first_policy() {
    // Dangerous inside opaque code: the dangerous-capability rule, loaded
    // first, is the one named.
    let policy = refused_by("production", "DO $$ BEGIN SET ROLE admin; END $$");
    assert_eq!(policy.as_deref(), Some("deny-dangerous-capabilities"));
    // Harmless opaque code: the production opaque-code rule, no note.
    let j = judge("production", "DO $$ BEGIN PERFORM 1; END $$");
    assert_eq!(
        j.refused_by.as_deref(),
        Some("deny-opaque-code-in-production")
    );
    assert!(!j
        .refusal
        .expect("refused")
        .hint
        .unwrap()
        .contains("inside the"));
}

// ---------------------------------------------------------------------
// Cost: `cargo test --release -p portcullis-guard --test opaque_scan --
// --ignored --nocapture scan_cost`.
// ---------------------------------------------------------------------

#[test]
#[ignore = "a timing, not a check: run in release"]
fn scan_cost() {
    fn median_micros(n: u32, mut f: impl FnMut()) -> f64 {
        let mut samples: Vec<f64> = (0..11)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[5]
    }
    let typical = "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM t; \
                   IF n > 0 THEN UPDATE t SET v = v + 1 WHERE id = 1; END IF; END $$";
    let long_body: String = (0..50)
        .map(|i| format!("UPDATE t SET v = v + {i} WHERE id = {i}; "))
        .collect();
    let long =
        format!("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN {long_body} END $$");
    let plain = "SELECT * FROM orders WHERE id = 1";
    for (name, sql) in [
        ("typical DO block", typical),
        ("function with 50 statements", long.as_str()),
        ("plain SELECT (not scanned)", plain),
    ] {
        let analysis = portcullis_analysis::analyze(sql).unwrap();
        let stmt = &analysis.statements[0];
        let analyse = median_micros(200, || {
            std::hint::black_box(portcullis_analysis::analyze(sql).unwrap());
        });
        let scanned = median_micros(200, || {
            std::hint::black_box(scan(stmt, sql));
        });
        println!("{name:32} analysis {analyse:8.1} µs, scan {scanned:8.2} µs");
    }
}

/// Code Portcullis cannot read is refused whatever the policies allow: it
/// could change the settings Portcullis protects. And the settings checks
/// reach into code it can read.
#[test]
fn unreadable_code_is_refused_even_when_every_policy_permits() {
    let engine = PolicyEngine::from_sources(vec![portcullis_policy::PolicySource {
        name: "all.cedar".into(),
        text: r#"@id("all") permit(principal, action, resource);"#.into(),
    }])
    .expect("loads");
    let g = Guard::new(
        Arc::new(engine),
        shared_analysis_cache(),
        GuardSettings {
            target: TargetRef::new("shop", "development"),
            enforcement: Enforcement::Enforce,
            row_limit: None,
            masking: Default::default(),
        },
    );
    let who = Who {
        principal: Principal {
            name: "dana".into(),
            kind: PrincipalKind::Human,
            groups: vec![],
            on_behalf_of: None,
        },
        source: None,
        limits: portcullis_guard::SessionLimits {
            statement_timeout: Some((1000, "agents".into())),
            counts_rows: false,
        },
        approved: false,
    };
    let session = SessionState::new("app", Some("public"));
    let refused = |sql: &str| g.judge_text(sql, &who, &session).refusal;
    for sql in [
        "DO $$ BEGIN EXECUTE 'SET application_name = ' || quote_literal('x'); END $$",
        "DO $$ BEGIN EXECUTE format('SET %s = 0', 'statement_timeout'); END $$",
        "DO LANGUAGE plperl $$ 1 $$",
        "DO $$ BEGIN PERFORM set_config('application_name', 'x', false); END $$",
        "DO $$ BEGIN SET statement_timeout = 0; END $$",
        "SELECT query_to_xml('SELECT set_config(''statement_timeout'', ''0'', false)', true, false, '')",
        "SELECT ts_stat('SELECT set_config(''portcullis.identity'', ''x'', false)::tsvector')",
    ] {
        assert!(refused(sql).is_some(), "{sql}");
    }
    assert!(refused("DO $$ BEGIN PERFORM 1; END $$").is_none());
    assert!(refused("SELECT 1").is_none());
}
