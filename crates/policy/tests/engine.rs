//! The engine with policies written for each test: loading errors,
//! Portcullis' decision rules on top of Cedar, and every kind of fact a
//! policy can read.

use std::net::IpAddr;

use portcullis_policy::{
    Action, Decision, DenyCause, LoadError, Operation, PolicyEngine, PolicySource, Principal,
    PrincipalKind, Request, RequestContext, ResourceRef, StatementFacts, TargetRef, TimeOfDay,
    Weekday, NO_PERMIT_ID,
};

const BASE: &str = r#"@id("base") permit(principal, action, resource);"#;

fn engine(files: &[&str]) -> PolicyEngine {
    match PolicyEngine::from_sources(sources(files)) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

fn sources(files: &[&str]) -> Vec<PolicySource> {
    files
        .iter()
        .enumerate()
        .map(|(i, text)| PolicySource {
            name: format!("p{i}.cedar"),
            text: (*text).to_owned(),
        })
        .collect()
}

fn problems(files: &[&str]) -> Vec<String> {
    match PolicyEngine::from_sources(sources(files)) {
        Ok(_) => panic!("loaded"),
        Err(LoadError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn request(action: Action, resources: Vec<ResourceRef>) -> Request {
    Request {
        principal: Principal {
            name: "alice".into(),
            kind: PrincipalKind::Human,
            groups: vec!["developers".into()],
            on_behalf_of: None,
        },
        target: TargetRef::new("shop", "production"),
        statement: StatementFacts {
            operations: vec![Operation::new(action, resources)],
            statement_count: 1,
            ..Default::default()
        },
        context: RequestContext {
            time: TimeOfDay {
                hour: 14,
                minute: 0,
                weekday: Weekday::Tuesday,
            },
            source_address: Some("10.1.2.3".parse().unwrap()),
            approved: false,
            row_limit: None,
        },
    }
}

fn denied_by(d: &Decision) -> &str {
    match d {
        Decision::Deny(d) => &d.policy,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ---- loading ----------------------------------------------------------

#[test]
fn syntax_errors_name_file_line_and_column() {
    let p = problems(&[
        BASE,
        "\n\n@id(\"x\")\nforbid(principal, action, resource) when { ;",
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("p1.cedar:4:"), "{}", p[0]);
}

#[test]
fn every_annotation_problem_is_reported_at_once_with_its_line() {
    let p = problems(&[
        BASE,
        concat!(
            "permit(principal, action, resource);\n",
            "@id(\"no-message\")\nforbid(principal, action, resource);\n",
            "@id(\"permit-approvers\") @approvers(\"dba\")\npermit(principal, action, resource);\n",
            "@id(\"no-unless\") @message(\"m\") @approvers(\"dba\")\n",
            "forbid(principal, action, resource) when { context.approved == false };\n",
            "@id(\"default-deny\") @message(\"m\")\nforbid(principal, action, resource);\n",
            "@id(\"base\")\npermit(principal, action, resource);\n",
            "@id(\"tmpl\")\npermit(principal == ?principal, action, resource);\n",
        ),
    ]);
    let expect = [
        ("p1.cedar:1:", "no @id"),
        ("p1.cedar:2:", "forbid policy has no @message"),
        ("p1.cedar:4:", "@approvers is only meaningful on a forbid"),
        ("p1.cedar:6:", "must end in `unless { context.approved }`"),
        ("p1.cedar:8:", "reserved"),
        ("p1.cedar:10:", "duplicate @id (first used at p0.cedar:1)"),
        ("p1.cedar:12:", "templates"),
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for (problem, (at, what)) in p.iter().zip(expect) {
        assert!(
            problem.starts_with(at) && problem.contains(what),
            "{problem} vs {at} {what}"
        );
    }
}

#[test]
fn strict_validation_errors_point_at_the_offending_expression() {
    let p = problems(&[
        BASE,
        "@id(\"typo\") @message(\"m\")\nforbid(principal, action, resource)\n  when { context.opaq };",
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("p1.cedar:3:10: policy \"typo\""),
        "{}",
        p[0]
    );
    let p = problems(&[
        BASE,
        "@id(\"bad-action\") @message(\"m\")\nforbid(principal, action == Portcullis::Action::\"Explode\", resource);",
    ]);
    assert!(
        p[0].starts_with("p1.cedar:2:") && p[0].contains("Explode"),
        "{}",
        p[0]
    );
    // A type error: environment is a String.
    let p = problems(&[
        BASE,
        "@id(\"types\") @message(\"m\")\nforbid(principal, action, resource) when { context.environment > 3 };",
    ]);
    assert!(p[0].contains("policy \"types\""), "{}", p[0]);
}

#[test]
fn empty_bundles_and_bad_paths_are_errors() {
    assert!(matches!(
        PolicyEngine::from_sources(sources(&["// nothing here"])),
        Err(LoadError::Invalid(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        PolicyEngine::from_paths(&[dir.path()]),
        Err(LoadError::NoPolicyFiles { .. })
    ));
    assert!(matches!(
        PolicyEngine::from_paths(&[dir.path().join("missing.cedar")]),
        Err(LoadError::Io { .. })
    ));
    let none: [&str; 0] = [];
    assert!(matches!(
        PolicyEngine::from_paths(&none),
        Err(LoadError::NoPaths)
    ));
}

#[test]
fn directories_load_recursively_in_name_order_skipping_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("b.cedar"), BASE).unwrap();
    std::fs::write(
        dir.path().join("sub/a.cedar"),
        "@id(\"no-drop\") @message(\"no\")\nforbid(principal, action == Portcullis::Action::\"Drop\", resource);",
    )
    .unwrap();
    std::fs::write(dir.path().join(".hidden.cedar"), "this is not cedar").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "neither is this").unwrap();
    let e = PolicyEngine::from_paths(&[dir.path()]).unwrap();
    let ids: Vec<&str> = e.policies().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["base", "no-drop"]);
    assert!(e.policies()[1].file.ends_with("sub/a.cedar"));
    assert_eq!(e.policies()[1].line, 1);
}

#[test]
fn a_bundle_without_permits_loads_with_a_warning() {
    let e = engine(&[
        "@id(\"f\") @message(\"m\")\nforbid(principal, action, resource) when { context.opaque };",
    ]);
    assert!(e.warnings().iter().any(|w| w.message.contains("no permit")));
}

// ---- decision rules -----------------------------------------------------

#[test]
fn no_permit_is_a_denial_naming_default_deny() {
    let e = engine(&[
        "@id(\"reads\")\npermit(principal, action == Portcullis::Action::\"Select\", resource);",
    ]);
    assert!(e.decide(&request(Action::Select, vec![])).is_allow());
    let d = e.decide(&request(
        Action::Delete,
        vec![ResourceRef::table("public", "t")],
    ));
    assert_eq!(denied_by(&d), NO_PERMIT_ID);
    let Decision::Deny(denial) = &d else {
        unreachable!()
    };
    assert_eq!(denial.cause, DenyCause::NoPermit);
    assert_eq!(
        d.client_message().unwrap(),
        "statement denied by policy \"default-deny\": no policy allows Delete statements here"
    );
}

#[test]
fn approval_is_only_offered_when_it_would_help() {
    let approval = "@id(\"hold\") @message(\"needs a DBA\") @hint(\"ask\") @approvers(\"dba\")\n\
        forbid(principal, action == Portcullis::Action::\"SchemaChange\", resource) unless { context.approved };";
    // With a permit, approval would let it through.
    let e = engine(&[BASE, approval]);
    let d = e.decide(&request(Action::SchemaChange, vec![]));
    match &d {
        Decision::RequiresApproval(a) => {
            assert_eq!((a.policy.as_str(), a.approvers.as_str()), ("hold", "dba"));
            assert_eq!(a.hint.as_deref(), Some("ask"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.client_message().unwrap(),
        "statement requires approval by group \"dba\" (policy \"hold\"): needs a DBA"
    );
    let mut approved = request(Action::SchemaChange, vec![]);
    approved.context.approved = true;
    assert!(e.decide(&approved).is_allow());
    // Without a permit, approving would not help: a plain denial.
    let e = engine(&[
        approval,
        "@id(\"reads\") permit(principal, action == Portcullis::Action::\"Select\", resource);",
    ]);
    assert_eq!(
        denied_by(&e.decide(&request(Action::SchemaChange, vec![]))),
        NO_PERMIT_ID
    );
}

#[test]
fn one_groups_approval_never_stands_in_for_anothers() {
    let dba = "@id(\"dba-hold\") @message(\"needs a DBA\") @approvers(\"dba\")\n\
        forbid(principal, action == Portcullis::Action::\"SchemaChange\", resource) unless { context.approved };";
    let hr = "@id(\"hr-hold\") @message(\"payroll needs HR\") @approvers(\"hr\")\n\
        forbid(principal, action, resource) when { resource is Portcullis::Table && resource.name == \"payroll\" } unless { context.approved };";
    let dba_too = "@id(\"dba-hold-2\") @message(\"again a DBA\") @approvers(\"dba\")\n\
        forbid(principal, action == Portcullis::Action::\"SchemaChange\", resource) unless { context.approved };";
    let e = engine(&[BASE, dba, hr, dba_too]);
    // One rule, or two of the same group: held for that group.
    let orders = ResourceRef::table("public", "orders");
    match e.decide(&request(Action::SchemaChange, vec![orders.clone()])) {
        Decision::RequiresApproval(a) => assert_eq!(a.approvers, "dba"),
        other => panic!("{other:?}"),
    }
    // Rules of two groups on one operation: denied, not held for either.
    let payroll = ResourceRef::table("public", "payroll");
    let d = e.decide(&request(Action::SchemaChange, vec![payroll.clone()]));
    assert_eq!(denied_by(&d), "dba-hold");
    assert!(d
        .client_message()
        .unwrap()
        .contains("several groups (\"dba\", \"hr\")"));
    // Two operations of one statement, each held by another group.
    let mut r = request(Action::SchemaChange, vec![orders]);
    r.statement
        .operations
        .push(Operation::new(Action::Delete, vec![payroll]));
    assert!(
        matches!(e.decide(&r), Decision::Deny(_)),
        "{:?}",
        e.decide(&r)
    );
}

#[test]
fn the_first_applicable_forbid_in_load_order_is_named() {
    let e = engine(&[
        BASE,
        "@id(\"z-first\") @message(\"one\") forbid(principal, action, resource) when { context.opaque };",
        "@id(\"a-second\") @message(\"two\") forbid(principal, action, resource) when { context.opaque };",
    ]);
    let mut r = request(Action::Select, vec![]);
    r.statement.opaque = true;
    for _ in 0..5 {
        assert_eq!(denied_by(&e.decide(&r)), "z-first");
    }
}

#[test]
fn a_forbid_that_fails_to_evaluate_denies() {
    // Overflows for any statement_count above 1; Cedar would skip the
    // policy and allow.
    let e = engine(&[
        BASE,
        "@id(\"overflow\") @message(\"m\")\n\
         forbid(principal, action, resource) when { context.statement_count * 9223372036854775807 < 0 };",
    ]);
    let mut r = request(Action::Select, vec![]);
    assert!(e.decide(&r).is_allow());
    r.statement.statement_count = 2;
    let d = e.decide(&r);
    let Decision::Deny(denial) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (denial.policy.as_str(), denial.cause),
        ("overflow", DenyCause::EvaluationError)
    );
    assert!(!d.client_message().unwrap().contains("9223372036854775807"));
}

#[test]
fn a_permit_that_fails_to_evaluate_only_withholds_permission() {
    let e = engine(&[
        "@id(\"overflow\")\n\
         permit(principal, action, resource) when { context.statement_count * 9223372036854775807 > 0 };",
        BASE,
    ]);
    let mut r = request(Action::Select, vec![]);
    r.statement.statement_count = 2;
    assert!(e.decide(&r).is_allow());
}

#[test]
fn any_denied_operation_denies_the_statement() {
    let e = PolicyEngine::default_bundle().unwrap();
    let mut r = request(Action::Select, vec![ResourceRef::table("public", "a")]);
    r.statement.operations.push(Operation::new(
        Action::Update,
        vec![ResourceRef::table("public", "b")],
    ));
    let d = e.decide(&r);
    assert_eq!(denied_by(&d), "deny-unfiltered-write-in-production");
    let Decision::Deny(denial) = d else {
        unreachable!()
    };
    // Kept for logs, never in the client message.
    assert_eq!(denial.action, Action::Update);
    assert_eq!(denial.object, Some(ResourceRef::table("public", "b")));
}

#[test]
fn an_empty_statement_is_judged_as_utility() {
    let e = engine(&[
        "@id(\"u\") permit(principal, action == Portcullis::Action::\"Utility\", resource);",
    ]);
    let mut r = request(Action::Select, vec![]);
    r.statement.operations.clear();
    assert!(e.decide(&r).is_allow());
}

// ---- facts policies can read -------------------------------------------

#[test]
fn object_hierarchy_and_quoted_names() {
    let e = engine(&[
        BASE,
        r#"@id("no-email") @message("email is personal data")
           forbid(principal, action == Portcullis::Action::"Select",
                  resource == Portcullis::Column::"public.customers.email")
           unless { principal in Portcullis::Group::"pii-readers" };"#,
        r#"@id("no-secrets") @message("secret")
           forbid(principal, action, resource in Portcullis::Table::"public.secrets");"#,
        r#"@id("audit-read-only") @message("the audit schema is read-only")
           forbid(principal, action in Portcullis::Action::"Write", resource in Portcullis::Schema::"audit");"#,
        r#"@id("quoted") @message("q")
           forbid(principal, action, resource in Portcullis::Table::"\"Sales\".\"Q1 totals\"");"#,
        r#"@id("other-target") @message("t")
           forbid(principal, action, resource in Portcullis::Target::"billing");"#,
        r#"@id("by-attribute") @message("a")
           forbid(principal, action, resource) when { resource is Portcullis::Table && resource.name like "tmp_*" };"#,
    ]);
    let customers = vec![
        ResourceRef::table("public", "customers"),
        ResourceRef::column("public", "customers", "id"),
        ResourceRef::column("public", "customers", "email"),
    ];
    assert_eq!(
        denied_by(&e.decide(&request(Action::Select, customers.clone()))),
        "no-email"
    );
    let mut reader = request(Action::Select, customers);
    reader.principal.groups.push("pii-readers".into());
    assert!(e.decide(&reader).is_allow());
    // A column of a forbidden table is inside it.
    let col = vec![ResourceRef::column("public", "secrets", "value")];
    assert_eq!(
        denied_by(&e.decide(&request(Action::Select, col))),
        "no-secrets"
    );
    let audit = vec![ResourceRef::table("audit", "events")];
    assert!(e.decide(&request(Action::Select, audit.clone())).is_allow());
    assert_eq!(
        denied_by(&e.decide(&request(Action::Insert, audit))),
        "audit-read-only"
    );
    let quoted = vec![ResourceRef::column("Sales", "Q1 totals", "amount")];
    assert_eq!(
        denied_by(&e.decide(&request(Action::Select, quoted))),
        "quoted"
    );
    let unquoted_lookalike = vec![ResourceRef::table("sales", "q1 totals")];
    assert!(e
        .decide(&request(Action::Select, unquoted_lookalike))
        .is_allow());
    let mut billing = request(Action::Utility, vec![]);
    billing.target.name = "billing".into();
    assert_eq!(denied_by(&e.decide(&billing)), "other-target");
    let tmp = vec![ResourceRef::table("public", "tmp_import")];
    assert_eq!(
        denied_by(&e.decide(&request(Action::Select, tmp))),
        "by-attribute"
    );
}

#[test]
fn principals_kinds_groups_and_action_groups() {
    let e = engine(&[
        BASE,
        r#"@id("agents-read-only") @message("agents may only read")
           forbid(principal is Portcullis::Agent, action, resource)
           unless { action in Portcullis::Action::"Read" };"#,
        r#"@id("no-service-ddl") @message("services do not change schemas")
           forbid(principal is Portcullis::Agent, action in Portcullis::Action::"Ddl", resource)
           when { principal.kind == "service" };"#,
        r#"@id("interns") @message("interns cannot write")
           forbid(principal in Portcullis::Group::"interns", action in Portcullis::Action::"Write", resource);"#,
    ]);
    let mut bot = request(Action::Select, vec![ResourceRef::table("public", "t")]);
    bot.principal.kind = PrincipalKind::Agent;
    assert!(e.decide(&bot).is_allow());
    bot.statement.operations[0].action = Action::CopyOut;
    assert!(e.decide(&bot).is_allow());
    bot.statement.operations[0].action = Action::Insert;
    assert_eq!(denied_by(&e.decide(&bot)), "agents-read-only");
    let mut service = request(Action::Drop, vec![]);
    service.principal.kind = PrincipalKind::Service;
    assert_eq!(denied_by(&e.decide(&service)), "agents-read-only");
    let mut intern = request(Action::Merge, vec![]);
    intern.principal.groups = vec!["interns".into()];
    assert_eq!(denied_by(&e.decide(&intern)), "interns");
    intern.statement.operations[0].action = Action::Select;
    assert!(e.decide(&intern).is_allow());
}

#[test]
fn source_address_time_and_row_limit() {
    let e = engine(&[
        BASE,
        r#"@id("office-only") @message("connect from the office network")
           forbid(principal, action in Portcullis::Action::"Write", resource)
           unless { context has source_address && context.source_address.isInRange(ip("10.0.0.0/8")) };"#,
        r#"@id("no-weekend-ddl") @message("no schema changes at weekends")
           forbid(principal, action in Portcullis::Action::"Ddl", resource)
           when { ["saturday", "sunday"].contains(context.time.weekday) || context.time.hour < 6 };"#,
        r#"@id("needs-row-limit") @message("bulk writes need a row limit")
           forbid(principal, action == Portcullis::Action::"Update", resource)
           unless { context has row_limit && context.row_limit <= 1000 };"#,
    ]);
    let mut w = request(Action::Insert, vec![]);
    assert!(e.decide(&w).is_allow());
    w.context.source_address = Some("192.168.1.9".parse().unwrap());
    assert_eq!(denied_by(&e.decide(&w)), "office-only");
    // An IPv4 client seen through an IPv6 socket is still in 10.0.0.0/8.
    w.context.source_address = Some("::ffff:10.9.9.9".parse::<IpAddr>().unwrap());
    assert!(e.decide(&w).is_allow());
    w.context.source_address = None;
    assert_eq!(denied_by(&e.decide(&w)), "office-only");

    let mut ddl = request(Action::SchemaChange, vec![]);
    assert!(e.decide(&ddl).is_allow());
    ddl.context.time.weekday = Weekday::Sunday;
    assert_eq!(denied_by(&e.decide(&ddl)), "no-weekend-ddl");
    ddl.context.time = TimeOfDay::from_unix_seconds(1_709_258_400); // Fri 2024-03-01 02:00Z
    assert_eq!(denied_by(&e.decide(&ddl)), "no-weekend-ddl");

    let mut update = request(Action::Update, vec![]);
    assert_eq!(denied_by(&e.decide(&update)), "needs-row-limit");
    update.context.row_limit = Some(500);
    assert!(e.decide(&update).is_allow());
    update.context.row_limit = Some(u64::MAX);
    assert_eq!(denied_by(&e.decide(&update)), "needs-row-limit");
}

#[test]
fn functions_and_statement_count() {
    let e = engine(&[
        BASE,
        r#"@id("no-sleep") @message("pg_sleep holds connections")
           forbid(principal, action, resource) when { context.functions.contains("pg_catalog.pg_sleep") };"#,
        r#"@id("agents-one-statement") @message("agents send one statement at a time")
           forbid(principal is Portcullis::Agent, action, resource) when { context.statement_count > 1 };"#,
    ]);
    let mut r = request(Action::Select, vec![]);
    r.statement.functions = ["pg_catalog.now".to_owned()].into();
    assert!(e.decide(&r).is_allow());
    r.statement.functions.insert("pg_catalog.pg_sleep".into());
    assert_eq!(denied_by(&e.decide(&r)), "no-sleep");
    let mut agent = request(Action::Select, vec![]);
    agent.principal.kind = PrincipalKind::Agent;
    agent.statement.statement_count = 3;
    assert_eq!(denied_by(&e.decide(&agent)), "agents-one-statement");
}

// ---- explain and cache --------------------------------------------------

#[test]
fn explain_names_the_deciding_policies_and_the_facts() {
    let e = PolicyEngine::default_bundle().unwrap();
    let mut r = request(Action::Delete, vec![ResourceRef::table("public", "orders")]);
    r.statement
        .dangerous
        .insert(portcullis_policy::Capability::Network);
    let x = e.explain(&r);
    assert_eq!(x.decision, e.decide(&r));
    assert_eq!(
        x.evaluations[0].deciding_policies,
        [
            "deny-dangerous-capabilities",
            "deny-unfiltered-write-in-production"
        ]
    );
    let text = x.to_string();
    for needle in [
        "decision: deny deny-dangerous-capabilities",
        "principal: Portcullis::User::\"alice\"",
        "context.dangerous: [\"network\"]",
        "context.source_address: ip(\"10.1.2.3\")",
        "operation: #1 Delete on [public.orders], has_effective_where false",
        "Delete on Portcullis::Target::\"shop\"",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let allowed = e.explain(&request(Action::Select, vec![]));
    assert_eq!(
        allowed.evaluations[0].deciding_policies,
        ["allow-statements"]
    );
}

#[test]
fn cached_decisions_equal_fresh_ones() {
    let files = [
        BASE,
        r#"@id("nights") @message("not at night")
           forbid(principal, action, resource) when { context.time.hour < 6 };"#,
    ];
    let cached = engine(&files);
    let fresh = engine(&files).with_cache_capacity(0);
    let mut r = request(Action::Select, vec![ResourceRef::table("public", "t")]);
    for hour in [3, 12, 3, 12] {
        r.context.time.hour = hour;
        assert_eq!(cached.decide(&r), fresh.decide(&r));
        assert_eq!(cached.decide(&r).is_allow(), hour >= 6);
    }
    // A tiny cache that keeps being emptied still answers correctly.
    let tiny = engine(&files).with_cache_capacity(1);
    let default = PolicyEngine::default_bundle().unwrap();
    for action in Action::ALL {
        for environment in ["production", "staging"] {
            let mut r = request(action, vec![ResourceRef::table("public", "t")]);
            r.target.environment = environment.into();
            assert_eq!(tiny.decide(&r), fresh.decide(&r));
            assert_eq!(default.decide(&r), default.decide(&r));
            assert_eq!(default.decide(&r), default.explain(&r).decision);
        }
    }
}

#[test]
fn the_engine_can_be_shared_between_sessions() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<PolicyEngine>();
    shareable::<Decision>();
}

// ---- databases ----------------------------------------------------------

/// DROP DATABASE `name` through `target`, as the guard describes it: a Drop
/// and a DropDatabase on the database.
fn drop_database(target: TargetRef, name: &str) -> Request {
    let mut r = request(Action::Drop, vec![]);
    r.target = target;
    r.statement.operations.push(Operation::new(
        Action::DropDatabase,
        vec![ResourceRef::database(name)],
    ));
    r
}

#[test]
fn database_statements_know_whether_they_reach_another_database() {
    let e = PolicyEngine::default_bundle().unwrap();
    let staging = TargetRef::new("shop_staging", "staging");
    let d = e.decide(&drop_database(staging.clone(), "shop"));
    assert_eq!(denied_by(&d), "deny-other-database");
    let Decision::Deny(denial) = &d else {
        unreachable!()
    };
    assert!(denial.message.contains("other than this target's own"));
    assert!(denial.hint.is_some());
    // Its own database: judged by the other rules (staging allows DROP; the
    // server itself refuses to drop the database it is connected to).
    assert!(e.decide(&drop_database(staging, "shop_staging")).is_allow());

    // Own means the upstream database, not the target's name.
    let renamed = TargetRef {
        database: "shop_prod".into(),
        ..TargetRef::new("shop", "development")
    };
    assert!(e
        .decide(&drop_database(renamed.clone(), "shop_prod"))
        .is_allow());
    assert_eq!(
        denied_by(&e.decide(&drop_database(renamed.clone(), "shop"))),
        "deny-other-database"
    );
    // Names are compared as stored: another spelling is another database.
    assert_eq!(
        denied_by(&e.decide(&drop_database(renamed, "Shop_prod"))),
        "deny-other-database"
    );

    // The cache keeps targets that differ only by database apart.
    let a = TargetRef {
        database: "a".into(),
        ..TargetRef::new("t", "staging")
    };
    let b = TargetRef {
        database: "b".into(),
        ..a.clone()
    };
    for _ in 0..2 {
        assert!(e.decide(&drop_database(a.clone(), "a")).is_allow());
        assert!(!e.decide(&drop_database(b.clone(), "a")).is_allow());
    }
}

#[test]
fn explain_shows_the_database_and_whether_it_is_another() {
    let e = PolicyEngine::default_bundle().unwrap();
    let x = e.explain(&drop_database(
        TargetRef::new("shop_staging", "staging"),
        "shop",
    ));
    let text = x.to_string();
    for needle in [
        "decision: deny deny-other-database",
        "target database: \"shop_staging\"",
        "context.other_database: true",
        "operation: #2 DropDatabase on [database shop]",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let plain = e.explain(&request(Action::Select, vec![]));
    assert!(plain.to_string().contains("context.other_database: false"));
}

#[test]
fn policies_can_name_databases() {
    let e = engine(&[
        BASE,
        r#"@id("keep-billing") @message("the billing database is off limits")
           forbid(principal, action, resource is Portcullis::Database)
           when { resource.name == "billing" };"#,
    ]);
    let staging = TargetRef::new("shop_staging", "staging");
    assert_eq!(
        denied_by(&e.decide(&drop_database(staging.clone(), "billing"))),
        "keep-billing"
    );
    assert!(e.decide(&drop_database(staging.clone(), "shop")).is_allow());
    // A database is not inside the target.
    let e = engine(&[
        BASE,
        r#"@id("not-in-shop") @message("m")
           forbid(principal, action, resource in Portcullis::Target::"shop_staging");"#,
    ]);
    let mut r = drop_database(staging, "shop");
    r.statement.operations.remove(0);
    assert!(e.decide(&r).is_allow());
}

/// The replacement for `other-databases.cedar` that the README suggests
/// for a development server whose test suites create their databases.
const TEST_DATABASES: &str = r#"
@id("deny-other-database-except-test-databases")
@message("statements that create, alter or drop a database other than this target's own are not allowed, except test_* databases on development targets")
@hint("name test databases test_something")
forbid(
  principal,
  action in [
    Portcullis::Action::"CreateDatabase",
    Portcullis::Action::"AlterDatabase",
    Portcullis::Action::"DropDatabase"
  ],
  resource
)
when { context.other_database }
unless {
  context.environment == "development" &&
  resource is Portcullis::Database &&
  resource.name like "test_*"
};
"#;

#[test]
fn a_development_server_can_allow_test_databases() {
    let mut sources: Vec<PolicySource> = portcullis_policy::default_bundle()
        .into_iter()
        .filter(|s| !s.name.ends_with("other-databases.cedar"))
        .collect();
    assert_eq!(sources.len(), 3);
    sources.push(PolicySource {
        name: "test-databases.cedar".into(),
        text: TEST_DATABASES.into(),
    });
    let e = PolicyEngine::from_sources(sources).unwrap();
    let dev = TargetRef::new("ci", "development");
    let create = |target: &TargetRef, name: &str| {
        let mut r = request(Action::SchemaChange, vec![]);
        r.target = target.clone();
        r.statement.operations.push(Operation::new(
            Action::CreateDatabase,
            vec![ResourceRef::database(name)],
        ));
        r
    };
    assert!(e.decide(&create(&dev, "test_run_42")).is_allow());
    assert!(e
        .decide(&drop_database(dev.clone(), "test_run_42"))
        .is_allow());
    for other in ["shop", "prod_test_x"] {
        assert_eq!(
            denied_by(&e.decide(&drop_database(dev.clone(), other))),
            "deny-other-database-except-test-databases"
        );
    }
    // Only in development; and FORCE (ending other sessions) stays refused.
    let staging = TargetRef::new("shop_staging", "staging");
    assert!(!e.decide(&create(&staging, "test_run_42")).is_allow());
    let mut force = drop_database(dev, "test_run_42");
    force
        .statement
        .dangerous
        .insert(portcullis_policy::Capability::ServerAdmin);
    assert_eq!(denied_by(&e.decide(&force)), "deny-dangerous-capabilities");
}

// ---- who an agent acts for ---------------------------------------------

#[test]
fn policies_see_the_person_an_agent_acts_for() {
    let e = engine(&[
        BASE,
        r#"@id("interns-agents-read-only")
@message("an agent acting for an intern may only read")
forbid(principal is Portcullis::Agent, action, resource)
when { principal has on_behalf_of && principal.on_behalf_of == "intern" }
unless { action in Portcullis::Action::"Read" };"#,
    ]);
    let agent = |on_behalf_of: Option<&str>, action| {
        let mut r = request(action, vec![ResourceRef::table("public", "t")]);
        r.principal = Principal {
            name: "report-bot".into(),
            kind: PrincipalKind::Agent,
            groups: vec![],
            on_behalf_of: on_behalf_of.map(str::to_owned),
        };
        r
    };
    let d = e.decide(&agent(Some("intern"), Action::Update));
    assert_eq!(denied_by(&d), "interns-agents-read-only");
    assert!(e.decide(&agent(Some("intern"), Action::Select)).is_allow());
    assert!(e.decide(&agent(Some("cto"), Action::Update)).is_allow());
    assert!(e.decide(&agent(None, Action::Update)).is_allow());
}
