//! Statement judging inside a session: the guard's verdict on each Query,
//! Parse and Bind, and what replaces a refused message upstream.
//!
//! A refused message never reaches the server. In its place the proxy
//! sends a message that fails with a syntax error ([`REFUSED_SQL`]), and
//! swaps the server's ErrorResponse for its own (see `pending.rs`). The
//! server therefore answers in exactly the place the refused message's
//! answer belonged, and does what PostgreSQL does after a failed statement:
//! aborts an open transaction (so a later COMMIT cannot commit earlier
//! work), and in the extended protocol discards everything up to Sync.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use portcullis_guard::{sqlstate, Judgement, PreparedText, Refusal, SessionState, Who};
use portcullis_policy::{Principal, PrincipalKind};
use portcullis_wire::encode::{self, Report, Severity};
use tracing::{info, warn};

use crate::runtime::{TargetRuntime, UserRuntime};

/// What a refused statement is replaced with upstream: a syntax error
/// (raised by the raw parser, so even in an aborted transaction), and the
/// server's log shows the statement as refused.
pub const REFUSED_SQL: &str = "PORTCULLIS REFUSED THIS STATEMENT";

/// The statement name used when a refused Bind is replaced by a failing
/// Parse: a failing Parse of a named statement has no side effects.
pub const REFUSED_NAME: &[u8] = b"portcullis.refused";

/// The guard's view of one session, shared by both pumps.
pub(crate) struct Guarded {
    pub target: Arc<TargetRuntime>,
    who: Who,
    state: Mutex<SessionState>,
    /// The client encoding is UTF8 (statement bytes must then be UTF-8).
    utf8: AtomicBool,
    /// A statement that changes the schema was let through: refresh the
    /// catalog once the server is idle.
    schema_dirty: AtomicBool,
}

/// What to do with a judged message.
pub(crate) enum Verdict {
    Pass,
    /// Pass, counting the rows it changes against the target's limit
    /// (see `row_limit.rs`); `over` is what the client gets if it goes over.
    Limited {
        limit: u64,
        over: Bytes,
    },
    /// Refused: the client gets this ErrorResponse in the message's place.
    Refuse(Bytes),
}

impl Guarded {
    pub fn new(
        target: Arc<TargetRuntime>,
        user: &UserRuntime,
        peer: Option<SocketAddr>,
        search_path: Option<&str>,
        startup_messages: &[u8],
    ) -> Guarded {
        let kind = match user.config.kind {
            portcullis_config::IdentityKind::Human => PrincipalKind::Human,
            portcullis_config::IdentityKind::Agent => PrincipalKind::Agent,
            portcullis_config::IdentityKind::Service => PrincipalKind::Service,
        };
        let who = Who {
            principal: Principal {
                name: user.config.name.clone(),
                kind,
                groups: user.config.groups.clone(),
            },
            source: peer.map(|p| p.ip()),
        };
        let state = SessionState::new(target.config.user.clone(), search_path);
        let g = Guarded {
            target,
            who,
            state: Mutex::new(state),
            utf8: AtomicBool::new(true),
            schema_dirty: AtomicBool::new(false),
        };
        for (name, value) in portcullis_wire::decode::parameter_statuses(startup_messages) {
            g.parameter_status(name, value);
        }
        g
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ParameterStatus from the server.
    pub fn parameter_status(&self, name: &str, value: &str) {
        if name.eq_ignore_ascii_case("client_encoding") {
            self.utf8.store(
                value.eq_ignore_ascii_case("UTF8") || value.eq_ignore_ascii_case("UNICODE"),
                Ordering::Relaxed,
            );
        } else if name.eq_ignore_ascii_case("search_path") {
            self.state().reported_search_path(value);
        }
    }

    /// A ReadyForQuery from the server; `drained` when every request sent
    /// so far has been answered.
    pub fn ready(&self, status: u8, drained: bool) {
        let idle = status == portcullis_wire::tags::txn::IDLE;
        self.state().ready(idle, drained);
        if idle && self.schema_dirty.swap(false, Ordering::Relaxed) {
            crate::catalog::refresh(&self.target);
        }
    }

    /// An ErrorResponse, or a CommandComplete saying ROLLBACK: changes the
    /// proxy followed may not have taken effect.
    pub fn spoiled(&self) {
        self.state().spoiled();
    }

    /// Statement text as the analysis reads it.
    fn text<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>, Refusal> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.into()),
            Err(_) if self.utf8.load(Ordering::Relaxed) => Err(Refusal {
                sqlstate: "22021",
                message: "invalid byte sequence for encoding \"UTF8\"".into(),
                hint: Some("Send statements in the session's client_encoding.".into()),
                policy: None,
            }),
            // Every encoding the server accepts from clients here is
            // ASCII-safe (the others end the session, see lexing.rs): quotes,
            // backslashes and keywords are single ASCII bytes, so replacing
            // the other bytes keeps how the text splits into tokens. Only
            // non-ASCII identifiers lose their exact spelling.
            Err(_) => Ok(String::from_utf8_lossy(bytes)),
        }
    }

    /// Judges a simple Query; `status` is the transaction status before it.
    pub fn query(&self, sql: &[u8], status: u8) -> Verdict {
        let sql = match self.text(sql) {
            Ok(s) => s,
            Err(r) => return self.refuse(&r, "query"),
        };
        let mut state = self.state();
        let j = self.target.guard.judge_text(&sql, &self.who, &state);
        let mut verdict = self.conclude(&j, "query");
        if let (Verdict::Pass, Some(a)) = (&verdict, &j.analysis) {
            if let Some(limit) = j
                .row_limit
                .filter(|_| status != portcullis_wire::tags::txn::FAILED)
            {
                if a.statements.len() != 1 {
                    let r = Refusal {
                        sqlstate: sqlstate::DENIED,
                        message: format!(
                            "target \"{}\" has a row limit: statements that change rows must be sent one per query, not with other statements",
                            self.target.config.name
                        ),
                        hint: Some("Send each INSERT, UPDATE, DELETE or MERGE as a query of its own; Portcullis counts the rows each one changes.".into()),
                        policy: None,
                    };
                    return self.refuse(&r, "query");
                }
                verdict = self.limited(limit);
            }
            state.apply(a);
            if j.opaque {
                state.opaque_ran();
            }
            if j.changes_schema {
                self.schema_dirty.store(true, Ordering::Relaxed);
            }
        }
        verdict
    }

    fn limited(&self, limit: u64) -> Verdict {
        Verdict::Limited {
            limit,
            over: super::row_limit::exceeded(limit, &self.target.config.name),
        }
    }

    /// Judges a Parse of `sql` as statement `name`.
    pub fn parse(&self, name: &[u8], sql: &[u8]) -> Verdict {
        if name.starts_with(b"portcullis.") {
            let r = Refusal {
                sqlstate: sqlstate::DENIED,
                message: "statement names starting with \"portcullis.\" are reserved".into(),
                hint: Some("Use another name.".into()),
                policy: None,
            };
            return self.refuse(&r, "parse");
        }
        let sql = match self.text(sql) {
            Ok(s) => s,
            Err(r) => return self.refuse(&r, "parse"),
        };
        let mut state = self.state();
        let j = self.target.guard.judge_text(&sql, &self.who, &state);
        let verdict = self.conclude(&j, "parse");
        if let (Verdict::Pass, Some(a)) = (&verdict, &j.analysis) {
            state.prepare(
                &String::from_utf8_lossy(name),
                PreparedText {
                    analysis: a.clone(),
                    index: 0,
                },
            );
        }
        verdict
    }

    /// Judges a Bind of prepared statement `name`; `status` as for
    /// [`Guarded::query`].
    pub fn bind(&self, name: &[u8], status: u8) -> Verdict {
        let name = String::from_utf8_lossy(name);
        let mut state = self.state();
        let j = self.target.guard.judge_prepared(&name, &self.who, &state);
        let mut verdict = self.conclude(&j, "bind");
        if let Verdict::Pass = verdict {
            if let Some(limit) = j
                .row_limit
                .filter(|_| status != portcullis_wire::tags::txn::FAILED)
            {
                verdict = self.limited(limit);
            }
            // The statement will run: follow what it sets up (a SET sent
            // through the extended protocol, say).
            let texts: Vec<_> = match state.prepared(&name) {
                Some(portcullis_guard::Prepared::Texts(t)) => {
                    t.iter().map(|t| t.analysis.clone()).collect()
                }
                _ => Vec::new(),
            };
            for a in &texts {
                state.apply(a);
            }
            if j.opaque {
                state.opaque_ran();
            }
            if j.changes_schema {
                self.schema_dirty.store(true, Ordering::Relaxed);
            }
        }
        verdict
    }

    /// A Close of prepared statement `name`.
    pub fn close_statement(&self, name: &[u8]) {
        self.state().close(&String::from_utf8_lossy(name));
    }

    fn conclude(&self, j: &Judgement, message: &'static str) -> Verdict {
        let Some(r) = &j.refusal else {
            return Verdict::Pass;
        };
        let class = j.statements.last().map(|s| s.class.as_str()).unwrap_or("-");
        if !j.enforced {
            warn!(
                user = %self.who.principal.name,
                target = %self.target.config.name,
                policy = r.policy.as_deref().unwrap_or("-"),
                class,
                message,
                "observe mode: statement would be refused"
            );
            return Verdict::Pass;
        }
        self.refuse(r, message)
    }

    fn refuse(&self, r: &Refusal, message: &'static str) -> Verdict {
        info!(
            user = %self.who.principal.name,
            target = %self.target.config.name,
            policy = r.policy.as_deref().unwrap_or("-"),
            sqlstate = r.sqlstate,
            message,
            "statement refused"
        );
        let mut b = BytesMut::new();
        encode::error_response(
            &mut b,
            &Report {
                severity: Severity::Error,
                code: r.sqlstate,
                message: &r.message,
                detail: None,
                hint: r.hint.as_deref(),
            },
        );
        Verdict::Refuse(b.freeze())
    }
}

/// The replacement for a refused Query or FunctionCall.
pub fn refused_query() -> BytesMut {
    let mut b = BytesMut::new();
    encode::query(&mut b, REFUSED_SQL);
    b
}

/// The replacement for a refused Parse of statement `name`.
pub fn refused_parse(name: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode::parse(&mut b, name, REFUSED_SQL);
    b
}

/// The replacement for any other refused extended-protocol message.
pub fn refused_step() -> BytesMut {
    refused_parse(REFUSED_NAME)
}

/// PostgreSQL's answer to a message whose fields do not parse.
pub fn invalid_message_format() -> Bytes {
    let mut b = BytesMut::new();
    encode::error_response(
        &mut b,
        &Report {
            severity: Severity::Error,
            code: "08P01",
            message: "invalid message format",
            detail: None,
            hint: None,
        },
    );
    b.freeze()
}
