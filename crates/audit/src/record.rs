//! The record model: what an audit record can say.
//!
//! One [`Record`] per event: a connection attempt, a statement, a
//! statement's outcome, an approval event, a policy or configuration reload,
//! an administrative action. The chain ([`crate::chain`]) wraps each record in
//! an envelope carrying its sequence number, log id, timestamp and the hash
//! of its predecessor; the record itself holds only what happened.
//!
//! Data minimisation is part of the model, not a convention:
//! - statement text is the *normalised* text ([`NormalisedText`]): the
//!   caller replaces every literal with a placeholder before building the
//!   record (the analysis crate's shape does exactly this);
//! - bind parameter values cannot be stored raw: [`BindParams`] holds either
//!   nothing, keyed hashes made by a [`crate::params::ParamHasher`], or
//!   masked forms, and none of those types can be built from a raw value
//!   by accident;
//! - a failed connection records the user name only when the caller knows it
//!   names a configured user (people type passwords into user name fields).
//!
//! Every field is an integer, a string, a boolean, a list or a map: no
//! floats, so the canonical encoding ([`crate::canonical`]) is exact.
//! Optional fields are left out of the encoding when absent or empty, so a
//! later version that adds a field does not change the bytes (and hashes)
//! of records that do not use it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Connection(Box<ConnectionRecord>),
    Statement(Box<StatementRecord>),
    Outcome(OutcomeRecord),
    Approval(ApprovalRecord),
    Reload(ReloadRecord),
    Admin(AdminRecord),
}

impl Record {
    /// The record's kind, as stored in the searchable `kind` column.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Connection(_) => RecordKind::Connection,
            Record::Statement(_) => RecordKind::Statement,
            Record::Outcome(_) => RecordKind::Outcome,
            Record::Approval(_) => RecordKind::Approval,
            Record::Reload(_) => RecordKind::Reload,
            Record::Admin(_) => RecordKind::Admin,
        }
    }
}

#[cfg(test)]
impl Record {
    /// A configuration change by `subject` to `object`: a small record for
    /// tests of the log and its stores.
    pub(crate) fn admin_for_tests(subject: &str, object: &str) -> Record {
        Record::Admin(AdminRecord {
            actor: Identity {
                kind: IdentityKind::Human,
                subject: subject.to_owned(),
                groups: vec![],
                on_behalf_of: None,
            },
            action: AdminAction::ConfigChanged,
            object: object.to_owned(),
            detail: None,
        })
    }
}

impl From<StatementRecord> for Record {
    fn from(s: StatementRecord) -> Self {
        Record::Statement(Box::new(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Connection,
    Statement,
    Outcome,
    Approval,
    Reload,
    Admin,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Connection => "connection",
            RecordKind::Statement => "statement",
            RecordKind::Outcome => "outcome",
            RecordKind::Approval => "approval",
            RecordKind::Reload => "reload",
            RecordKind::Admin => "admin",
        }
    }
}

// ---------------------------------------------------------------- who, where

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    /// The stable name of the principal: a configured SCRAM user, or the
    /// name an API key was made for, a token's or certificate's user name.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The person an agent or service acts for, when it says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// Mirrors the configuration's identity kinds; kept here so the audit crate
/// does not depend on the configuration crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Human,
    Agent,
    Service,
}

/// Where a connection came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Peer address; absent for a Unix-domain socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Absent for a plaintext connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// For example `TLSv1.3`.
    pub version: String,
    /// For example `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Subject of a verified client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Whether the transport was entered with PostgreSQL 17's direct TLS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
}

/// Where a session went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub target: String,
    /// The target's environment (`production`, `staging`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The proxy's id for the client connection.
    pub session_id: String,
    /// The upstream server's backend PID, which ties the record to the
    /// server's own logs (`%p` in `log_line_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_pid: Option<u32>,
}

// ---------------------------------------------------------------- connections

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub source: Source,
    /// The proxy's id for the connection (also on success in
    /// [`Destination::session_id`]).
    pub session_id: String,
    /// Who logged in. On failure, only when the user name names a configured
    /// user: an unknown name may be a password typed into the wrong field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// How the identity was proven (`SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`,
    /// `api-key`),
    /// on the records of a session that logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// The credential's public id, when it has one: an API key's id, so
    /// that a session can be traced to the key that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The database role the session logged in as upstream, and the
    /// access profile that chose it (none: the target's own role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The target the client asked for, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub result: ConnectionResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ConnectionResult {
    Succeeded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend_pid: Option<u32>,
    },
    Failed {
        reason: FailureReason,
        /// The SQLSTATE the client was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sqlstate: Option<SqlState>,
    },
    /// A connection that had succeeded ended.
    Ended {
        reason: EndReason,
        duration_micros: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Wrong password or unknown user: deliberately not told apart.
    AuthenticationFailed,
    UnknownTarget,
    NotPermitted,
    TooManyConnections,
    EncryptionRequired,
    ProtocolViolation,
    UpstreamUnavailable,
    UpstreamLoginFailed,
    ShuttingDown,
    /// The audit store refused the record of the attempt (fail closed).
    AuditUnavailable,
    /// The client did not finish the handshake in time.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    ClientTerminated,
    ClientDisconnected,
    ServerClosed,
    IdleTimeout,
    ProtocolViolation,
    Shutdown,
    /// Portcullis closed it: a setting it cannot follow, a result it
    /// cannot mask.
    Refused,
    /// The connection to the database was lost.
    UpstreamLost,
    /// The credential it logged in with (an API key) was revoked with
    /// `--end-sessions`.
    CredentialRevoked,
}

// ---------------------------------------------------------------- statements

/// A statement as judged, submitted before it is forwarded (or refused).
/// Its outcome is folded in when it is known before the record is
/// written (the usual case on a `queued` target: the writer gathers
/// records for a few milliseconds); otherwise it follows in an
/// [`OutcomeRecord`] that names this record's sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRecord {
    pub identity: Identity,
    pub source: Source,
    pub destination: Destination,
    /// The statement's number within its session, assigned by the proxy.
    pub statement_id: u64,
    pub protocol: Protocol,
    /// The prepared statement's name (extended protocol; empty is the
    /// unnamed statement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_name: Option<String>,
    pub text: NormalisedText,
    /// Hex fingerprint of the normalised text, the same for every statement
    /// that differs only in its literals.
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Touched>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Touched>,
    pub decision: Decision,
    /// Columns masked for this caller, with their classification. How many
    /// values were masked is only known once the result has streamed, so
    /// the counts are in the outcome record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_columns: Vec<MaskedColumn>,
    #[serde(default, skip_serializing_if = "BindParams::is_off")]
    pub params: BindParams,
    /// The outcome, when it was known before the record was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StatementOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Simple,
    Extended,
    /// The FunctionCall message (large-object calls).
    FunctionCall,
}

/// Statement text with every literal replaced by a placeholder (`$1`, `?`,
/// whatever the caller's normaliser uses). The audit crate cannot check
/// this; the constructor's name is the caller's promise that it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NormalisedText(String);

impl NormalisedText {
    /// `text` must already have its literals replaced.
    pub fn from_normalised(text: impl Into<String>) -> Self {
        NormalisedText(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A relation touched, schema-qualified (`public.customers`), with the
/// columns touched; no columns means the statement's columns were not
/// resolved (for example a function call), not that none were touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    pub object: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// Ids of the policies that decided (Cedar policy ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Hash of the policy bundle in force, so the decision can be replayed.
    pub bundle_hash: String,
    /// Why, when the decision was a refusal the client was told about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allowed,
    Denied,
    /// Waiting for approval.
    Held,
    /// Allowed, with some result columns masked.
    Masked,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allowed => "allowed",
            Effect::Denied => "denied",
            Effect::Held => "held",
            Effect::Masked => "masked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedColumn {
    /// Result column, qualified by its source where known.
    pub column: String,
    pub classification: String,
}

/// What is kept of a statement's bind parameters. There is deliberately no
/// variant that holds a raw value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum BindParams {
    /// Nothing kept (the default).
    #[default]
    Off,
    /// HMAC-SHA256 of each value under a configured key; a holder of the key
    /// can test whether a value was used, nobody else can read it. `None`
    /// is SQL NULL.
    KeyedHash {
        key_id: String,
        values: Vec<Option<crate::params::ParamDigest>>,
    },
    /// Each value as the masking rules render it.
    Masked {
        values: Vec<Option<crate::params::MaskedParam>>,
    },
}

impl BindParams {
    pub fn is_off(&self) -> bool {
        matches!(self, BindParams::Off)
    }
}

// ---------------------------------------------------------------- outcomes

/// What became of a statement, once the server has answered it, as a
/// record of its own. It follows the statement's record when that record
/// was already written (a `strict` target writes it before the statement
/// runs; a long statement's record is written while it runs); otherwise
/// the outcome is folded into the statement record
/// ([`StatementRecord::outcome`]) and no outcome record is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// Sequence number of the statement record this completes.
    pub statement_seq: u64,
    pub session_id: String,
    pub statement_id: u64,
    #[serde(flatten)]
    pub outcome: StatementOutcome,
}

/// A statement's outcome: in an [`OutcomeRecord`], or folded into its
/// [`StatementRecord`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementOutcome {
    /// The CommandComplete tag's verb (`SELECT`, `UPDATE`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Rows returned or affected, from CommandComplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes of result sent to the client.
    pub bytes: u64,
    pub duration_micros: u64,
    /// Absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<SqlState>,
    /// Values masked, per classification.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masked_values: BTreeMap<String, u64>,
    /// Content-detector hits, per entity (`email`, `credit_card`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detector_hits: BTreeMap<String, u64>,
}

/// A five-character SQLSTATE (`[0-9A-Z]{5}`), checked when built and when
/// read back, so a free-form message can never sit in its place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SqlState(String);

impl SqlState {
    pub fn new(code: &str) -> Result<Self, crate::AuditError> {
        let ok = code.len() == 5
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if ok {
            Ok(SqlState(code.to_owned()))
        } else {
            Err(crate::AuditError::InvalidField {
                field: "sqlstate",
                why: "a SQLSTATE is five digits or capital letters",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SqlState {
    type Error = crate::AuditError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SqlState::new(&s)
    }
}

impl From<SqlState> for String {
    fn from(s: SqlState) -> String {
        s.0
    }
}

// ---------------------------------------------------------------- approvals, reloads, admin

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub request_id: String,
    pub event: ApprovalEvent,
    /// Who requested, approved or rejected; absent for expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Identity>,
    /// Who the held statement is for (the actor of `requested`), so that
    /// every event names both identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Identity>,
    pub target: String,
    /// The held statement's record, when the request is for a statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalEvent {
    Requested,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    /// The approved statement was sent to the database.
    Executed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRecord {
    pub what: ReloadKind,
    /// Hash of what was loaded (the policy bundle hash for policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Who asked for it (`signal`, an admin API key's subject, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub result: ReloadResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadKind {
    Policy,
    Config,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadResult {
    Applied,
    /// The old configuration stays in force.
    Rejected {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRecord {
    pub actor: Identity,
    pub action: AdminAction,
    /// What the action was about (a key id, a request id, a file).
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    KeyCreated,
    KeyRevoked,
    ApprovalRuleChanged,
    ConfigChanged,
    AuditExported,
    AuditVerified,
    /// Old records were moved out of the store into an archived segment.
    AuditRotated,
    SessionTerminated,
}

fn is_false(b: &bool) -> bool {
    !*b
}
