//! What the proxy tells the policy engine about one statement.
//!
//! These types are Portcullis' own, not Cedar's, so the proxy maps analysis
//! facts and session state onto plain Rust values and never builds Cedar
//! entities itself; `translate.rs` is the one place that does. Everything is
//! `Hash + Eq` so a whole request can key a decision cache.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::action::Action;

/// One statement to judge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    pub principal: Principal,
    pub target: TargetRef,
    pub statement: StatementFacts,
    pub context: RequestContext,
}

/// Who sent the statement: the authenticated identity from the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    /// Group names, as in the configuration's `groups`.
    pub groups: Vec<String>,
    /// The person an agent or service acts for, when it says so (an API
    /// key bound to a person, a token's `act` claim or user claim).
    pub on_behalf_of: Option<String>,
}

/// Mirrors the configuration's identity `kind`. Humans are Cedar `User`s;
/// agents and services are Cedar `Agent`s whose `kind` attribute says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PrincipalKind {
    #[default]
    Human,
    Agent,
    Service,
}

impl PrincipalKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Human => "human",
            PrincipalKind::Agent => "agent",
            PrincipalKind::Service => "service",
        }
    }
}

impl FromStr for PrincipalKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "human" | "user" => Ok(PrincipalKind::Human),
            "agent" => Ok(PrincipalKind::Agent),
            "service" => Ok(PrincipalKind::Service),
            _ => Err(format!(
                "unknown principal kind {s:?}; expected human, agent or service"
            )),
        }
    }
}

/// The target (upstream database) the session is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetRef {
    pub name: String,
    /// The configuration's environment label: production, staging,
    /// development or any label.
    pub environment: String,
    /// The database on the upstream server (the configuration's `database`,
    /// by default the target's name). A statement that names any other
    /// database (CREATE, ALTER, DROP DATABASE) reaches beyond the target:
    /// see `context.other_database`.
    pub database: String,
}

impl TargetRef {
    /// A target whose upstream database has the target's own name, as when
    /// the configuration does not say `database`.
    pub fn new(name: impl Into<String>, environment: impl Into<String>) -> Self {
        let name = name.into();
        TargetRef {
            database: name.clone(),
            environment: environment.into(),
            name,
        }
    }

    /// Whether `database` (as the server will read it) is this target's own
    /// upstream database. Names are compared exactly, as PostgreSQL stores
    /// them; a name the server would shorten to 63 bytes is never the
    /// target's own (the target's own name is at most 63 bytes), so it
    /// counts as another database, which errs towards refusing.
    pub fn is_own_database(&self, database: &str) -> bool {
        self.database == database
    }
}

/// An object an operation touches: below the target, schema-qualified as
/// the server resolved it; or a whole database on the target's server.
/// Column references imply their table, table references their schema: the
/// engine adds the ancestors itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceRef {
    /// A database on the target's server, named by CREATE, ALTER or DROP
    /// DATABASE: the target's own or another one. Not below the target.
    Database {
        name: String,
    },
    Schema {
        schema: String,
    },
    Table {
        schema: String,
        table: String,
    },
    Column {
        schema: String,
        table: String,
        column: String,
    },
}

impl ResourceRef {
    pub fn database(name: impl Into<String>) -> Self {
        ResourceRef::Database { name: name.into() }
    }

    pub fn schema(schema: impl Into<String>) -> Self {
        ResourceRef::Schema {
            schema: schema.into(),
        }
    }

    pub fn table(schema: impl Into<String>, table: impl Into<String>) -> Self {
        ResourceRef::Table {
            schema: schema.into(),
            table: table.into(),
        }
    }

    pub fn column(
        schema: impl Into<String>,
        table: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        ResourceRef::Column {
            schema: schema.into(),
            table: table.into(),
            column: column.into(),
        }
    }

    /// The parent object, if any (a column's table, a table's schema).
    pub fn parent(&self) -> Option<ResourceRef> {
        match self {
            ResourceRef::Database { .. } | ResourceRef::Schema { .. } => None,
            ResourceRef::Table { schema, .. } => Some(ResourceRef::schema(schema.clone())),
            ResourceRef::Column { schema, table, .. } => {
                Some(ResourceRef::table(schema.clone(), table.clone()))
            }
        }
    }

    /// The Cedar entity id: identifiers joined by dots, each quoted only
    /// when it is not a plain lower-case identifier. Quoting keeps ids
    /// unambiguous: schema `a.b` table `c` is `"a.b".c`, never `a.b.c`.
    pub fn cedar_id(&self) -> String {
        let mut out = String::new();
        match self {
            ResourceRef::Database { name } => push_ident(&mut out, name),
            ResourceRef::Schema { schema } => push_ident(&mut out, schema),
            ResourceRef::Table { schema, table } => {
                push_ident(&mut out, schema);
                out.push('.');
                push_ident(&mut out, table);
            }
            ResourceRef::Column {
                schema,
                table,
                column,
            } => {
                push_ident(&mut out, schema);
                out.push('.');
                push_ident(&mut out, table);
                out.push('.');
                push_ident(&mut out, column);
            }
        }
        out
    }
}

impl fmt::Display for ResourceRef {
    /// The Cedar id, with `database ` in front of a database's so it cannot
    /// be taken for a schema: the spelling [`ResourceRef::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ResourceRef::Database { .. } = self {
            f.write_str("database ")?;
        }
        f.write_str(&self.cedar_id())
    }
}

/// A resource name that is not `schema`, `schema.table`,
/// `schema.table.column` or `database name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a resource name ({reason}); write schema, schema.table, schema.table.column or database name, quoting identifiers as in SQL")]
pub struct BadResourceName {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for ResourceRef {
    type Err = BadResourceName;

    /// Parses the SQL spelling: unquoted identifiers fold to lower case as
    /// PostgreSQL folds them, `"Quoted"` ones keep their case and may hold
    /// dots and doubled quotes. `database name` (the keyword in any case,
    /// then one identifier) is a database.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| BadResourceName {
            input: s.to_owned(),
            reason,
        };
        let keyword = "database ";
        if s.len() > keyword.len()
            && s.is_char_boundary(keyword.len())
            && s[..keyword.len()].eq_ignore_ascii_case(keyword)
        {
            return match s[keyword.len()..].trim_start().parse::<ResourceRef>() {
                Ok(ResourceRef::Schema { schema }) => Ok(ResourceRef::Database { name: schema }),
                Ok(_) => Err(bad("a database name is one identifier")),
                Err(e) => Err(BadResourceName {
                    input: s.to_owned(),
                    reason: e.reason,
                }),
            };
        }
        let mut parts = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            let mut ident = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            ident.push('"');
                        }
                        Some('"') => break,
                        Some(c) => ident.push(c),
                        None => return Err(bad("unterminated quoted identifier")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '"' {
                        break;
                    }
                    if c.is_whitespace() {
                        return Err(bad("unquoted identifiers cannot hold spaces"));
                    }
                    ident.push(c.to_ascii_lowercase());
                    chars.next();
                }
            }
            if ident.is_empty() {
                return Err(bad("empty identifier"));
            }
            parts.push(ident);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err(bad("a quoted identifier must be followed by a dot")),
            }
        }
        let mut parts = parts.into_iter();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(schema), None, None, None) => Ok(ResourceRef::Schema { schema }),
            (Some(schema), Some(table), None, None) => Ok(ResourceRef::Table { schema, table }),
            (Some(schema), Some(table), Some(column), None) => Ok(ResourceRef::Column {
                schema,
                table,
                column,
            }),
            _ => Err(bad("more than three parts")),
        }
    }
}

fn push_ident(out: &mut String, ident: &str) {
    let plain = ident
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        out.push_str(ident);
        return;
    }
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// One thing a statement does: an action on the objects it touches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    pub action: Action,
    /// The objects touched. Empty for statements that touch none (BEGIN,
    /// SET, DO): the operation is then judged against the target itself.
    pub resources: Vec<ResourceRef>,
    /// The rows are limited by an effective WHERE (for MERGE: its ON
    /// condition). Only meaningful for UPDATE, DELETE and MERGE; false
    /// otherwise.
    pub has_effective_where: bool,
}

impl Operation {
    pub fn new(action: Action, resources: Vec<ResourceRef>) -> Self {
        Operation {
            action,
            resources,
            has_effective_where: false,
        }
    }

    pub fn with_effective_where(mut self, has_effective_where: bool) -> Self {
        self.has_effective_where = has_effective_where;
        self
    }
}

/// What the statement analysis says about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StatementFacts {
    /// Every operation the statement performs, outermost first. An empty
    /// list is judged as one resource-less [`Action::Utility`].
    pub operations: Vec<Operation>,
    /// Runs code Portcullis cannot see into.
    pub opaque: bool,
    pub dangerous: BTreeSet<Capability>,
    /// Schema-qualified names of the functions called (`pg_catalog.now`).
    pub functions: BTreeSet<String>,
    /// Statements in the message this one arrived in (1 for a single
    /// statement or an extended-protocol Parse).
    pub statement_count: u32,
}

impl StatementFacts {
    /// Whether the statement reaches a database other than the target's own
    /// upstream database: a database operation (CREATE, ALTER, DROP
    /// DATABASE) that names another database, or that names none (fails
    /// closed: the name is what makes it the target's own). Policies see it
    /// as `context.other_database`.
    pub fn names_other_database(&self, target: &TargetRef) -> bool {
        self.operations.iter().any(|op| {
            let mut databases = op
                .resources
                .iter()
                .filter_map(|r| match r {
                    ResourceRef::Database { name } => Some(name),
                    _ => None,
                })
                .peekable();
            if databases.peek().is_none() {
                return op.action.is_database();
            }
            databases.any(|name| !target.is_own_database(name))
        })
    }
}

/// Session and approval state around the statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestContext {
    pub time: TimeOfDay,
    /// The client's address; `None` on a Unix socket.
    pub source_address: Option<IpAddr>,
    /// The statement has been approved through the approval workflow.
    pub approved: bool,
    /// The target's DML row limit, when it has one.
    pub row_limit: Option<u64>,
}

impl RequestContext {
    /// Context for a statement arriving now, unapproved.
    pub fn now(source_address: Option<IpAddr>) -> Self {
        RequestContext {
            time: TimeOfDay::from_system_time(SystemTime::now()),
            source_address,
            approved: false,
            row_limit: None,
        }
    }
}

/// A dangerous capability, as the analysis reports it. Policies see the
/// name from [`Capability::as_str`] in `context.dangerous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// COPY to or from a server file, pg_read_file and friends, server-side
    /// lo_import / lo_export.
    ServerFiles,
    /// COPY ... PROGRAM.
    ServerProgram,
    /// dblink and other connections out of the server.
    Network,
    /// Foreign data wrappers: CREATE SERVER, foreign tables,
    /// IMPORT FOREIGN SCHEMA, CREATE USER MAPPING.
    ForeignData,
    /// SET ROLE, SET SESSION AUTHORIZATION, set_config of role or
    /// session_authorization.
    IdentityChange,
    /// ALTER ROLE ... SET, ALTER DATABASE ... SET: settings that outlive the
    /// session.
    PersistentSetting,
    /// ALTER SYSTEM, LOAD, PREPARE TRANSACTION.
    ServerAdmin,
    /// ALTER TABLE ... DISABLE TRIGGER, session_replication_role.
    TriggerBypass,
    /// The FunctionCall protocol message (outside the large-object
    /// allow-list).
    FunctionCallMessage,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Capability::ServerFiles,
        Capability::ServerProgram,
        Capability::Network,
        Capability::ForeignData,
        Capability::IdentityChange,
        Capability::PersistentSetting,
        Capability::ServerAdmin,
        Capability::TriggerBypass,
        Capability::FunctionCallMessage,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::ServerFiles => "server_files",
            Capability::ServerProgram => "server_program",
            Capability::Network => "network",
            Capability::ForeignData => "foreign_data",
            Capability::IdentityChange => "identity_change",
            Capability::PersistentSetting => "persistent_setting",
            Capability::ServerAdmin => "server_admin",
            Capability::TriggerBypass => "trigger_bypass",
            Capability::FunctionCallMessage => "function_call_message",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown dangerous capability {s:?}; expected one of {}",
                    Capability::ALL.map(Capability::as_str).join(", ")
                )
            })
    }
}

/// Wall-clock time of the statement in UTC, at minute precision (so it can
/// be part of a cache key without defeating the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub weekday: Weekday,
}

impl TimeOfDay {
    /// Times before 1970 are treated as the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_unix_seconds(secs)
    }

    pub fn from_unix_seconds(secs: u64) -> Self {
        let days = secs / 86_400;
        let in_day = secs % 86_400;
        TimeOfDay {
            hour: (in_day / 3600) as u8,
            minute: (in_day % 3600 / 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: Weekday::ALL[((days + 3) % 7) as usize],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The value policies compare `context.time.weekday` with.
    pub const fn as_str(self) -> &'static str {
        match self {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }
}

impl FromStr for Weekday {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Weekday::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s) || d.as_str()[..3].eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown weekday {s:?}; expected monday .. sunday"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cedar_ids_quote_only_what_needs_it() {
        assert_eq!(
            ResourceRef::table("public", "orders").cedar_id(),
            "public.orders"
        );
        assert_eq!(
            ResourceRef::column("Sales", "q1 totals", "amount").cedar_id(),
            r#""Sales"."q1 totals".amount"#
        );
        // A dot inside a name cannot be confused with the separator.
        assert_ne!(
            ResourceRef::table("a.b", "c").cedar_id(),
            ResourceRef::table("a", "b.c").cedar_id()
        );
        assert_eq!(
            ResourceRef::table("a", "say\"hi").cedar_id(),
            r#"a."say""hi""#
        );
        assert_eq!(ResourceRef::table("s", "1x").cedar_id(), r#"s."1x""#);
    }

    #[test]
    fn resource_names_parse_as_sql_spells_them() {
        for r in [
            ResourceRef::schema("public"),
            ResourceRef::table("public", "orders"),
            ResourceRef::column("Sales", "q1.totals", "say\"hi"),
        ] {
            assert_eq!(r.cedar_id().parse::<ResourceRef>(), Ok(r.clone()));
        }
        assert_eq!(
            "Public.Orders".parse::<ResourceRef>(),
            Ok(ResourceRef::table("public", "orders"))
        );
        for r in [
            ResourceRef::database("shop"),
            ResourceRef::database("Shop Prod"),
        ] {
            assert_eq!(r.to_string().parse::<ResourceRef>(), Ok(r.clone()));
        }
        assert_eq!(
            "DATABASE Shop".parse::<ResourceRef>(),
            Ok(ResourceRef::database("shop"))
        );
        // A schema called "database" is still a schema.
        assert_eq!(
            "database".parse::<ResourceRef>(),
            Ok(ResourceRef::schema("database"))
        );
        for bad in [
            "",
            "a..b",
            "a.b.c.d",
            "\"open",
            "\"a\"b",
            "a b",
            "database a.b",
            "database ",
        ] {
            assert!(bad.parse::<ResourceRef>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn time_of_day_in_utc() {
        // 2024-03-02T13:45:10Z was a Saturday.
        let t = TimeOfDay::from_unix_seconds(1_709_387_110);
        assert_eq!((t.hour, t.minute, t.weekday), (13, 45, Weekday::Saturday));
        assert_eq!(TimeOfDay::from_unix_seconds(0).weekday, Weekday::Thursday);
    }
}
