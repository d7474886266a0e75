//! The admin HTTP listener.
//!
//! | route          | response                                                         |
//! |----------------|------------------------------------------------------------------|
//! | `GET /metrics` | OpenMetrics text from [`Metrics::render`]                        |
//! | `GET /health`  | `200 {"status":"ok","active_sessions":N,"uptime_seconds":N}`     |
//! | `POST /reload` | `200 {"status":"reloaded","detail":..}` or `400 {"status":"rejected","error":..}` |
//!
//! Unknown paths get 404, a known path with the wrong method 405 (with `Allow`).
//! These routes have no authentication of their own: bind the listener to a
//! loopback or otherwise private address. The approvals API
//! ([`crate::approvals_api`]) is served here too, and authenticates every
//! call.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::metrics::{self, Metrics};

/// Callback that re-reads and applies the configuration. `Ok` carries a
/// human-readable summary, `Err` the reason the new configuration was rejected
/// (the running one stays in effect). It runs on a blocking thread.
pub type ReloadFn = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Everything the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub reload: ReloadFn,
    /// When the process started; `/health` reports the uptime from it.
    pub started: Instant,
    /// The approvals API, when approvals are on.
    pub approvals: Option<crate::approvals_api::Api>,
}

/// The admin routes, without a listener (useful for embedding or testing).
pub fn router(state: AdminState) -> Router {
    let approvals = state.approvals.clone();
    let admin = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .route("/reload", post(reload_handler))
        .with_state(Arc::new(state));
    match approvals {
        Some(api) => admin.merge(crate::approvals_api::router(api)),
        None => admin,
    }
}

/// Serves the admin API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener started");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("admin listener stopped");
    Ok(())
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics_handler(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn health_handler(State(state): State<Arc<AdminState>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "active_sessions": state.metrics.active_sessions(),
            "uptime_seconds": state.started.elapsed().as_secs(),
        }),
    )
}

async fn reload_handler(State(state): State<Arc<AdminState>>) -> Response {
    let reload = state.reload.clone();
    // Reloading reads files (and may parse certificates): keep it off the
    // async worker threads.
    let outcome = match tokio::task::spawn_blocking(move || reload()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "config reload task failed");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "status": "error", "error": "reload failed unexpectedly" }),
            );
        }
    };
    match outcome {
        Ok(detail) => {
            tracing::info!(%detail, "configuration reloaded via admin API");
            json(
                StatusCode::OK,
                serde_json::json!({ "status": "reloaded", "detail": detail }),
            )
        }
        Err(error) => {
            tracing::warn!(%error, "configuration reload rejected");
            json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "status": "rejected", "error": error }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ErrorKind;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    struct Reply {
        status_line: String,
        headers: String,
        body: String,
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .expect("response timed out")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("no header terminator");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        Reply {
            status_line: status_line.to_owned(),
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn admin_routes() {
        let metrics = Arc::new(Metrics::new());
        metrics.connection_opened("main");
        metrics.connection_opened("main");
        metrics.error(ErrorKind::Timeout);

        let calls = Arc::new(AtomicUsize::new(0));
        let reload: ReloadFn = {
            let calls = calls.clone();
            let metrics = metrics.clone();
            Arc::new(move || {
                let ok = calls.fetch_add(1, Ordering::SeqCst) == 0;
                metrics.reloads(ok);
                if ok {
                    Ok("3 routes".to_owned())
                } else {
                    Err("bad \"listen\" address".to_owned())
                }
            })
        };
        let state = AdminState {
            metrics: metrics.clone(),
            reload,
            started: Instant::now(),
            approvals: None,
        };

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stop_rx.await;
        }));

        let r = request(addr, "GET", "/metrics").await;
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert!(
            r.headers.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{}",
            r.headers
        );
        assert!(
            r.body
                .contains(r#"portcullis_connections_active{listener="main"} 2"#),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(r#"portcullis_errors_total{kind="timeout"} 1"#),
            "{}",
            r.body
        );
        assert!(r.body.ends_with("# EOF\n"));

        let r = request(addr, "GET", "/health").await;
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert!(
            r.headers.contains("content-type: application/json"),
            "{}",
            r.headers
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["active_sessions"], 2);
        assert!(v["uptime_seconds"].is_u64(), "{v}");

        let r = request(addr, "POST", "/reload").await;
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "reloaded", "detail": "3 routes"})
        );

        let r = request(addr, "POST", "/reload").await;
        assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "rejected", "error": "bad \"listen\" address"})
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let r = request(addr, "GET", "/metrics").await;
        assert!(
            r.body
                .contains(r#"portcullis_config_reloads_total{result="success"} 1"#),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(r#"portcullis_config_reloads_total{result="failure"} 1"#),
            "{}",
            r.body
        );

        let r = request(addr, "GET", "/nope").await;
        assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");

        let r = request(addr, "GET", "/reload").await;
        assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");
        assert!(r.headers.contains("allow: post"), "{}", r.headers);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let r = request(addr, "POST", "/health").await;
        assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");

        stop_tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("server did not shut down")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
