//! HTTP to an identity provider: the proxy GETs discovery documents and
//! key sets; `portcullis login` also POSTs forms to the device and token
//! endpoints. One HTTP/1.1 request per fresh connection (these are rare),
//! TLS for `https://` with the given roots (plain HTTP only to a loopback
//! address), no redirects followed, a bounded body and a timeout on the
//! whole exchange.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Most of a discovery document or key set read.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: not an http(s) URL Portcullis may fetch")]
    Url(String),
    #[error("{0}: https needs TLS roots")]
    NoTls(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: HTTP: {1}")]
    Http(String, hyper::Error),
    #[error("{0}: answered {1}")]
    Status(String, http::StatusCode),
    #[error("{0}: the body is larger than 1 MiB or was cut")]
    Body(String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
}

/// GETs `url`, expecting JSON, and returns the body of a 200 answer.
pub async fn get(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let (status, body) = within(timeout, url, exchange(url, tls, Method::GET, None, &[])).await?;
    if status != StatusCode::OK {
        return Err(FetchError::Status(url.to_owned(), status));
    }
    Ok(body)
}

/// POSTs `form` (`application/x-www-form-urlencoded`) to `url`, expecting
/// JSON, and returns the status and body whatever the status: OAuth
/// endpoints answer errors as JSON with 400.
pub async fn post_form(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    form: String,
) -> Result<(StatusCode, Bytes), FetchError> {
    let body = Some(("application/x-www-form-urlencoded", form));
    within(timeout, url, exchange(url, tls, Method::POST, body, &[])).await
}

/// A JSON call: `method` on `url` with extra `headers` (an
/// `Authorization`, a signature) and an optional JSON body; the status and
/// body whatever the status. For the approvals API and its notifications.
pub async fn call_json(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    method: Method,
    headers: &[(&'static str, String)],
    json: Option<String>,
) -> Result<(StatusCode, Bytes), FetchError> {
    let body = json.map(|j| ("application/json", j));
    within(timeout, url, exchange(url, tls, method, body, headers)).await
}

async fn within<T>(
    timeout: Duration,
    url: &str,
    f: impl std::future::Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(url.to_owned(), timeout)),
    }
}

async fn exchange(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: Method,
    body: Option<(&'static str, String)>,
    headers: &[(&'static str, String)],
) -> Result<(StatusCode, Bytes), FetchError> {
    if !portcullis_config::secure_url(url) {
        return Err(FetchError::Url(url.to_owned()));
    }
    let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(url.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map_or(host.clone(), |a| a.as_str().to_owned());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let io = |e| FetchError::Io(url.to_owned(), e);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(io)?;
    let _ = tcp.set_nodelay(true);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority)
        .header(ACCEPT, "application/json")
        .header(
            USER_AGENT,
            concat!("portcullis/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let content = match body {
        Some((content_type, text)) => {
            request = request.header(CONTENT_TYPE, content_type);
            text
        }
        None => String::new(),
    };
    let request = request
        .body(Full::new(Bytes::from(content)))
        .map_err(|_| FetchError::Url(url.to_owned()))?;
    let http = |e| FetchError::Http(url.to_owned(), e);
    let response = if https {
        let config = tls.ok_or_else(|| FetchError::NoTls(url.to_owned()))?;
        let name =
            ServerName::try_from(host.clone()).map_err(|_| FetchError::Url(url.to_owned()))?;
        let stream = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(io)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        sender.send_request(request).await.map_err(http)?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        sender.send_request(request).await.map_err(http)?
    };
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| FetchError::Body(url.to_owned()))?;
    Ok((status, body))
}
