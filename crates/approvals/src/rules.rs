//! Who may decide a request, and what a decision does to it.
//!
//! - The approver must be a human in the group the policy names.
//! - Four eyes: nobody decides a request they made, or one an agent or
//!   service made on their behalf (nor does an identity acting for them).
//! - Each approver decides once; a denial needs a reason.
//! - N of M: the request is approved once `required` members approved it;
//!   one denial denies it.
//! - An optional window (UTC days and hours) limits when approvals count.

use serde::{Deserialize, Serialize};

use crate::request::{Decided, Person, Request, State, Verdict};

/// How a group's approvals work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Approvals a request needs (at least 1).
    pub required: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            required: 1,
            window: None,
        }
    }
}

/// When approvals may be given: on `days` (bit 0 Monday .. bit 6 Sunday),
/// from `from_minute` to `to_minute` of the day, UTC (wrapping past
/// midnight when `from_minute > to_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub days: u8,
    pub from_minute: u16,
    pub to_minute: u16,
}

impl Window {
    /// Whether `now` (milliseconds since the epoch) is inside the window.
    pub fn contains(&self, now: i64) -> bool {
        let minutes = now.div_euclid(60_000);
        let day = minutes.div_euclid(1440);
        let minute = u16::try_from(minutes.rem_euclid(1440)).unwrap_or(0);
        // 1970-01-01 was a Thursday (weekday 3 counting from Monday 0).
        let weekday = |d: i64| (d + 3).rem_euclid(7) as u8;
        let on = |d: i64| self.days & (1 << weekday(d)) != 0;
        if self.from_minute <= self.to_minute {
            on(day) && minute >= self.from_minute && minute < self.to_minute
        } else if minute >= self.from_minute {
            on(day)
        } else {
            // The early hours belong to the window opened the day before.
            minute < self.to_minute && on(day - 1)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("request {0} is already {1}")]
    Closed(String, State),
    #[error("request {0} has expired")]
    Expired(String),
    #[error("only members of group \"{0}\" may decide this request")]
    NotInGroup(String),
    #[error("only a person may approve or deny a request, not an agent or service")]
    NotAPerson,
    #[error(
        "you cannot decide a request you made (or one made on your behalf): someone else must"
    )]
    OwnRequest,
    #[error("you have already decided this request")]
    AlreadyDecided,
    #[error("a denial needs a reason")]
    ReasonRequired,
    #[error("approvals for group \"{0}\" are only given inside its time window")]
    OutsideWindow(String),
}

/// Applies `approver`'s `verdict` to `request` at `now`, as the rules
/// allow; returns its new state.
pub fn decide(
    request: &mut Request,
    approver: &Person,
    verdict: Verdict,
    reason: Option<String>,
    now: i64,
) -> Result<State, RuleError> {
    let id = request.id.0.clone();
    match request.state_at(now) {
        State::Pending => {}
        State::Expired => return Err(RuleError::Expired(id)),
        s => return Err(RuleError::Closed(id, s)),
    }
    let asked = &request.asked;
    if !approver.groups.contains(&asked.approvers) {
        return Err(RuleError::NotInGroup(asked.approvers.clone()));
    }
    if !approver.is_human() {
        return Err(RuleError::NotAPerson);
    }
    // Names compare as people write them: `Dora` and `dora` (an email
    // in a token, a configured user name) are one person.
    let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    if approver
        .people()
        .any(|p| asked.requester.people().any(|q| same(p, q)))
    {
        return Err(RuleError::OwnRequest);
    }
    if request.decisions.iter().any(|d| {
        d.approver
            .people()
            .any(|p| approver.people().any(|q| same(p, q)))
    }) {
        return Err(RuleError::AlreadyDecided);
    }
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if verdict == Verdict::Deny && reason.is_none() {
        return Err(RuleError::ReasonRequired);
    }
    if verdict == Verdict::Approve && asked.window.is_some_and(|w| !w.contains(now)) {
        return Err(RuleError::OutsideWindow(asked.approvers.clone()));
    }
    request.decisions.push(Decided {
        approver: approver.clone(),
        verdict,
        reason,
        at: now,
    });
    let approvals = request.approvals().count() as u64;
    request.state = match verdict {
        Verdict::Deny => State::Denied,
        Verdict::Approve if approvals >= u64::from(asked.required.max(1)) => State::Approved,
        Verdict::Approve => State::Pending,
    };
    if request.state.is_final() {
        request.closed_at = Some(now);
    }
    Ok(request.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{NewRequest, RequestId};
    use crate::Digest;

    fn person(subject: &str, kind: &str, groups: &[&str], on_behalf_of: Option<&str>) -> Person {
        Person {
            subject: subject.into(),
            kind: kind.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            on_behalf_of: on_behalf_of.map(str::to_owned),
        }
    }

    fn request(requester: Person, required: u32) -> Request {
        Request {
            id: RequestId::new(),
            asked: NewRequest {
                requester,
                target: "shop".into(),
                environment: "production".into(),
                session: "s1".into(),
                statement: "CREATE INDEX ON orders (total)".into(),
                parameters: vec![],
                digest: Digest("d".into()),
                policy: "approve-schema-change-in-production".into(),
                approvers: "dba".into(),
                reason: "schema changes in production need approval".into(),
                analysis: vec![],
                dry_run: None,
                in_transaction: false,
                required,
                window: None,
                expires_at: 1_000_000,
                rerun: false,
            },
            created_at: 0,
            state: State::Pending,
            decisions: vec![],
            closed_at: None,
            used_at: None,
        }
    }

    #[test]
    fn a_member_of_the_group_approves() {
        let mut r = request(person("dev", "human", &["developers"], None), 1);
        let dba = person("dora", "human", &["dba"], None);
        assert_eq!(
            decide(&mut r, &dba, Verdict::Approve, None, 10),
            Ok(State::Approved)
        );
        assert_eq!(r.closed_at, Some(10));
        assert_eq!(
            decide(
                &mut r,
                &person("don", "human", &["dba"], None),
                Verdict::Approve,
                None,
                11
            ),
            Err(RuleError::Closed(r.id.0.clone(), State::Approved))
        );
    }

    #[test]
    fn outsiders_requesters_and_machines_may_not_decide() {
        let agent = person("ai-bot", "agent", &["dba"], Some("dora"));
        let mut r = request(agent.clone(), 1);
        let err =
            |r: &mut Request, p: &Person| decide(r, p, Verdict::Approve, None, 10).unwrap_err();
        assert_eq!(
            err(&mut r, &person("eve", "human", &["developers"], None)),
            RuleError::NotInGroup("dba".into())
        );
        // The human the agent acts for, the agent itself, another agent
        // acting for that human, and any machine identity.
        assert_eq!(
            err(&mut r, &person("dora", "human", &["dba"], None)),
            RuleError::OwnRequest
        );
        assert_eq!(err(&mut r, &agent), RuleError::NotAPerson);
        assert_eq!(
            err(&mut r, &person("svc", "service", &["dba"], None)),
            RuleError::NotAPerson
        );
        let mut own = request(person("dora", "human", &["dba"], None), 1);
        assert_eq!(
            err(&mut own, &person("dora", "human", &["dba"], None)),
            RuleError::OwnRequest
        );
        assert_eq!(
            err(&mut own, &person("Dora ", "human", &["dba"], None)),
            RuleError::OwnRequest
        );
        assert_eq!(r.state, State::Pending);
        assert!(r.decisions.is_empty());
    }

    #[test]
    fn n_of_m_and_one_denial() {
        let mut r = request(person("dev", "human", &[], None), 2);
        let a = person("ann", "human", &["dba"], None);
        let b = person("bob", "human", &["dba"], None);
        assert_eq!(
            decide(&mut r, &a, Verdict::Approve, None, 1),
            Ok(State::Pending)
        );
        assert_eq!(
            decide(&mut r, &a, Verdict::Approve, None, 2),
            Err(RuleError::AlreadyDecided)
        );
        assert_eq!(
            decide(
                &mut r,
                &person("ANN", "human", &["dba"], None),
                Verdict::Approve,
                None,
                2
            ),
            Err(RuleError::AlreadyDecided),
            "one person counts once"
        );
        assert_eq!(
            decide(&mut r, &b, Verdict::Approve, None, 3),
            Ok(State::Approved)
        );

        let mut r = request(person("dev", "human", &[], None), 2);
        assert_eq!(
            decide(&mut r, &a, Verdict::Approve, None, 1),
            Ok(State::Pending)
        );
        assert_eq!(
            decide(&mut r, &b, Verdict::Deny, Some("  ".into()), 2),
            Err(RuleError::ReasonRequired)
        );
        assert_eq!(
            decide(
                &mut r,
                &b,
                Verdict::Deny,
                Some("not during the sale".into()),
                2
            ),
            Ok(State::Denied)
        );
        assert_eq!(
            r.denial().unwrap().reason.as_deref(),
            Some("not during the sale")
        );
    }

    #[test]
    fn expired_requests_cannot_be_decided() {
        let mut r = request(person("dev", "human", &[], None), 1);
        let a = person("ann", "human", &["dba"], None);
        assert_eq!(
            decide(&mut r, &a, Verdict::Approve, None, 1_000_000),
            Err(RuleError::Expired(r.id.0.clone()))
        );
    }

    #[test]
    fn windows_follow_utc_days_and_hours() {
        // 2026-12-07 is a Monday.
        let monday_9 = (20_794 * 1440 + 9 * 60) * 60_000;
        let weekdays_8_to_18 = Window {
            days: 0b001_1111,
            from_minute: 8 * 60,
            to_minute: 18 * 60,
        };
        assert!(weekdays_8_to_18.contains(monday_9));
        assert!(!weekdays_8_to_18.contains(monday_9 - 2 * 3_600_000));
        assert!(!weekdays_8_to_18.contains(monday_9 - 2 * 86_400_000));
        let nights = Window {
            days: 0b000_0001,
            from_minute: 22 * 60,
            to_minute: 2 * 60,
        };
        // Monday 23:00 and Tuesday 01:00 are in Monday's night; Monday
        // 01:00 belongs to Sunday's, which is not on.
        assert!(nights.contains(monday_9 + 14 * 3_600_000));
        assert!(nights.contains(monday_9 + 16 * 3_600_000));
        assert!(!nights.contains(monday_9 - 8 * 3_600_000));

        let mut r = request(person("dev", "human", &[], None), 1);
        r.asked.window = Some(weekdays_8_to_18);
        r.asked.expires_at = i64::MAX;
        let a = person("ann", "human", &["dba"], None);
        assert_eq!(
            decide(
                &mut r,
                &a,
                Verdict::Approve,
                None,
                monday_9 - 2 * 86_400_000
            ),
            Err(RuleError::OutsideWindow("dba".into()))
        );
        assert_eq!(
            decide(&mut r, &a, Verdict::Approve, None, monday_9),
            Ok(State::Approved)
        );
    }
}
