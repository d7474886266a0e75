//! `[[limit]]`: limits per identity, group or principal kind. Every entry
//! that matches an identity applies, and the strictest value of each limit
//! wins, so adding an entry can only tighten what someone may do.

use serde::Deserialize;

use crate::{Duration, IdentityKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Named in refusals and logs.
    pub name: String,
    /// Who it applies to: any of these kinds, groups or subjects (at least
    /// one list).
    #[serde(default)]
    pub kinds: Vec<IdentityKind>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Most concurrent sessions per identity.
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// Longest a statement may run; the session cannot raise or disable it.
    #[serde(default)]
    pub statement_timeout: Option<Duration>,
    /// Most rows the identity's statements may change (insert, update,
    /// delete; cascades and triggers included) within any
    /// `rows_changed_window`, across all its sessions on this proxy.
    #[serde(default)]
    pub max_rows_changed: Option<u64>,
    /// The sliding window of `max_rows_changed`; default one hour.
    #[serde(default)]
    pub rows_changed_window: Option<Duration>,
    /// Most rows one statement may return (result rows and COPY TO rows;
    /// each Execute and each FETCH is a statement).
    #[serde(default)]
    pub max_rows_returned: Option<u64>,
    /// Most bytes of result data one statement may return.
    #[serde(default)]
    pub max_bytes_returned: Option<u64>,
    /// Most rows one session may be returned, over all its statements.
    #[serde(default)]
    pub max_rows_returned_per_session: Option<u64>,
    /// Most bytes of result data one session may be returned.
    #[serde(default)]
    pub max_bytes_returned_per_session: Option<u64>,
}

/// `max_rows_changed` rows per `window`, from the `[[limit]]` `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsChanged {
    pub name: String,
    pub max: u64,
    pub window: std::time::Duration,
}

/// How much result data an identity's statements and sessions may return
/// (`max_rows_returned` and the like), each the strictest of every
/// matching `[[limit]]`, with that entry's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Returned {
    pub rows: Option<(u64, String)>,
    pub bytes: Option<(u64, String)>,
    pub session_rows: Option<(u64, String)>,
    pub session_bytes: Option<(u64, String)>,
}

impl Returned {
    /// Whether any of them is set.
    pub fn any(&self) -> bool {
        self.rows.is_some()
            || self.bytes.is_some()
            || self.session_rows.is_some()
            || self.session_bytes.is_some()
    }
}

/// Keeps the smaller of `slot` and `value` (from limit `name`).
fn tighten(slot: &mut Option<(u64, String)>, value: Option<u64>, name: &str) {
    if let Some(n) = value {
        if slot.as_ref().is_none_or(|(m, _)| n < *m) {
            *slot = Some((n, name.to_owned()));
        }
    }
}

/// The window of `max_rows_changed` when none is given.
pub const DEFAULT_ROWS_CHANGED_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

impl Limit {
    pub fn matches(&self, kind: IdentityKind, subject: &str, groups: &[String]) -> bool {
        crate::model::matches_identity(
            &self.kinds,
            &self.groups,
            &self.subjects,
            (kind, subject, groups),
        )
    }
}

/// The limits in force for one identity: the strictest of every matching
/// `[[limit]]`, each with the name of the entry it came from. Windows of
/// rows changed do not compare (100 an hour, 30 a minute): every matching
/// one holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub max_sessions: Option<(usize, String)>,
    pub statement_timeout: Option<(std::time::Duration, String)>,
    pub rows_changed: Vec<RowsChanged>,
    pub returned: Returned,
}

/// The limits `limits` set for an identity of `kind`, `subject`, `groups`.
pub fn effective(
    limits: &[Limit],
    kind: IdentityKind,
    subject: &str,
    groups: &[String],
) -> EffectiveLimits {
    let mut out = EffectiveLimits::default();
    for l in limits.iter().filter(|l| l.matches(kind, subject, groups)) {
        if let Some(n) = l.max_sessions {
            if out.max_sessions.as_ref().is_none_or(|(m, _)| n < *m) {
                out.max_sessions = Some((n, l.name.clone()));
            }
        }
        if let Some(t) = l.statement_timeout {
            if out.statement_timeout.as_ref().is_none_or(|(m, _)| t.0 < *m) {
                out.statement_timeout = Some((t.0, l.name.clone()));
            }
        }
        if let Some(max) = l.max_rows_changed {
            out.rows_changed.push(RowsChanged {
                name: l.name.clone(),
                max,
                window: l
                    .rows_changed_window
                    .map_or(DEFAULT_ROWS_CHANGED_WINDOW, |w| w.0),
            });
        }
        let r = &mut out.returned;
        tighten(&mut r.rows, l.max_rows_returned, &l.name);
        tighten(&mut r.bytes, l.max_bytes_returned, &l.name);
        tighten(
            &mut r.session_rows,
            l.max_rows_returned_per_session,
            &l.name,
        );
        tighten(
            &mut r.session_bytes,
            l.max_bytes_returned_per_session,
            &l.name,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(
        name: &str,
        kinds: &[IdentityKind],
        groups: &[&str],
        sessions: Option<usize>,
        timeout: Option<u64>,
    ) -> Limit {
        Limit {
            name: name.into(),
            kinds: kinds.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            subjects: vec![],
            max_sessions: sessions,
            statement_timeout: timeout.map(Duration::from_secs),
            max_rows_changed: None,
            rows_changed_window: None,
            max_rows_returned: None,
            max_bytes_returned: None,
            max_rows_returned_per_session: None,
            max_bytes_returned_per_session: None,
        }
    }

    #[test]
    fn the_smallest_returned_limit_of_each_kind_wins() {
        let mut agents = limit("agents", &[IdentityKind::Agent], &[], None, None);
        agents.max_rows_returned = Some(1000);
        agents.max_bytes_returned_per_session = Some(1 << 20);
        let mut batch = limit("batch", &[], &["batch"], None, None);
        batch.max_rows_returned = Some(50);
        batch.max_bytes_returned_per_session = Some(1 << 30);
        batch.max_rows_returned_per_session = Some(5000);
        let e = effective(
            &[agents, batch],
            IdentityKind::Agent,
            "bot",
            &["batch".into()],
        );
        assert_eq!(
            e.returned,
            Returned {
                rows: Some((50, "batch".into())),
                bytes: None,
                session_rows: Some((5000, "batch".into())),
                session_bytes: Some((1 << 20, "agents".into())),
            }
        );
        assert!(e.returned.any());
        assert!(!Returned::default().any());
    }

    #[test]
    fn the_strictest_matching_limit_wins() {
        let limits = [
            limit("agents", &[IdentityKind::Agent], &[], Some(5), Some(60)),
            limit("batch", &[], &["batch"], Some(10), Some(30)),
            limit("humans", &[IdentityKind::Human], &[], Some(1), Some(1)),
        ];
        let e = effective(&limits, IdentityKind::Agent, "bot", &["batch".into()]);
        assert_eq!(e.max_sessions, Some((5, "agents".into())));
        assert_eq!(
            e.statement_timeout,
            Some((std::time::Duration::from_secs(30), "batch".into()))
        );
        assert_eq!(
            effective(&limits, IdentityKind::Service, "job", &[]),
            EffectiveLimits::default()
        );
    }

    #[test]
    fn every_matching_window_of_rows_changed_holds() {
        let mut hourly = limit("agents", &[IdentityKind::Agent], &[], None, None);
        hourly.max_rows_changed = Some(500);
        let mut burst = limit("batch", &[], &["batch"], None, None);
        burst.max_rows_changed = Some(30);
        burst.rows_changed_window = Some(Duration::from_secs(60));
        let e = effective(
            &[hourly, burst],
            IdentityKind::Agent,
            "bot",
            &["batch".into()],
        );
        assert_eq!(
            e.rows_changed,
            vec![
                RowsChanged {
                    name: "agents".into(),
                    max: 500,
                    window: DEFAULT_ROWS_CHANGED_WINDOW
                },
                RowsChanged {
                    name: "batch".into(),
                    max: 30,
                    window: std::time::Duration::from_secs(60)
                },
            ]
        );
    }
}
