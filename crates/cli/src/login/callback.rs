//! The loopback redirect of the code flow (RFC 8252): a one-request HTTP
//! server on 127.0.0.1 with a port of the system's choosing, serving
//! `/callback` until the browser arrives with the code (or an error).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use percent_encoding::percent_decode_str;
use tokio::sync::{mpsc, oneshot};

use super::oauth::OAuthError;

/// A listening redirect target.
pub struct Callback {
    /// `http://127.0.0.1:PORT/callback`
    pub redirect_uri: String,
    rx: mpsc::Receiver<String>,
    stop: Option<oneshot::Sender<()>>,
}

impl Callback {
    pub async fn listen() -> Result<Callback, OAuthError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| OAuthError::Callback(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Callback(e.to_string()))?
            .port();
        let (tx, rx) = mpsc::channel::<String>(4);
        let app = Router::new().route(
            "/callback",
            get(move |RawQuery(query): RawQuery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(query.unwrap_or_default()).await;
                    Html(
                        "<!doctype html><title>Portcullis</title>\
                         <p>Portcullis received the sign-in. You can close this window \
                         and return to the terminal.</p>",
                    )
                }
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Callback {
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
            rx,
            stop: Some(stop),
        })
    }

    /// Waits (up to `timeout`) for the redirect that carries `state`, and
    /// returns its code. A redirect with another state is ignored (it is
    /// not this login's); one with an error ends the login.
    pub async fn code(
        &mut self,
        state: &str,
        issuer: &str,
        timeout: Duration,
    ) -> Result<String, OAuthError> {
        let wait = async {
            while let Some(query) = self.rx.recv().await {
                match read_redirect(&query, state, issuer) {
                    Redirect::Code(code) => return Ok(code),
                    Redirect::Error(e) => return Err(e),
                    Redirect::NotOurs => continue,
                }
            }
            Err(OAuthError::Callback("the redirect listener stopped".into()))
        };
        let result = match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(OAuthError::Callback(format!(
                "no sign-in arrived within {} seconds",
                timeout.as_secs()
            ))),
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        result
    }
}

#[derive(Debug)]
enum Redirect {
    Code(String),
    Error(OAuthError),
    NotOurs,
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// What a redirect's query says, for the login waiting with `state`.
fn read_redirect(query: &str, state: &str, issuer: &str) -> Redirect {
    let params: HashMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    if params.get("state").map(String::as_str) != Some(state) {
        return Redirect::NotOurs;
    }
    // RFC 9207: a provider that names itself must be the one asked.
    if let Some(iss) = params.get("iss") {
        if iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Redirect::Error(OAuthError::Refused(format!(
                "the redirect names issuer {iss}, not {issuer}"
            )));
        }
    }
    if let Some(error) = params.get("error") {
        if error == "access_denied" {
            return Redirect::Error(OAuthError::Denied);
        }
        let what = params
            .get("error_description")
            .map(|d| format!("{error}: {d}"))
            .unwrap_or_else(|| error.clone());
        return Redirect::Error(OAuthError::Refused(what));
    }
    match params.get("code") {
        Some(code) if !code.is_empty() => Redirect::Code(code.clone()),
        _ => Redirect::Error(OAuthError::Refused("the redirect carries no code".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_read_for_their_state_and_issuer() {
        let r = |q: &str| read_redirect(q, "s1", "https://idp.example");
        assert!(matches!(r("code=abc&state=s1"), Redirect::Code(c) if c == "abc"));
        assert!(matches!(
            r("code=a%2Bb+c&state=s1&iss=https%3A%2F%2Fidp.example"),
            Redirect::Code(c) if c == "a+b c"
        ));
        assert!(matches!(r("code=abc&state=other"), Redirect::NotOurs));
        assert!(matches!(r("code=abc"), Redirect::NotOurs));
        assert!(matches!(
            r("code=abc&state=s1&iss=https%3A%2F%2Fevil.example"),
            Redirect::Error(OAuthError::Refused(_))
        ));
        assert!(matches!(
            r("error=access_denied&state=s1"),
            Redirect::Error(OAuthError::Denied)
        ));
        assert!(matches!(
            r("error=invalid_request&error_description=no+PKCE&state=s1"),
            Redirect::Error(OAuthError::Refused(m)) if m == "invalid_request: no PKCE"
        ));
        assert!(matches!(r("state=s1"), Redirect::Error(_)));
    }

    #[tokio::test]
    async fn the_listener_hands_over_the_code() {
        let mut cb = Callback::listen().await.unwrap();
        let uri = cb.redirect_uri.clone();
        assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
        let get = |q: &'static str| {
            let uri = uri.clone();
            async move {
                let addr = uri
                    .trim_start_matches("http://")
                    .trim_end_matches("/callback")
                    .to_owned();
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(
                    format!("GET /callback?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                out
            }
        };
        // Someone else's redirect first, then ours.
        assert!(get("code=x&state=nope").await.starts_with("HTTP/1.1 200"));
        assert!(get("code=ours&state=s").await.starts_with("HTTP/1.1 200"));
        let code = cb
            .code("s", "https://idp", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(code, "ours");
    }
}
