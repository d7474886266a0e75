//! `PolicyEngine::may_unmask`: who may see a classified column unmasked.
//! Nobody by default; only permits that name the Unmask action grant it;
//! every forbid that can match blocks it.

use portcullis_policy::{
    default_bundle, Action, Decision, LoadError, Operation, PolicyEngine, PolicySource, Principal,
    PrincipalKind, Request, RequestContext, ResourceRef, StatementFacts, TargetRef, TimeOfDay,
    Weekday,
};

/// The masking classes (portcullis-mask's `Class` names).
const CLASSES: [&str; 14] = [
    "email",
    "phone",
    "national_id",
    "card",
    "iban",
    "bank_account",
    "date_of_birth",
    "address",
    "person_name",
    "password",
    "password_hash",
    "token",
    "api_key",
    "secret",
];

const DBA_ON_STAGING: &str = r#"
@id("dba-unmasks-on-staging")
permit(principal in Portcullis::Group::"dba", action == Portcullis::Action::"Unmask", resource)
when { context.environment == "staging" && resource.classification != "password_hash" };
"#;

fn sources(extra: &[&str]) -> Vec<PolicySource> {
    let mut sources = default_bundle();
    sources.extend(extra.iter().enumerate().map(|(i, text)| PolicySource {
        name: format!("extra{i}.cedar"),
        text: (*text).to_owned(),
    }));
    sources
}

/// The default bundle and `extra`.
fn bundle_with(extra: &[&str]) -> PolicyEngine {
    match PolicyEngine::from_sources(sources(extra)) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

/// `files` alone.
fn only(files: &[&str]) -> PolicyEngine {
    let sources = files
        .iter()
        .enumerate()
        .map(|(i, text)| PolicySource {
            name: format!("p{i}.cedar"),
            text: (*text).to_owned(),
        })
        .collect();
    match PolicyEngine::from_sources(sources) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

#[track_caller]
fn problems(extra: &[&str]) -> Vec<String> {
    match PolicyEngine::from_sources(sources(extra)) {
        Ok(_) => panic!("loaded"),
        Err(LoadError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn person(name: &str, kind: PrincipalKind, groups: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        kind,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        on_behalf_of: None,
    }
}

fn dba() -> Principal {
    person("dora", PrincipalKind::Human, &["dba"])
}

fn context() -> RequestContext {
    RequestContext {
        time: TimeOfDay {
            hour: 14,
            minute: 0,
            weekday: Weekday::Tuesday,
        },
        source_address: Some("10.1.2.3".parse().unwrap()),
        approved: false,
        row_limit: None,
    }
}

fn email() -> ResourceRef {
    ResourceRef::column("public", "users", "email")
}

/// `principal` asks about public.users.email classified `class`.
fn may(e: &PolicyEngine, principal: &Principal, environment: &str, class: &str) -> bool {
    let target = TargetRef::new("shop", environment);
    e.may_unmask(principal, &target, &context(), &email(), class)
}

#[test]
fn the_default_bundle_unmasks_nothing_for_anyone() {
    let e = PolicyEngine::default_bundle().unwrap();
    let principals = [
        dba(),
        person("root", PrincipalKind::Human, &["dba", "admin", "everyone"]),
        person("bot", PrincipalKind::Agent, &["dba"]),
        person("etl", PrincipalKind::Service, &[]),
    ];
    for principal in &principals {
        for environment in ["production", "staging", "development"] {
            for class in CLASSES.iter().chain(&["", "unknown"]) {
                assert!(
                    !may(&e, principal, environment, class),
                    "{principal:?} {environment} {class}"
                );
            }
        }
    }
}

#[test]
fn the_documented_example_unmasks_for_dbas_on_staging_only() {
    let e = bundle_with(&[DBA_ON_STAGING]);
    assert!(may(&e, &dba(), "staging", "email"));
    assert!(may(&e, &dba(), "staging", "card"));
    assert!(!may(&e, &dba(), "production", "email"));
    assert!(!may(&e, &dba(), "development", "email"));
    assert!(!may(&e, &dba(), "staging", "password_hash"));
    let developer = person("dev", PrincipalKind::Human, &["developers"]);
    assert!(!may(&e, &developer, "staging", "email"));
    // Agents are in groups too.
    let agent = person("bot", PrincipalKind::Agent, &["dba"]);
    assert!(may(&e, &agent, "staging", "email"));
}

#[test]
fn a_permit_without_unmask_in_its_action_scope_does_not_unmask() {
    for permit in [
        r#"@id("everything") permit(principal, action, resource);"#,
        r#"@id("dba-everything") permit(principal in Portcullis::Group::"dba", action, resource);"#,
        r#"@id("dba-reads") permit(principal in Portcullis::Group::"dba", action in Portcullis::Action::"Read", resource);"#,
        r#"@id("dba-columns") permit(principal in Portcullis::Group::"dba", action, resource is Portcullis::Column);"#,
    ] {
        let e = only(&[permit]);
        assert!(!may(&e, &dba(), "staging", "email"), "{permit}");
        assert!(!may(&e, &dba(), "production", "email"), "{permit}");
    }
}

#[test]
fn a_permit_listing_unmask_among_other_actions_unmasks() {
    let e = only(&[r#"@id("dba-reads-and-unmasks")
        permit(
          principal in Portcullis::Group::"dba",
          action in [Portcullis::Action::"Select", Portcullis::Action::"Unmask"],
          resource
        );"#]);
    assert!(may(&e, &dba(), "production", "email"));
    // The same policy still permits what it names for statements.
    let mut r = select(dba());
    assert!(e.decide(&r).is_allow());
    r.principal = person("dev", PrincipalKind::Human, &[]);
    assert!(!e.decide(&r).is_allow());
    assert!(!may(&e, &r.principal, "production", "email"));
}

#[test]
fn forbids_beat_permits_blanket_ones_included() {
    let cards = r#"@id("cards-stay-masked") @message("card numbers are never shown")
        forbid(principal, action == Portcullis::Action::"Unmask", resource)
        when { resource.classification == "card" };"#;
    let e = bundle_with(&[DBA_ON_STAGING, cards]);
    assert!(may(&e, &dba(), "staging", "email"));
    assert!(!may(&e, &dba(), "staging", "card"));

    // A forbid whose action scope is unconstrained covers unmasking too.
    let no_agents = r#"@id("agents-read-only") @message("agents may only read")
        forbid(principal is Portcullis::Agent, action, resource)
        unless { action in Portcullis::Action::"Read" };"#;
    let e = bundle_with(&[DBA_ON_STAGING, no_agents]);
    assert!(may(&e, &dba(), "staging", "email"));
    let agent = person("bot", PrincipalKind::Agent, &["dba"]);
    assert!(!may(&e, &agent, "staging", "email"));

    // A forbid about statements only does not.
    let no_selects = r#"@id("no-select") @message("no")
        forbid(principal, action == Portcullis::Action::"Select", resource);"#;
    let e = bundle_with(&[DBA_ON_STAGING, no_selects]);
    assert!(may(&e, &dba(), "staging", "email"));
}

#[test]
fn a_forbid_that_fails_to_evaluate_keeps_the_column_masked() {
    // Overflows for any hour above 1; Cedar would skip the forbid.
    let overflow = r#"@id("overflow") @message("m")
        forbid(principal, action == Portcullis::Action::"Unmask", resource)
        when { context.time.hour * 9223372036854775807 < 0 };"#;
    let e = bundle_with(&[DBA_ON_STAGING, overflow]);
    assert!(!may(&e, &dba(), "staging", "email"));
    let target = TargetRef::new("shop", "staging");
    let mut c = context();
    c.time.hour = 1;
    assert!(e.may_unmask(&dba(), &target, &c, &email(), "email"));
}

#[test]
fn the_context_is_the_target_and_the_client_with_no_statement() {
    let office = r#"@id("office-unmasks") permit(principal, action == Portcullis::Action::"Unmask", resource)
        when {
          context has source_address && context.source_address.isInRange(ip("10.0.0.0/8")) &&
          context.target == "shop" && !context.opaque && context.dangerous.isEmpty() &&
          context.functions.isEmpty() && context.statement_count == 0 &&
          !context.has_effective_where && !context.approved && !context.other_database &&
          !(context has row_limit)
        };"#;
    let e = only(&[office]);
    let target = TargetRef::new("shop", "production");
    let mut c = context();
    assert!(e.may_unmask(&dba(), &target, &c, &email(), "email"));
    // `approved` is not the caller's to set.
    c.approved = true;
    assert!(e.may_unmask(&dba(), &target, &c, &email(), "email"));
    c.source_address = Some("192.0.2.1".parse().unwrap());
    assert!(!e.may_unmask(&dba(), &target, &c, &email(), "email"));
    c.source_address = None;
    assert!(!e.may_unmask(&dba(), &target, &c, &email(), "email"));
    c = context();
    c.row_limit = Some(1000);
    assert!(!e.may_unmask(&dba(), &target, &c, &email(), "email"));
    let other = TargetRef::new("crm", "production");
    assert!(!e.may_unmask(&dba(), &other, &context(), &email(), "email"));
}

#[test]
fn the_column_is_in_its_table_schema_and_target() {
    let e = only(&[r#"@id("users-table")
        permit(principal, action == Portcullis::Action::"Unmask", resource in Portcullis::Table::"public.users")
        when { resource.schema == "public" && resource.table == "users" && resource.name != "ssn" };
        @id("shop-only") @message("m")
        forbid(principal, action == Portcullis::Action::"Unmask", resource)
        unless { resource in Portcullis::Target::"shop" };"#]);
    let shop = TargetRef::new("shop", "production");
    let c = context();
    let p = dba();
    assert!(e.may_unmask(&p, &shop, &c, &email(), "email"));
    let ssn = ResourceRef::column("public", "users", "ssn");
    assert!(!e.may_unmask(&p, &shop, &c, &ssn, "national_id"));
    let orders = ResourceRef::column("public", "orders", "email");
    assert!(!e.may_unmask(&p, &shop, &c, &orders, "email"));
    let crm = TargetRef::new("crm", "production");
    assert!(!e.may_unmask(&p, &crm, &c, &email(), "email"));
    // Quoted names use the Column id spelling.
    let e = only(&[r#"@id("sales")
        permit(principal, action == Portcullis::Action::"Unmask", resource == Portcullis::Column::"\"Sales\".\"Q1 totals\".\"Email\"");"#]);
    let quoted = ResourceRef::column("Sales", "Q1 totals", "Email");
    assert!(e.may_unmask(&p, &shop, &c, &quoted, "email"));
    assert!(!e.may_unmask(&p, &shop, &c, &email(), "email"));
}

#[test]
fn only_columns_are_ever_unmasked() {
    let e = only(&[
        r#"@id("all") permit(principal, action == Portcullis::Action::"Unmask", resource);"#,
    ]);
    let shop = TargetRef::new("shop", "production");
    assert!(e.may_unmask(&dba(), &shop, &context(), &email(), "email"));
    for not_a_column in [
        ResourceRef::table("public", "users"),
        ResourceRef::schema("public"),
        ResourceRef::database("shop"),
    ] {
        assert!(!e.may_unmask(&dba(), &shop, &context(), &not_a_column, "email"));
    }
}

#[test]
fn cached_answers_equal_fresh_ones() {
    let files = [
        DBA_ON_STAGING,
        r#"@id("not-at-night") @message("m")
           forbid(principal, action == Portcullis::Action::"Unmask", resource)
           when { context.time.hour < 6 };"#,
    ];
    let cached = bundle_with(&files);
    let tiny = bundle_with(&files).with_cache_capacity(1);
    let fresh = bundle_with(&files).with_cache_capacity(0);
    assert!(cached.unmask_reads_time());
    assert!(!PolicyEngine::default_bundle().unwrap().unmask_reads_time());
    let principals = [dba(), person("dev", PrincipalKind::Human, &["developers"])];
    for _round in 0..2 {
        for principal in &principals {
            for environment in ["staging", "production"] {
                for class in ["email", "password_hash"] {
                    for hour in [3, 12] {
                        let target = TargetRef::new("shop", environment);
                        let mut c = context();
                        c.time.hour = hour;
                        let answer = fresh.may_unmask(principal, &target, &c, &email(), class);
                        assert_eq!(
                            cached.may_unmask(principal, &target, &c, &email(), class),
                            answer
                        );
                        assert_eq!(
                            tiny.may_unmask(principal, &target, &c, &email(), class),
                            answer
                        );
                        let expected = principal.groups.contains(&"dba".to_owned())
                            && environment == "staging"
                            && class != "password_hash"
                            && hour >= 6;
                        assert_eq!(
                            answer, expected,
                            "{principal:?} {environment} {class} {hour}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn classification_validates_on_columns_for_unmask_and_statements() {
    // On Unmask the resource is always a Column.
    bundle_with(&[DBA_ON_STAGING]);
    // Statement actions may be about any object: say it is a Column first.
    // That loads, with a warning: statements carry no classification.
    let e = bundle_with(&[r#"@id("no-password-hash-reads") @message("m")
        forbid(principal, action == Portcullis::Action::"Select", resource is Portcullis::Column)
        when { resource.classification == "password_hash" };"#]);
    let w: Vec<String> = e.warnings().iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|m| m.contains("no-password-hash-reads") && m.contains("Unmask")),
        "{w:?}"
    );
    assert!(bundle_with(&[DBA_ON_STAGING]).warnings().is_empty());
    bundle_with(&[r#"@id("both") permit(
          principal,
          action in [Portcullis::Action::"Select", Portcullis::Action::"Unmask"],
          resource
        ) when { resource is Portcullis::Column && resource.classification == "email" };"#]);

    let p = problems(&[r#"@id("any-object") @message("m")
        forbid(principal, action == Portcullis::Action::"Select", resource)
        when { resource.classification == "password_hash" };"#]);
    assert!(p.iter().any(|m| m.contains("classification")), "{p:?}");
    let p = problems(&[r#"@id("typo")
        permit(principal, action == Portcullis::Action::"Unmask", resource)
        when { resource.clasification == "email" };"#]);
    assert!(p.iter().any(|m| m.contains("clasification")), "{p:?}");
    // Unmask is only about columns: a policy about tables can never apply.
    let e = bundle_with(&[r#"@id("tables")
        permit(principal, action == Portcullis::Action::"Unmask", resource is Portcullis::Table);"#]);
    let w: Vec<String> = e.warnings().iter().map(ToString::to_string).collect();
    assert!(w.iter().any(|m| m.contains("tables")), "{w:?}");
}

fn select(principal: Principal) -> Request {
    Request {
        principal,
        target: TargetRef::new("shop", "production"),
        statement: StatementFacts {
            operations: vec![Operation::new(
                Action::Select,
                vec![ResourceRef::column("public", "users", "email")],
            )],
            statement_count: 1,
            ..Default::default()
        },
        context: context(),
    }
}

#[test]
fn unmask_policies_do_not_change_statement_decisions() {
    // A bundle of unmask permits alone permits no statement.
    let e = only(&[DBA_ON_STAGING]);
    let d = e.decide(&select(dba()));
    assert!(matches!(d, Decision::Deny(_)), "{d:?}");
    // Added to the default bundle, they change no statement decision.
    let plain = PolicyEngine::default_bundle().unwrap();
    let with = bundle_with(&[DBA_ON_STAGING]);
    for action in Action::ALL {
        for environment in ["production", "staging"] {
            let mut r = select(dba());
            r.statement.operations[0].action = action;
            r.target.environment = environment.into();
            assert_eq!(plain.decide(&r), with.decide(&r), "{action} {environment}");
        }
    }
    // Nor what statements cost: the example mentions `resource`, yet a
    // statement touching two columns is still asked about once, against
    // the target.
    let mut r = select(dba());
    r.statement.operations[0]
        .resources
        .push(ResourceRef::column("public", "users", "phone"));
    let evaluations = with.explain(&r).evaluations;
    assert_eq!(evaluations.len(), 1, "{evaluations:?}");
    // Unmask is not a statement class.
    assert!("unmask".parse::<Action>().is_err());
}
