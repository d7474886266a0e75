//! Announcing requests: a Slack-compatible incoming webhook (a message with
//! the request, and Approve/Deny buttons when a Slack app sends presses
//! back) and a generic JSON webhook told of every request and decision,
//! its body signed with HMAC-SHA256 over `<timestamp>.<body>`
//! (`X-Portcullis-Timestamp`, `X-Portcullis-Signature: sha256=<hex>`).
//!
//! Best effort, off the session: a webhook that is down delays nothing
//! and is logged (without its URL, which may hold a secret).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use http::Method;
use portcullis_approvals::Request;
use sha2::Sha256;
use tracing::warn;

use crate::oidc::fetch;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests are announced.
#[derive(Default)]
pub struct Notifier {
    slack_webhook: Option<String>,
    webhook: Option<(String, Option<String>)>,
    /// A Slack app sends presses back: messages carry buttons.
    buttons: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Notifier {
    pub fn from_config(config: &portcullis_config::Config) -> Result<Notifier, String> {
        let slack_webhook = config
            .approvals_slack_webhook()
            .map_err(|e| e.to_string())?;
        let webhook = match &config.approvals.notify.webhook_url {
            Some(url) => Some((
                url.clone(),
                config
                    .approvals_webhook_secret()
                    .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        if let Some(url) = &slack_webhook {
            if !portcullis_config::secure_url(url) {
                return Err("[approvals.notify] slack_webhook must be an https URL".into());
            }
        }
        let tls = if slack_webhook.is_some() || webhook.is_some() {
            Some(
                portcullis_audit::tls::client_config(None)
                    .map_err(|e| format!("TLS roots for approval webhooks: {e}"))?,
            )
        } else {
            None
        };
        Ok(Notifier {
            slack_webhook,
            webhook,
            buttons: config.approvals.slack.is_some(),
            tls,
        })
    }

    /// Tells the webhooks of `event` on `r` (`decide`: where to decide it).
    pub fn announce(self: &Arc<Self>, event: &'static str, r: &Request, decide: String) {
        if self.slack_webhook.is_none() && self.webhook.is_none() {
            return;
        }
        let me = self.clone();
        let r = r.clone();
        tokio::spawn(async move {
            if let (Some(url), "requested") = (&me.slack_webhook, event) {
                let body = portcullis_approvals::slack::message(&r, &decide, me.buttons);
                me.post("Slack webhook", url, body.to_string(), Vec::new())
                    .await;
            }
            if let Some((url, secret)) = &me.webhook {
                let body = serde_json::json!({
                    "event": event,
                    "request": r,
                    "decide": decide,
                })
                .to_string();
                let mut headers = Vec::new();
                if let Some(secret) = secret {
                    let at = portcullis_approvals::now_millis() / 1000;
                    headers.push(("x-portcullis-timestamp", at.to_string()));
                    headers.push(("x-portcullis-signature", signature(secret, at, &body)));
                }
                me.post("approval webhook", url, body, headers).await;
            }
        });
    }

    async fn post(
        &self,
        what: &str,
        url: &str,
        body: String,
        headers: Vec<(&'static str, String)>,
    ) {
        match fetch::call_json(
            url,
            self.tls.as_ref(),
            TIMEOUT,
            Method::POST,
            &headers,
            Some(body),
        )
        .await
        {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, _)) => warn!(status = %status, "{what} refused an approval notification"),
            Err(_) => warn!("{what} could not be reached with an approval notification"),
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<at>.<body>").
pub fn signature(secret: &str, at: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let mut out = String::from("sha256=");
    for b in mac.finalize().into_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
