use super::*;
use crate::request::Person;
use crate::rules::RuleError;
use crate::Digest;

fn person(subject: &str, groups: &[&str]) -> Person {
    Person {
        subject: subject.into(),
        kind: "human".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        on_behalf_of: None,
    }
}

fn asked(expires_at: i64) -> NewRequest {
    NewRequest {
        requester: person("dev", &["developers"]),
        target: "shop".into(),
        environment: "production".into(),
        session: "s1".into(),
        statement: "CREATE INDEX ON orders (total)".into(),
        parameters: vec![],
        digest: Digest::of("dev", "shop", b"CREATE INDEX ON orders (total)", b""),
        policy: "approve-schema-change-in-production".into(),
        approvers: "dba".into(),
        reason: "schema changes in production need approval".into(),
        analysis: vec!["CREATE INDEX on public.orders".into()],
        dry_run: None,
        in_transaction: false,
        required: 1,
        window: None,
        expires_at,
        rerun: false,
    }
}

#[test]
fn requests_are_kept_decided_and_closed_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let store = Store::open_sqlite(&path).unwrap();
    let a = store.create(RequestId::new(), asked(10_000), 1).unwrap();
    let b = store.create(RequestId::new(), asked(10_000), 2).unwrap();
    let c = store.create(RequestId::new(), asked(5), 3).unwrap();
    // Reopened: the same requests.
    let store = Store::open_sqlite(&path).unwrap();
    assert_eq!(store.get(&a.id).unwrap(), Some(a.clone()));
    let dba = person("dora", &["dba"]);
    let pending: Vec<_> = store
        .list(&dba, true, 6, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        pending,
        vec![b.id.clone(), a.id.clone()],
        "newest first, expired left out"
    );
    assert_eq!(store.list(&dba, false, 6, 10).unwrap().len(), 3);
    // Only those who asked, or may decide, see requests.
    assert_eq!(
        store.list(&person("DEV", &[]), false, 6, 10).unwrap().len(),
        3
    );
    assert!(store
        .list(&person("eve", &["ops"]), false, 6, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get(&c.id).unwrap().unwrap().state_at(6),
        State::Expired
    );

    let decided = store
        .decide(&a.id, &dba, Verdict::Approve, None, 7)
        .unwrap();
    assert_eq!(decided.state, State::Approved);
    assert_eq!(store.get(&a.id).unwrap().unwrap(), decided);
    // A close after a decision keeps the decision.
    assert_eq!(
        store.close(&a.id, State::Withdrawn, 8).unwrap().state,
        State::Approved
    );
    assert_eq!(
        store.close(&b.id, State::Withdrawn, 8).unwrap().state,
        State::Withdrawn
    );
    assert!(matches!(
        store.decide(&b.id, &dba, Verdict::Approve, None, 9),
        Err(DecideError::Rule(RuleError::Closed(_, State::Withdrawn)))
    ));
    assert!(matches!(
        store.decide(&RequestId::new(), &dba, Verdict::Approve, None, 9),
        Err(DecideError::NotFound(_))
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the store is private to its owner");
    }
}

#[test]
fn shares_the_file_with_the_keys_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
    }
    Store::open_sqlite(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 7, "the file's user_version belongs to the keys");
    c.execute(
        "UPDATE portcullis_parts SET version = 99 WHERE part = 'approvals'",
        [],
    )
    .unwrap();
    assert!(matches!(
        Store::open_sqlite(&path),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
}

#[test]
fn a_rerun_approval_runs_once_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("control.db")).unwrap();
    let mut rerun = asked(10_000);
    rerun.rerun = true;
    let digest = rerun.digest.clone();
    let r = store.create(RequestId::new(), rerun, 1).unwrap();
    let dba = person("dora", &["dba"]);
    let any = |_: &Request| true;
    let take = |d: &Digest, same: &dyn Fn(&Request) -> bool, now| {
        store.take_rerun(d, same, now, 1_000).unwrap()
    };
    // Not before it is approved.
    assert_eq!(take(&digest, &any, 2), None);
    store
        .decide(&r.id, &dba, Verdict::Approve, None, 100)
        .unwrap();
    // Not for another statement, past the window, or when the caller's
    // own comparison fails.
    let other = Digest::of("dev", "shop", b"DROP INDEX x", b"");
    assert_eq!(take(&other, &any, 200), None);
    assert_eq!(take(&digest, &any, 1_100), None);
    assert_eq!(take(&digest, &|_| false, 200), None);
    let taken = take(&digest, &any, 200).expect("taken");
    assert_eq!((taken.id.clone(), taken.used_at), (r.id.clone(), Some(200)));
    assert_eq!(take(&digest, &any, 300), None, "once");
    // A request of a session that waited is never taken again.
    let waited = store.create(RequestId::new(), asked(10_000), 3).unwrap();
    store
        .decide(&waited.id, &dba, Verdict::Approve, None, 400)
        .unwrap();
    assert_eq!(take(&digest, &any, 500), None);
}
