//! The HTTP/1.1 client that POSTs batches: hyper over TCP, or over rustls
//! for `https://`. One connection is kept and reused while the collector
//! keeps it open; any error drops it and the next attempt connects anew.
//!
//! Nothing here logs: the caller decides what to say, and the
//! `Authorization` value is marked sensitive and never formatted.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portcullis_audit::tls::RootsError;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How much of an error answer's body is kept for the message.
const EXCERPT: usize = 200;
/// Most of a response body read (collectors answer with a few bytes of
/// JSON; a larger answer is cut, not an error).
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--url {0}: {1}")]
    Url(String, &'static str),
    #[error("{0}; give --ca-file")]
    NoRoots(RootsError),
    #[error("{0}")]
    Roots(RootsError),
    #[error("the value in ${0} is not a valid header value")]
    AuthValue(String),
    #[error("--auth-header {0:?} is not a header name")]
    AuthName(String),
}

/// A failure to get any answer: retried like a 5xx.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// The collector's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub retry_after: Option<Duration>,
    /// The start of the body, control characters replaced, for messages.
    pub excerpt: String,
}

pub struct Client {
    uri: Uri,
    host: String,
    port: u16,
    authority: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    auth: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// `auth` is the secret header: its name (`Authorization`,
    /// `DD-API-KEY`), the environment variable it was read from (named in
    /// errors) and the whole value (`Splunk <token>`, `Bearer <token>`).
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        auth: Option<(&str, &str, String)>,
        timeout: Duration,
    ) -> Result<Client, SetupError> {
        let bad = |why| SetupError::Url(url.to_owned(), why);
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        // IPv6 literals come bracketed; the socket and SNI want them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad(
                "credentials in the URL would be logged; use --auth-env",
            ));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
            .map_err(|_| bad("the host is not a valid header value"))?;
        let tls = if https {
            let config = portcullis_audit::tls::client_config(ca_file).map_err(|e| match e {
                RootsError::NoRoots => SetupError::NoRoots(e),
                e => SetupError::Roots(e),
            })?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| bad("the host is not a valid TLS server name"))?;
            Some((TlsConnector::from(config), name))
        } else {
            if ca_file.is_some() {
                return Err(bad("--ca-file needs an https:// URL"));
            }
            None
        };
        let auth = match auth {
            Some((name, var, value)) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| SetupError::AuthName(name.to_owned()))?;
                let mut v = HeaderValue::from_str(value.trim())
                    .map_err(|_| SetupError::AuthValue(var.to_owned()))?;
                v.set_sensitive(true);
                Some((name, v))
            }
            None => None,
        };
        Ok(Client {
            uri,
            host,
            port,
            authority,
            tls,
            auth,
            timeout,
            conn: None,
        })
    }

    /// POSTs one NDJSON body and returns the answer, whatever its status.
    pub async fn post(
        &mut self,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Answer, TransportError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(body, content_type)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                // A half-finished exchange leaves the connection unusable.
                self.conn = None;
                Err(TransportError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Answer, TransportError> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(
                self.uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
            )
            .header(HOST, self.authority.clone())
            .header(CONTENT_TYPE, content_type)
            .header(
                USER_AGENT,
                concat!("portcullis-audit-forward/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|_| {
                TransportError::Connect(self.host.clone(), std::io::ErrorKind::InvalidInput.into())
            })?;
        if let Some((name, value)) = &self.auth {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender.send_request(req).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(portcullis_audit::export::webhook::parse_retry_after);
        // Reading the body to its end lets the connection be reused.
        let body = match Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        self.conn = Some(sender);
        Ok(Answer {
            status,
            retry_after,
            excerpt: excerpt(&body, self.auth.as_ref().map(|(_, v)| v)),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let where_ = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| TransportError::Connect(where_.clone(), e))?;
        let _ = tcp.set_nodelay(true);
        let sender = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| TransportError::Tls(where_, e))?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender
            }
            None => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(sender)
    }
}

/// The start of a body as one printable line, with the token cut out in
/// case a collector echoes the request's headers.
fn excerpt(body: &[u8], auth: Option<&HeaderValue>) -> String {
    let mut text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Some(secret) = auth.and_then(|a| a.to_str().ok()) {
        for part in secret.split_whitespace().filter(|p| p.len() >= 8) {
            text = text.replace(part, "<redacted>");
        }
    }
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{} …", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(1);
        assert!(Client::new("ftp://x", None, None, t).is_err());
        assert!(Client::new("no scheme", None, None, t).is_err());
        assert!(Client::new("http://user:pw@host/x", None, None, t).is_err());
        assert!(Client::new("http://host/x", Some(Path::new("/ca.pem")), None, t).is_err());
        let c = Client::new("http://[::1]:8088/services/collector?x=1", None, None, t).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 8088));
        assert_eq!(c.authority, "[::1]:8088");
        let c = Client::new("http://collector/", None, None, t).unwrap();
        assert_eq!(c.port, 80);
    }

    #[test]
    fn excerpts_are_one_line_short_and_never_hold_the_token() {
        let auth = HeaderValue::from_static("Splunk s3cr3t-token");
        let e = excerpt(
            b"{\"text\":\"Invalid token\"}\n\nauth: Splunk s3cr3t-token",
            Some(&auth),
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(!e.contains('\n'));
        let long = vec![b'a'; 1000];
        assert!(excerpt(&long, None).chars().count() <= EXCERPT + 2);
    }
}
