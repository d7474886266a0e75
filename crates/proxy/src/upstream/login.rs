use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use portcullis_wire::decode::{self, AuthRequest};
use portcullis_wire::encode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::backend as be;
use portcullis_wire::ProtocolVersion;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::cancel::CancelTarget;
use crate::runtime::{Login, TargetRuntime};
use crate::stream::UpstreamStream;
use crate::tls::UpstreamTls;

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot resolve upstream host: {0}")]
    Resolve(io::Error),
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("connection timed out")]
    Timeout,
    #[error("server does not support TLS but the target requires it")]
    TlsRefused,
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("I/O error during login: {0}")]
    Io(#[from] io::Error),
    #[error("server closed the connection during login")]
    Closed,
    #[error("protocol error from server: {0}")]
    Protocol(#[from] portcullis_wire::WireError),
    #[error("server asked for authentication method {0}, which Portcullis does not support")]
    UnsupportedAuth(String),
    #[error("server asked for a password but the target has none configured")]
    NoPassword,
    #[error("SCRAM exchange failed: {0}")]
    Scram(String),
    /// An ErrorResponse from the server: SQLSTATE and message (logged, not
    /// shown to the client as is).
    #[error("server refused login: {code} {message}")]
    Server { code: String, message: String },
    /// An ErrorResponse to a query of the proxy's own (the catalog
    /// queries, SHOW search_path) on a connection that did log in.
    #[error("the server answered a query of Portcullis with an error: {code} {message}")]
    Query { code: String, message: String },
}

/// A logged-in upstream connection, ready for queries.
pub struct Upstream {
    pub stream: UpstreamStream,
    pub pid: i32,
    /// ParameterStatus and NoticeResponse messages the server sent during
    /// startup, as received, to pass on to the client.
    pub startup_messages: BytesMut,
    /// Bytes read after ReadyForQuery (normally none).
    pub leftover: BytesMut,
    /// Transaction status of the first ReadyForQuery.
    pub status: u8,
    pub cancel: CancelTarget,
    /// The role the session logged in as, and the access profile that
    /// chose it (`None`: the target's own role).
    pub role: String,
    pub profile: Option<String>,
}

/// Where an upstream server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    /// A Unix-domain socket file (`<dir>/.s.PGSQL.<port>`, as libpq names it).
    Unix(PathBuf),
}

/// A host starting with `/` is a socket directory, as in libpq.
async fn resolve(host: &str, port: u16) -> Result<UpstreamAddr, UpstreamError> {
    if host.starts_with('/') {
        return Ok(UpstreamAddr::Unix(
            Path::new(host).join(format!(".s.PGSQL.{port}")),
        ));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(UpstreamError::Resolve)?
        .next()
        .map(UpstreamAddr::Tcp)
        .ok_or_else(|| UpstreamError::Resolve(io::Error::other("no address")))
}

/// Opens the transport: TCP, then TLS if the target asks for it.
async fn open(
    addr: &UpstreamAddr,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamStream, UpstreamError> {
    let addr = match addr {
        UpstreamAddr::Tcp(a) => a,
        // PostgreSQL has no TLS on Unix sockets; configuration validation
        // allows only sslmode=disable for socket directories.
        UpstreamAddr::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(UpstreamError::Connect)?;
            return Ok(UpstreamStream::Unix(s));
        }
    };
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(UpstreamError::Connect)?;
    tcp.set_nodelay(true).ok();
    let Some(tls) = tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let mut req = BytesMut::new();
    encode::ssl_request(&mut req);
    tcp.write_all(&req).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(UpstreamError::TlsRefused);
    }
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = connector
        .connect(tls.server_name.clone(), tcp)
        .await
        .map_err(UpstreamError::Tls)?;
    Ok(UpstreamStream::Tls(Box::new(stream)))
}

/// Connects and logs in to `target`, passing on the client's startup
/// parameters `params` (already checked).
pub async fn connect(
    target: &TargetRuntime,
    as_role: Login<'_>,
    params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let t = &target.config;
    let timeout: Duration = t.connect_timeout.into();
    tokio::time::timeout(timeout, async {
        let addr = resolve(&t.host, t.port).await?;
        let stream = open(&addr, target.tls.as_ref()).await?;
        login(stream, addr, target, as_role, params).await
    })
    .await
    .map_err(|_| UpstreamError::Timeout)?
}

pub(super) struct Reader {
    pub(super) buf: BytesMut,
    pub(super) splitter: Splitter,
}

impl Reader {
    /// Reads one whole message; returns its bytes (header included).
    pub(super) async fn message(
        &mut self,
        stream: &mut UpstreamStream,
    ) -> Result<BytesMut, UpstreamError> {
        loop {
            match self.splitter.next(&self.buf)? {
                Next::Whole { len, .. } => return Ok(self.buf.split_to(len)),
                Next::NeedMore { hint } => {
                    self.buf
                        .reserve(hint.saturating_sub(self.buf.len()).max(4096));
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(UpstreamError::Closed);
                    }
                }
                // Nothing during login is large enough to be streamed.
                Next::StreamHead { .. } | Next::StreamBody { .. } => {
                    return Err(UpstreamError::Protocol(
                        portcullis_wire::WireError::Malformed {
                            what: "oversized message during login",
                        },
                    ))
                }
            }
        }
    }
}

fn server_error(body: &[u8]) -> UpstreamError {
    let f = decode::report_fields(body).unwrap_or_default();
    UpstreamError::Server {
        code: f.code.unwrap_or("XX000").to_owned(),
        message: f.message.unwrap_or("").to_owned(),
    }
}

async fn login(
    mut stream: UpstreamStream,
    addr: UpstreamAddr,
    target: &TargetRuntime,
    as_role: Login<'_>,
    params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let t = &target.config;
    let mut out = BytesMut::with_capacity(256);
    let forwarded = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    encode::startup_message(
        &mut out,
        ProtocolVersion::V3_0,
        [("user", as_role.user), ("database", t.upstream_database())]
            .into_iter()
            .chain(forwarded),
    );
    stream.write_all(&out).await?;
    out.clear();

    let mut reader = Reader {
        buf: BytesMut::with_capacity(8192),
        splitter: Splitter::new(Limits::backend()),
    };
    let password = || as_role.password.ok_or(UpstreamError::NoPassword);
    let mut scram: Option<ScramSha256> = None;

    // Authentication.
    loop {
        let msg = reader.message(&mut stream).await?;
        let body = decode::body(&msg);
        match msg[0] {
            be::AUTHENTICATION => {}
            be::ERROR_RESPONSE => return Err(server_error(body)),
            be::NOTICE_RESPONSE => continue,
            be::NEGOTIATE_PROTOCOL_VERSION => continue,
            other => {
                return Err(UpstreamError::UnsupportedAuth(format!(
                    "message {:?} before authentication",
                    other as char
                )))
            }
        }
        match decode::auth_request(body)? {
            AuthRequest::Ok => break,
            AuthRequest::Cleartext => {
                encode::password_message(&mut out, password()?.expose().as_bytes());
            }
            AuthRequest::Md5 { salt } => {
                let hash = postgres_protocol::authentication::md5_hash(
                    as_role.user.as_bytes(),
                    password()?.expose().as_bytes(),
                    salt,
                );
                encode::password_message(&mut out, hash.as_bytes());
            }
            AuthRequest::Sasl { mechanisms } => {
                let pw = password()?.expose().as_bytes().to_vec();
                let end_point = match &stream {
                    UpstreamStream::Tls(s) => s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::auth::channel_binding::tls_server_end_point(c).ok()),
                    UpstreamStream::Plain(_) | UpstreamStream::Unix(_) => None,
                };
                let (mechanism, binding) = match end_point {
                    Some(h) if mechanisms.contains(&sasl::SCRAM_SHA_256_PLUS) => (
                        sasl::SCRAM_SHA_256_PLUS,
                        ChannelBinding::tls_server_end_point(h),
                    ),
                    _ if mechanisms.contains(&sasl::SCRAM_SHA_256) => {
                        let binding = if matches!(stream, UpstreamStream::Tls(_)) {
                            // We can bind but the server did not offer it.
                            ChannelBinding::unrequested()
                        } else {
                            ChannelBinding::unsupported()
                        };
                        (sasl::SCRAM_SHA_256, binding)
                    }
                    _ => {
                        return Err(UpstreamError::UnsupportedAuth(format!(
                            "SASL mechanisms {mechanisms:?}"
                        )))
                    }
                };
                let s = ScramSha256::new(&pw, binding);
                encode::sasl_initial_response(&mut out, mechanism, s.message());
                scram = Some(s);
            }
            AuthRequest::SaslContinue { data } => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| UpstreamError::Scram("unexpected SASL continue".into()))?;
                let data = data.to_vec();
                // PBKDF2 with thousands of iterations: keep it off the async
                // worker threads.
                let s = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
                    .await
                    .map_err(|e| UpstreamError::Scram(e.to_string()))?
                    .map_err(|e| UpstreamError::Scram(e.to_string()))?;
                encode::sasl_response(&mut out, s.message());
                scram = Some(s);
            }
            AuthRequest::SaslFinal { data } => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| UpstreamError::Scram("unexpected SASL final".into()))?;
                s.finish(data)
                    .map_err(|e| UpstreamError::Scram(format!("server signature: {e}")))?;
                continue;
            }
            AuthRequest::Unsupported { code } => {
                return Err(UpstreamError::UnsupportedAuth(format!("code {code}")))
            }
        }
        stream.write_all(&out).await?;
        out.clear();
    }

    // Startup: parameters, key, ready.
    let mut startup_messages = BytesMut::new();
    let mut key_data = None;
    let status = loop {
        let msg = reader.message(&mut stream).await?;
        let body = decode::body(&msg);
        match msg[0] {
            be::PARAMETER_STATUS | be::NOTICE_RESPONSE => startup_messages.extend_from_slice(&msg),
            be::BACKEND_KEY_DATA => {
                let (pid, key) = decode::backend_key_data(body)?;
                key_data = Some((pid, key.to_vec()));
            }
            be::READY_FOR_QUERY => break decode::ready_for_query(body)?,
            be::ERROR_RESPONSE => return Err(server_error(body)),
            be::NEGOTIATE_PROTOCOL_VERSION => {}
            other => {
                return Err(UpstreamError::UnsupportedAuth(format!(
                    "unexpected message {:?} during startup",
                    other as char
                )))
            }
        }
    };
    let (pid, key) = key_data.ok_or(portcullis_wire::WireError::Malformed {
        what: "startup without BackendKeyData",
    })?;
    debug!(pid, "upstream login complete");
    let mut leftover = reader.buf;
    if leftover.is_empty() {
        leftover = BytesMut::new();
    }
    Ok(Upstream {
        stream,
        pid,
        startup_messages,
        leftover,
        status,
        cancel: CancelTarget {
            addr,
            tls: target.tls.clone(),
            pid,
            key,
        },
        role: as_role.user.to_owned(),
        profile: as_role.profile.map(str::to_owned),
    })
}

/// Delivers a CancelRequest to the server that runs the session, over TLS if
/// the target uses TLS (so the key never crosses the network in the clear).
pub async fn send_cancel(target: &CancelTarget) -> Result<(), UpstreamError> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = open(&target.addr, target.tls.as_ref()).await?;
        let mut req = BytesMut::new();
        encode::cancel_request(&mut req, target.pid, &target.key);
        stream.write_all(&req).await?;
        stream.flush().await?;
        // The server closes the connection without answering; wait for that
        // so the cancel has been read before we return.
        let mut sink = [0u8; 16];
        let _ = stream.read(&mut sink).await;
        Ok::<_, UpstreamError>(())
    })
    .await
    .map_err(|_| UpstreamError::Timeout)?
}
