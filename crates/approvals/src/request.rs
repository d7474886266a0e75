//! A request for approval and its decisions.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::rules::Window;

/// `R-` and 16 letters and digits (80 random bits): names a request in
/// notices, commands and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub String);

const ID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl RequestId {
    pub fn new() -> RequestId {
        let bits: u128 = rand::random();
        let mut id = String::from("R-");
        for i in 0..16 {
            id.push(ID_ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
        }
        RequestId(id)
    }

    /// A request id as a person typed it: the same letters, case aside.
    /// `None` for anything that is not one.
    pub fn parse(text: &str) -> Option<RequestId> {
        let text = text.trim().to_ascii_uppercase();
        let rest = text.strip_prefix("R-")?;
        (rest.len() == 16 && rest.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .then(|| RequestId(text.clone()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Someone who asks or decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub subject: String,
    /// `human`, `agent` or `service`.
    pub kind: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The human an agent or service acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl Person {
    pub fn is_human(&self) -> bool {
        self.kind == "human"
    }

    /// The people behind this identity: itself and the human it acts for.
    pub fn people(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.subject.as_str()).chain(self.on_behalf_of.as_deref())
    }
}

/// What the holding session knows when it asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRequest {
    pub requester: Person,
    pub target: String,
    pub environment: String,
    /// The proxy session that holds the statement.
    pub session: String,
    /// The statement as sent (a Query's text, or the text a Bind runs).
    pub statement: String,
    /// The Bind's parameters, masked for showing.
    #[serde(default)]
    pub parameters: Vec<String>,
    pub digest: Digest,
    /// The approval policy's id, its group and its message.
    pub policy: String,
    pub approvers: String,
    pub reason: String,
    /// What the analysis found: one line per statement (its kind and the
    /// objects it touches).
    #[serde(default)]
    pub analysis: Vec<String>,
    /// For a data change: how many rows it would touch, or why that was
    /// not found (see [`DryRun`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
    /// Held inside an explicit transaction: its locks are kept while the
    /// request waits.
    pub in_transaction: bool,
    /// Approvals needed (N of the group's members).
    pub required: u32,
    /// When approvals may be given, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// The session did not wait: the statement was refused, and runs once
    /// when sent again after approval (see [`Request::rerun_until`]).
    #[serde(default)]
    pub rerun: bool,
}

/// What a dry run of a data change found, for approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    pub method: DryRunMethod,
    /// The rows the change would touch (with `at_most`, no more than
    /// this); `None` when it was not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default)]
    pub at_most: bool,
    /// In words: what was found and how, or why not.
    pub summary: String,
}

/// How a [`DryRun`] found its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DryRunMethod {
    /// Read from the statement itself (an INSERT's VALUES list).
    Known,
    /// Counted in a read-only transaction.
    Counted,
    /// The planner's estimate (counting took too long).
    Estimated,
    /// Not found: `summary` says why.
    NotRun,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    /// The client cancelled the statement or went away.
    Withdrawn,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Withdrawn => "withdrawn",
        }
    }

    pub fn is_final(self) -> bool {
        self != State::Pending
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub approver: Person,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    #[serde(flatten)]
    pub asked: NewRequest,
    pub created_at: i64,
    pub state: State,
    #[serde(default)]
    pub decisions: Vec<Decided>,
    /// When it reached its final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
    /// When the approved statement was sent again and ran (a request of a
    /// session that did not wait is used once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

impl Request {
    /// Its state at `now`: a pending request past its expiry is expired,
    /// whether or not its session is still there to say so.
    pub fn state_at(&self, now: i64) -> State {
        if self.state == State::Pending && now >= self.asked.expires_at {
            State::Expired
        } else {
            self.state
        }
    }

    /// The denial, if it was denied: who and why.
    pub fn denial(&self) -> Option<&Decided> {
        self.decisions.iter().find(|d| d.verdict == Verdict::Deny)
    }

    /// Until when the approved statement may be sent again (`window`
    /// milliseconds after the approval), for a request of a session that
    /// did not wait, not yet used.
    pub fn rerun_until(&self, window: i64) -> Option<i64> {
        (self.asked.rerun && self.state == State::Approved && self.used_at.is_none())
            .then(|| self.closed_at.unwrap_or(0).saturating_add(window))
    }

    /// The approvers who approved it.
    pub fn approvals(&self) -> impl Iterator<Item = &Decided> {
        self.decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_ne!(a, b);
        assert_eq!(RequestId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            RequestId::parse(&a.as_str().to_ascii_lowercase()),
            Some(a.clone())
        );
        for bad in [
            "",
            "R-",
            "R-123",
            "X-0123456789ABCDEF",
            "R-0123456789ABCDEU",
            "R-0123456789ABCDEF0",
        ] {
            assert_eq!(RequestId::parse(bad), None, "{bad}");
        }
    }
}
