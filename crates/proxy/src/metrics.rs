//! Prometheus/OpenMetrics instrumentation for the proxy.
//!
//! [`Metrics`] is created once, shared as `Arc<Metrics>`, and rendered by the
//! admin server ([`crate::admin`]) on `GET /metrics`. Every metric name carries
//! the `portcullis_` prefix.
//!
//! Hot-path updates (bytes relayed, statements, statement latency, errors) are
//! plain atomic operations on counters resolved when [`Metrics`] is built: no
//! label lookup and no lock. Per-listener series are looked up once per
//! connection; a session that wants to avoid even that can resolve a
//! [`ListenerMetrics`] handle once per listener and use [`ConnectionGuard`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every exported metric name (the registry adds the `_`).
pub const PREFIX: &str = "portcullis";

/// Upper bounds (seconds) of the handshake-duration histogram: 0.5ms .. 10s.
pub const HANDSHAKE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the statement-duration histogram: 50us .. 60s.
pub const STATEMENT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why a session (or an attempt at one) failed; the `kind` label of
/// `portcullis_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client violated the wire protocol.
    ClientProtocol,
    /// Client authentication failed.
    ClientAuth,
    /// Could not reach the upstream server.
    UpstreamConnect,
    /// The upstream server rejected our login.
    UpstreamAuth,
    /// The upstream connection went away mid-session.
    UpstreamLost,
    /// A configured limit (connections, sizes, ...) was hit.
    Limit,
    /// A timeout expired.
    Timeout,
    /// Refused by policy.
    Refused,
    /// TLS failure on either side.
    Tls,
    /// A bug or unexpected internal condition.
    Internal,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::ClientProtocol,
        ErrorKind::ClientAuth,
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamAuth,
        ErrorKind::UpstreamLost,
        ErrorKind::Limit,
        ErrorKind::Timeout,
        ErrorKind::Refused,
        ErrorKind::Tls,
        ErrorKind::Internal,
    ];

    /// The value of the `kind` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ClientProtocol => "client_protocol",
            ErrorKind::ClientAuth => "client_auth",
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamAuth => "upstream_auth",
            ErrorKind::UpstreamLost => "upstream_lost",
            ErrorKind::Limit => "limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "refused",
            ErrorKind::Tls => "tls",
            ErrorKind::Internal => "internal",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type StaticLabels = [(&'static str, &'static str); 1];
type ListenerLabels = [(&'static str, String); 1];

/// All proxy metrics plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<ListenerLabels, Counter>,
    connections_active: Family<ListenerLabels, Gauge>,
    /// Sum over `connections_active`; not exported, backs [`Metrics::active_sessions`].
    active_total: Gauge,
    client_bytes: Counter,
    server_bytes: Counter,
    statements: Counter,
    inference: Counter,
    handshake_seconds: AtomicHistogram,
    statement_seconds: AtomicHistogram,
    errors: [Counter; ErrorKind::ALL.len()],
    cancel_forwarded: Counter,
    cancel_unknown: Counter,
    reload_ok: Counter,
    reload_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);

        let connections = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections",
            "Client connections accepted, per listener",
            connections.clone(),
        );
        let connections_active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections_active",
            "Client connections currently open, per listener",
            connections_active.clone(),
        );

        let bytes = Family::<StaticLabels, Counter>::default();
        registry.register(
            "bytes",
            "Bytes relayed between clients and upstream servers",
            bytes.clone(),
        );
        let client_bytes = bytes
            .get_or_create(&[("direction", "client_to_server")])
            .clone();
        let server_bytes = bytes
            .get_or_create(&[("direction", "server_to_client")])
            .clone();

        let statements = Counter::default();
        registry.register(
            "statements",
            "Statements relayed (simple Query messages and Sync-terminated extended-protocol batches)",
            statements.clone(),
        );

        let inference = Counter::default();
        registry.register(
            "masking_inference",
            "Messages judged that choose, group or order rows by a column masked for their caller ([masking] inference), refused or not",
            inference.clone(),
        );

        let handshake_seconds = AtomicHistogram::new(HANDSHAKE_BUCKETS);
        registry.register_with_unit(
            "handshake_duration",
            "Time from accepting a client to the session being ready (TLS, startup, authentication, upstream login)",
            Unit::Seconds,
            handshake_seconds.clone(),
        );
        let statement_seconds = AtomicHistogram::new(STATEMENT_BUCKETS);
        registry.register_with_unit(
            "statement_duration",
            "Time from a statement being forwarded upstream to its ReadyForQuery",
            Unit::Seconds,
            statement_seconds.clone(),
        );

        let error_family = Family::<StaticLabels, Counter>::default();
        registry.register("errors", "Session errors by kind", error_family.clone());
        let errors =
            ErrorKind::ALL.map(|k| error_family.get_or_create(&[("kind", k.as_str())]).clone());

        let cancels = Family::<StaticLabels, Counter>::default();
        registry.register(
            "cancel_requests",
            "CancelRequest messages received, by result",
            cancels.clone(),
        );
        let cancel_forwarded = cancels.get_or_create(&[("result", "forwarded")]).clone();
        let cancel_unknown = cancels.get_or_create(&[("result", "unknown_key")]).clone();

        let reloads = Family::<StaticLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reload attempts, by result",
            reloads.clone(),
        );
        let reload_ok = reloads.get_or_create(&[("result", "success")]).clone();
        let reload_failed = reloads.get_or_create(&[("result", "failure")]).clone();

        Metrics {
            registry,
            connections,
            connections_active,
            active_total: Gauge::default(),
            client_bytes,
            server_bytes,
            statements,
            inference,
            handshake_seconds,
            statement_seconds,
            errors,
            cancel_forwarded,
            cancel_unknown,
            reload_ok,
            reload_failed,
        }
    }

    /// Resolves the per-listener series once; the handle is cheap to clone and
    /// its operations are lock-free.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let labels = [("listener", listener.to_owned())];
        ListenerMetrics {
            connections: self.connections.get_or_create(&labels).clone(),
            active: self.connections_active.get_or_create(&labels).clone(),
            active_total: self.active_total.clone(),
        }
    }

    /// A client connection was accepted on `listener`
    /// (`connections_total` +1, `connections_active` +1).
    pub fn connection_opened(&self, listener: &str) {
        self.listener(listener).opened();
    }

    /// A client connection on `listener` ended (`connections_active` -1).
    pub fn connection_closed(&self, listener: &str) {
        self.listener(listener).closed();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection(&self, listener: &str) -> ConnectionGuard {
        self.listener(listener).connection()
    }

    #[inline]
    pub fn client_bytes(&self, n: u64) {
        self.client_bytes.inc_by(n);
    }

    #[inline]
    pub fn server_bytes(&self, n: u64) {
        self.server_bytes.inc_by(n);
    }

    #[inline]
    pub fn statements(&self, n: u64) {
        self.statements.inc_by(n);
    }

    /// A message chooses rows by a column masked for its caller.
    #[inline]
    pub fn inference(&self) {
        self.inference.inc();
    }

    #[inline]
    pub fn handshake_seconds(&self, s: f64) {
        self.handshake_seconds.observe(s);
    }

    #[inline]
    pub fn statement_seconds(&self, s: f64) {
        self.statement_seconds.observe(s);
    }

    #[inline]
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].inc();
    }

    /// `result="forwarded"` if the key matched a live session, else `"unknown_key"`.
    #[inline]
    pub fn cancel_requests(&self, forwarded: bool) {
        if forwarded {
            self.cancel_forwarded.inc();
        } else {
            self.cancel_unknown.inc();
        }
    }

    /// `result="success"` or `"failure"`.
    pub fn reloads(&self, ok: bool) {
        if ok {
            self.reload_ok.inc();
        } else {
            self.reload_failed.inc();
        }
    }

    /// Connections currently open, summed over all listeners.
    pub fn active_sessions(&self) -> i64 {
        self.active_total.get()
    }

    /// The OpenMetrics text exposition (ends with `# EOF`); serve it with
    /// [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail, and our own metrics encode infallibly.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }
}

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Per-listener series, resolved once. Clone freely; all operations are atomic.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    connections: Counter,
    active: Gauge,
    active_total: Gauge,
}

impl ListenerMetrics {
    /// A connection was accepted.
    #[inline]
    pub fn opened(&self) {
        self.connections.inc();
        self.active.inc();
        self.active_total.inc();
    }

    /// A connection ended. Pair every call with exactly one [`opened`](Self::opened).
    #[inline]
    pub fn closed(&self) {
        self.active.dec();
        self.active_total.dec();
    }

    /// [`opened`](Self::opened) now, [`closed`](Self::closed) when the guard drops.
    pub fn connection(&self) -> ConnectionGuard {
        self.opened();
        ConnectionGuard {
            listener: self.clone(),
        }
    }
}

/// Keeps a connection counted in `connections_active` until dropped.
#[derive(Debug)]
#[must_use = "the connection is counted as closed as soon as the guard is dropped"]
pub struct ConnectionGuard {
    listener: ListenerMetrics,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.listener.closed();
    }
}

/// A fixed-bucket histogram updated with atomics only (prometheus-client's
/// own `Histogram` takes a lock per observation).
#[derive(Debug, Clone)]
struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Finite upper bounds, ascending.
    bounds: Box<[f64]>,
    /// Non-cumulative counts; one more than `bounds` (the `+Inf` bucket).
    counts: Box<[AtomicU64]>,
    /// `f64` bits of the sum of observations.
    sum: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &[f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds: bounds.into(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let v = v.max(0.0);
        let inner = &*self.inner;
        // First bucket whose upper bound is >= v (`le` semantics).
        let i = inner.bounds.partition_point(|b| *b < v);
        inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let inner = &*self.inner;
        let mut count = 0u64;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            // The encoder renders an f64::MAX bound as `+Inf`.
            .chain(std::iter::once(f64::MAX))
            .zip(inner.counts.iter())
            .map(|(bound, c)| {
                let c = c.load(Ordering::Relaxed);
                count += c;
                (bound, c)
            })
            .collect();
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        // Count is derived from the buckets so `_count` always equals the +Inf bucket.
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
    }

    fn value(text: &str, series: &str) -> String {
        let l = line(text, &format!("{series} "));
        l[series.len() + 1..].to_owned()
    }

    #[test]
    fn fresh_registry_exports_zeroed_series() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(value(&text, "portcullis_statements_total"), "0");
        assert_eq!(
            value(
                &text,
                r#"portcullis_bytes_total{direction="client_to_server"}"#
            ),
            "0"
        );
        for kind in ErrorKind::ALL {
            assert_eq!(
                value(
                    &text,
                    &format!(r#"portcullis_errors_total{{kind="{kind}"}}"#)
                ),
                "0"
            );
        }
        assert_eq!(
            value(
                &text,
                r#"portcullis_config_reloads_total{result="failure"}"#
            ),
            "0"
        );
        assert_eq!(
            value(&text, "portcullis_handshake_duration_seconds_count"),
            "0"
        );
        assert_eq!(m.active_sessions(), 0);
    }

    #[test]
    fn counters_and_gauges_render_with_labels() {
        let m = Metrics::new();
        m.connection_opened("main");
        m.connection_opened("main");
        m.connection_opened("internal");
        m.connection_closed("main");
        m.client_bytes(100);
        m.client_bytes(23);
        m.server_bytes(4096);
        m.statements(3);
        m.statements(1);
        m.inference();
        m.error(ErrorKind::ClientAuth);
        m.error(ErrorKind::ClientAuth);
        m.error(ErrorKind::Tls);
        m.cancel_requests(true);
        m.cancel_requests(false);
        m.cancel_requests(false);
        m.reloads(true);
        m.reloads(false);
        m.reloads(false);

        let text = m.render();
        assert!(
            text.contains("# TYPE portcullis_connections counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE portcullis_connections_active gauge"),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"portcullis_connections_total{listener="main"}"#),
            "2"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_connections_total{listener="internal"}"#
            ),
            "1"
        );
        assert_eq!(
            value(&text, r#"portcullis_connections_active{listener="main"}"#),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_connections_active{listener="internal"}"#
            ),
            "1"
        );
        assert_eq!(m.active_sessions(), 2);
        assert_eq!(
            value(
                &text,
                r#"portcullis_bytes_total{direction="client_to_server"}"#
            ),
            "123"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_bytes_total{direction="server_to_client"}"#
            ),
            "4096"
        );
        assert_eq!(value(&text, "portcullis_statements_total"), "4");
        assert_eq!(value(&text, "portcullis_masking_inference_total"), "1");
        assert_eq!(
            value(&text, r#"portcullis_errors_total{kind="client_auth"}"#),
            "2"
        );
        assert_eq!(value(&text, r#"portcullis_errors_total{kind="tls"}"#), "1");
        assert_eq!(
            value(&text, r#"portcullis_errors_total{kind="internal"}"#),
            "0"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_cancel_requests_total{result="forwarded"}"#
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_cancel_requests_total{result="unknown_key"}"#
            ),
            "2"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_config_reloads_total{result="success"}"#
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"portcullis_config_reloads_total{result="failure"}"#
            ),
            "2"
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::new();
        m.handshake_seconds(0.0003); // <= 0.5ms
        m.handshake_seconds(0.002); // <= 2.5ms
        m.handshake_seconds(0.5); // exactly on a bound
        m.handshake_seconds(30.0); // +Inf
        m.statement_seconds(0.00004);
        m.statement_seconds(45.0);
        m.statement_seconds(f64::NAN); // ignored

        let text = m.render();
        assert!(
            text.contains("# TYPE portcullis_handshake_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT portcullis_handshake_duration_seconds seconds"),
            "{text}"
        );
        let h = "portcullis_handshake_duration_seconds";
        assert_eq!(value(&text, &format!("{h}_count")), "4");
        let sum: f64 = value(&text, &format!("{h}_sum")).parse().unwrap();
        assert!((sum - 30.5023).abs() < 1e-9, "{sum}");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="0.0005"}}"#)), "1");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="0.001"}}"#)), "1");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="0.0025"}}"#)), "2");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="0.5"}}"#)), "3");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="10.0"}}"#)), "3");
        assert_eq!(value(&text, &format!(r#"{h}_bucket{{le="+Inf"}}"#)), "4");

        let s = "portcullis_statement_duration_seconds";
        assert_eq!(value(&text, &format!("{s}_count")), "2");
        assert_eq!(value(&text, &format!(r#"{s}_bucket{{le="0.00005"}}"#)), "1");
        assert_eq!(value(&text, &format!(r#"{s}_bucket{{le="30.0"}}"#)), "1");
        assert_eq!(value(&text, &format!(r#"{s}_bucket{{le="60.0"}}"#)), "2");
        assert_eq!(value(&text, &format!(r#"{s}_bucket{{le="+Inf"}}"#)), "2");
    }

    #[test]
    fn connection_guard_and_handles() {
        let m = Arc::new(Metrics::new());
        let main = m.listener("main");
        {
            let _a = main.connection();
            let _b = m.connection("main");
            assert_eq!(m.active_sessions(), 2);
        }
        assert_eq!(m.active_sessions(), 0);
        let text = m.render();
        assert_eq!(
            value(&text, r#"portcullis_connections_total{listener="main"}"#),
            "2"
        );
        assert_eq!(
            value(&text, r#"portcullis_connections_active{listener="main"}"#),
            "0"
        );
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        m.client_bytes(1);
                        m.statement_seconds(0.001);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render();
        assert_eq!(
            value(
                &text,
                r#"portcullis_bytes_total{direction="client_to_server"}"#
            ),
            "40000"
        );
        assert_eq!(
            value(&text, "portcullis_statement_duration_seconds_count"),
            "40000"
        );
        let sum: f64 = value(&text, "portcullis_statement_duration_seconds_sum")
            .parse()
            .unwrap();
        assert!((sum - 40.0).abs() < 1e-6, "{sum}");
    }
}
