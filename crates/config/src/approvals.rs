//! The `[approvals]` table: how statements held for approval wait, and how
//! each approver group's approvals work.
//!
//! Which statements need approval, and by which group, is the policies'
//! say (`@approvers` on a forbid); requests live in the control-plane
//! store (`[identity] store`, or `[identity] postgres`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// How long a held statement waits for a decision before it fails
    /// with 57014.
    pub timeout: Duration,
    /// Where approvers decide, shown in the notice the client gets (for
    /// example the console's approvals page); the request id is appended.
    pub console_url: Option<String>,
    /// Hold statements inside an explicit transaction (keeping its locks
    /// while the request waits). `false`: refuse them instead, with a hint
    /// to send them outside a transaction.
    pub in_transaction: bool,
    /// Identity kinds whose sessions do not wait (HTTP clients, agents
    /// with short timeouts): their held statement is refused at once with
    /// the request id, and runs once when the same identity sends the same
    /// statement (same text and parameters, same target) again after it
    /// was approved, within `rerun_window`. Default: none (every session
    /// waits).
    pub rerun_kinds: Vec<crate::IdentityKind>,
    /// How long after its approval a statement refused to a session that
    /// does not wait may be sent again. Default: "15m".
    pub rerun_window: Duration,
    /// How long the dry run of a held data change may take (counting the
    /// rows it would touch, in a read-only transaction of its own; past
    /// this the planner's estimate is shown). "0s": no dry runs.
    /// Default: "2s".
    pub dry_run_timeout: Duration,
    /// Per approver group: approvals needed and when they may be given.
    #[serde(rename = "group")]
    pub groups: Vec<ApproverGroup>,
    /// Where new requests are announced.
    pub notify: Notify,
    /// A Slack app whose buttons decide requests.
    pub slack: Option<SlackApp>,
}

/// `[approvals.notify]`: a Slack-compatible incoming webhook and a generic
/// JSON webhook, each told of every new request (the JSON webhook also of
/// every decision). URLs and secrets come from the environment or files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The incoming-webhook URL (a secret: whoever has it may post).
    pub slack_webhook_env: Option<String>,
    pub slack_webhook_file: Option<PathBuf>,
    /// The JSON webhook (https, or http to this machine).
    pub webhook_url: Option<String>,
    /// The key its bodies are signed with (HMAC-SHA256, header
    /// `X-Portcullis-Signature`).
    pub webhook_secret_env: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
}

/// `[approvals.slack]`: Slack sends button presses to
/// `POST /approvals/slack` on the admin listener, signed with the app's
/// signing secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackApp {
    pub signing_secret_env: Option<String>,
    pub signing_secret_file: Option<PathBuf>,
    /// Slack user ids and the configured `[[user]]` each one is: a press
    /// decides as that user, under the same rules as anywhere else.
    pub users: BTreeMap<String, String>,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            timeout: Duration::from_secs(600),
            console_url: None,
            in_transaction: true,
            rerun_kinds: Vec::new(),
            rerun_window: Duration::from_secs(900),
            dry_run_timeout: Duration::from_secs(2),
            groups: Vec::new(),
            notify: Notify::default(),
            slack: None,
        }
    }
}

impl Approvals {
    /// The settings of group `name` (defaults when it has none).
    pub fn group(&self, name: &str) -> ApproverGroup {
        self.groups
            .iter()
            .find(|g| g.name == name)
            .cloned()
            .unwrap_or_else(|| ApproverGroup {
                name: name.to_owned(),
                required: 1,
                days: Vec::new(),
                hours: None,
            })
    }
}

/// `[[approvals.group]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverGroup {
    /// The group a policy's `@approvers` names.
    pub name: String,
    /// Approvals a request needs from distinct members (default 1).
    #[serde(default = "one")]
    pub required: u32,
    /// Days approvals may be given (`mon` .. `sun`, UTC); empty: any day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Hours approvals may be given, `"08:00-18:00"` (UTC; may wrap past
    /// midnight); absent: any time of day.
    #[serde(default)]
    pub hours: Option<String>,
}

fn one() -> u32 {
    1
}

/// The day names `days` takes, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl ApproverGroup {
    /// Whether approvals are limited in time.
    pub fn has_window(&self) -> bool {
        !self.days.is_empty() || self.hours.is_some()
    }

    /// The days as a bit set (bit 0 Monday), all when none are named.
    pub fn day_bits(&self) -> Result<u8, String> {
        if self.days.is_empty() {
            return Ok(0x7f);
        }
        let mut bits = 0u8;
        for d in &self.days {
            let i = DAY_NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(d.trim()))
                .ok_or_else(|| format!("{d:?} is not a day; use {}", DAY_NAMES.join(", ")))?;
            bits |= 1 << i;
        }
        Ok(bits)
    }

    /// The hours as minutes of the day `(from, to)`; the whole day when
    /// absent.
    pub fn minutes(&self) -> Result<(u16, u16), String> {
        let Some(hours) = &self.hours else {
            return Ok((0, 1440));
        };
        let bad = || format!("{hours:?} is not a range of hours like \"08:00-18:00\"");
        let (from, to) = hours.split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (from, to) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
        if from == to {
            return Err(format!("{hours:?} is an empty range"));
        }
        Ok((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(days: &[&str], hours: Option<&str>) -> ApproverGroup {
        ApproverGroup {
            name: "dba".into(),
            required: 1,
            days: days.iter().map(|d| d.to_string()).collect(),
            hours: hours.map(str::to_owned),
        }
    }

    #[test]
    fn windows_parse() {
        assert_eq!(group(&["mon", "Fri"], None).day_bits(), Ok(0b1_0001));
        assert_eq!(group(&[], None).day_bits(), Ok(0x7f));
        assert!(group(&["monday"], None).day_bits().is_err());
        assert_eq!(group(&[], Some("08:00-18:30")).minutes(), Ok((480, 1110)));
        assert_eq!(group(&[], Some("22:00-02:00")).minutes(), Ok((1320, 120)));
        for bad in ["8-18", "24:00-01:00", "08:00", "08:00-08:00", "08:60-09:00"] {
            assert!(group(&[], Some(bad)).minutes().is_err(), "{bad}");
        }
    }
}
