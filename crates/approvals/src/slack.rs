//! Slack: the message that asks a channel to decide, and the button
//! presses Slack sends back.
//!
//! A press is trusted only with a valid request signature: Slack signs
//! `v0:<timestamp>:<body>` with the app's signing secret (HMAC-SHA256) and
//! sends it as `X-Slack-Signature: v0=<hex>` with the timestamp in
//! `X-Slack-Request-Timestamp`. The signature is compared in constant
//! time, and a timestamp more than five minutes from now is refused, so
//! that a captured press cannot be replayed later.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::request::{Request, RequestId, Verdict};

/// How far a press's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("the request has no Slack signature or timestamp")]
    Unsigned,
    #[error("the request's timestamp is more than five minutes from now")]
    Stale,
    #[error("the request's signature does not match")]
    BadSignature,
    #[error("the request is not a button press on an approval request ({0})")]
    NotAPress(&'static str),
}

/// Checks a request's Slack signature: `timestamp` and `signature` are the
/// headers' values, `now` in seconds since the epoch.
pub fn verify(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SlackError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SlackError::Unsigned);
    };
    let at: i64 = timestamp.trim().parse().map_err(|_| SlackError::Unsigned)?;
    if now.abs_diff(at) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SlackError::Stale);
    }
    let hex = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(SlackError::BadSignature)?;
    let given = decode_hex(hex).ok_or(SlackError::BadSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret).map_err(|_| SlackError::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| SlackError::BadSignature)
}

/// The signature Slack would send for `body` at `timestamp` (for tests
/// and tools that stand in for Slack).
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signing_secret) else {
        return String::new();
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::from("v0=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A verified button press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Press {
    pub request: RequestId,
    pub verdict: Verdict,
    /// The Slack user who pressed it (`user.id`).
    pub slack_user: String,
    /// What they typed in the message's reason box, if anything.
    pub reason: Option<String>,
    /// Where Slack takes the updated message, if it gave one.
    pub response_url: Option<String>,
}

/// The action ids of the message's elements.
const APPROVE: &str = "portcullis_approve";
const DENY: &str = "portcullis_deny";
const REASON: &str = "portcullis_reason";

/// Reads a press from Slack's form body (`payload=<JSON>`), already
/// verified.
pub fn parse_press(body: &[u8]) -> Result<Press, SlackError> {
    let text = std::str::from_utf8(body).map_err(|_| SlackError::NotAPress("not UTF-8"))?;
    let payload = text
        .split('&')
        .find_map(|kv| kv.strip_prefix("payload="))
        .ok_or(SlackError::NotAPress("no payload"))?;
    let payload = form_decode(payload).ok_or(SlackError::NotAPress("bad encoding"))?;
    let v: Value = serde_json::from_str(&payload).map_err(|_| SlackError::NotAPress("not JSON"))?;
    if v["type"] != "block_actions" {
        return Err(SlackError::NotAPress("not block_actions"));
    }
    let action = v["actions"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or(SlackError::NotAPress("no action"))?;
    let verdict = match action["action_id"].as_str() {
        Some(APPROVE) => Verdict::Approve,
        Some(DENY) => Verdict::Deny,
        _ => return Err(SlackError::NotAPress("unknown action")),
    };
    let request = action["value"]
        .as_str()
        .and_then(RequestId::parse)
        .ok_or(SlackError::NotAPress("no request id"))?;
    let slack_user = v["user"]["id"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or(SlackError::NotAPress("no user"))?
        .to_owned();
    // The reason box's value, wherever its block is.
    let reason = v["state"]["values"].as_object().and_then(|blocks| {
        blocks
            .values()
            .find_map(|b| b[REASON]["value"].as_str())
            .map(str::to_owned)
    });
    let response_url = v["response_url"].as_str().map(str::to_owned);
    Ok(Press {
        request,
        verdict,
        slack_user,
        reason,
        response_url,
    })
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The most characters Slack takes in one section's text.
const SECTION_CHARS: usize = 3000;

/// `text` cut to at most `max` characters (an ellipsis marking a cut);
/// whether it was whole.
fn cut(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        return (text.to_owned(), true);
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    (short, false)
}

/// Text for a Slack message: `&`, `<` and `>` escaped, so that nothing a
/// requester wrote becomes a link or a mention.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message announcing `r` in a channel: who, where, what and why, and
/// (when a Slack app is set up to send presses back) a reason box and
/// Approve and Deny buttons. `decide`: where else to decide it.
pub fn message(r: &Request, decide: &str, buttons: bool) -> Value {
    let a = &r.asked;
    let who = match &a.requester.on_behalf_of {
        Some(p) => format!("{} ({} for {})", a.requester.subject, a.requester.kind, p),
        None => a.requester.subject.clone(),
    };
    // Slack takes at most 3000 characters per section: each part is cut
    // after escaping (which lengthens it), and a message cut short could
    // hide what runs, so it gets no buttons.
    let (statement, statement_whole) = cut(
        &escape(&a.statement.replace("```", "'''")),
        SECTION_CHARS - 6,
    );
    let mut details = format!(
        "*{}* asks to run on *{}* ({}), held by `{}`: {}",
        escape(&who),
        escape(&a.target),
        escape(&a.environment),
        escape(&a.policy),
        escape(&a.reason)
    );
    if a.in_transaction {
        details.push_str("\nInside an open transaction, which keeps its locks while this waits.");
    }
    for line in &a.analysis {
        details.push_str(&format!("\n• {}", escape(line)));
    }
    if let Some(d) = &a.dry_run {
        details.push_str(&format!("\n• dry run: {}", escape(&d.summary)));
    }
    for (i, p) in a.parameters.iter().enumerate() {
        details.push_str(&format!(
            "\n${} = `{}`",
            i + 1,
            escape(&p.replace('`', "'"))
        ));
    }
    let (mut details, details_whole) = cut(&details, SECTION_CHARS - 100);
    let whole = statement_whole && details_whole;
    if !whole {
        details.push_str("\nToo long to show here in full: decide with the CLI or the console.");
    }
    let buttons = buttons && whole;
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Approval request *{}* for group `{}`", r.id, a.approvers)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": details}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{statement}```")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": decide}]}),
    ];
    if buttons {
        blocks.push(json!({
            "type": "input",
            "optional": true,
            "dispatch_action": false,
            "label": {"type": "plain_text", "text": "Reason (needed to deny)"},
            "element": {"type": "plain_text_input", "action_id": REASON}
        }));
        blocks.push(json!({
            "type": "actions",
            "elements": [
                {"type": "button", "style": "primary", "action_id": APPROVE, "value": r.id.as_str(), "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "style": "danger", "action_id": DENY, "value": r.id.as_str(), "text": {"type": "plain_text", "text": "Deny"}}
            ]
        }));
    }
    json!({
        "text": format!(
            "Approval request {} from {} on {}: {}",
            r.id,
            escape(&who),
            escape(&a.target),
            escape(&a.reason)
        ),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

    fn press(action: &str, id: &str, reason: Option<&str>) -> Vec<u8> {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U0DORA", "username": "dora"},
            "actions": [{"action_id": action, "value": id}],
            "state": {"values": {"b1": {REASON: {"type": "plain_text_input", "value": reason}}}},
            "response_url": "https://hooks.slack.com/actions/T/1/x",
        });
        let encoded: String = payload
            .to_string()
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                b => format!("%{b:02X}"),
            })
            .collect();
        format!("payload={encoded}").into_bytes()
    }

    #[test]
    fn only_fresh_correctly_signed_requests_pass() {
        let body = b"payload=%7B%7D";
        let now = 1_700_000_000;
        let ts = now.to_string();
        let good = sign(SECRET, &ts, body);
        assert_eq!(verify(SECRET, Some(&ts), Some(&good), body, now), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&good), body, now + 299),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&good), body, now + 301),
            Err(SlackError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&good), b"payload=%7B%7D ", now),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            verify(b"another secret", Some(&ts), Some(&good), body, now),
            Err(SlackError::BadSignature)
        );
        // The timestamp is signed: moving it breaks the signature.
        let later = (now + 10).to_string();
        assert_eq!(
            verify(SECRET, Some(&later), Some(&good), body, now),
            Err(SlackError::BadSignature)
        );
        for bad in ["", "v0=", "v1=00", "v0=zz", &good[..good.len() - 1]] {
            assert_eq!(
                verify(SECRET, Some(&ts), Some(bad), body, now),
                Err(SlackError::BadSignature),
                "{bad}"
            );
        }
        assert_eq!(
            verify(SECRET, None, Some(&good), body, now),
            Err(SlackError::Unsigned)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), None, body, now),
            Err(SlackError::Unsigned)
        );
        assert_eq!(
            verify(SECRET, Some("yesterday"), Some(&good), body, now),
            Err(SlackError::Unsigned)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = b"x";
        let sig = sign(SECRET, "-9223372036854775808", body);
        assert_eq!(
            verify(
                SECRET,
                Some("-9223372036854775808"),
                Some(&sig),
                body,
                i64::MAX
            ),
            Err(SlackError::Stale)
        );
    }

    #[test]
    fn messages_escape_what_requesters_wrote_and_cut_long_statements_without_buttons() {
        use crate::request::{NewRequest, Person, State};
        let mut r = Request {
            id: RequestId::new(),
            asked: NewRequest {
                requester: Person {
                    subject: "<!channel>".into(),
                    kind: "human".into(),
                    groups: vec![],
                    on_behalf_of: None,
                },
                target: "shop".into(),
                environment: "production".into(),
                session: "s".into(),
                statement: "SELECT '<https://evil|click>'".into(),
                parameters: vec!["`x`".into()],
                digest: crate::Digest("d".into()),
                policy: "p".into(),
                approvers: "dba".into(),
                reason: "r".into(),
                analysis: vec![],
                dry_run: None,
                in_transaction: false,
                required: 1,
                window: None,
                expires_at: 0,
                rerun: false,
            },
            created_at: 0,
            state: State::Pending,
            decisions: vec![],
            closed_at: None,
            used_at: None,
        };
        let text = message(&r, "decide", true).to_string();
        assert!(!text.contains("<!channel>") && !text.contains("<https://evil"));
        assert!(text.contains(APPROVE));
        r.asked.statement = format!("SELECT 1 WHERE {}", "1<2 AND ".repeat(300));
        let v = message(&r, "decide", true);
        for block in v["blocks"].as_array().unwrap() {
            if let Some(t) = block["text"]["text"].as_str() {
                assert!(
                    t.chars().count() <= SECTION_CHARS,
                    "a section over Slack's limit"
                );
            }
        }
        assert!(
            !v.to_string().contains(APPROVE),
            "escaped, it no longer fits: no buttons"
        );
        r.asked.statement = format!("SELECT 1 /* {} */; DROP TABLE t", "x".repeat(3000));
        let text = message(&r, "decide", true).to_string();
        assert!(
            !text.contains(APPROVE),
            "no buttons for a statement cut short"
        );
        assert!(!text.contains("DROP TABLE"));
    }

    #[test]
    fn presses_parse() {
        let id = RequestId::new();
        let p = parse_press(&press(DENY, id.as_str(), Some("not now"))).unwrap();
        assert_eq!(p.request, id);
        assert_eq!(p.verdict, Verdict::Deny);
        assert_eq!(p.slack_user, "U0DORA");
        assert_eq!(p.reason.as_deref(), Some("not now"));
        assert!(p
            .response_url
            .unwrap()
            .starts_with("https://hooks.slack.com/"));
        let p = parse_press(&press(APPROVE, id.as_str(), None)).unwrap();
        assert_eq!((p.verdict, p.reason), (Verdict::Approve, None));
        assert!(parse_press(&press("other", id.as_str(), None)).is_err());
        assert!(parse_press(&press(APPROVE, "R-nope", None)).is_err());
        assert!(parse_press(b"payload=%7B").is_err());
        assert!(parse_press(b"token=x").is_err());
    }
}
