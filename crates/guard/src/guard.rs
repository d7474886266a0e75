//! One target's guard: analysis, session state and policy joined into a
//! verdict per message.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use portcullis_analysis::{
    ActionKind, Analysis, AnalysisError, CacheLimits, Execution, SharedAnalysisCache,
    StatementClass,
};
use portcullis_policy::{
    self as policy, Approval, Decided, Decision, Enforcement, PolicyEngine, Principal, Request,
    RequestContext, TargetRef,
};
use portcullis_wire::{sqlstate, Refusal};

use crate::catalog::{CatalogSnapshot, CatalogView};
use crate::describe::{describe, describe_into, Scope};
use crate::encoding::{EncodingError, NameKey};
use crate::lexer;
use crate::masking::{Inferred, MaskingRules};
use crate::memo;
use crate::opaque_scan;
use crate::session::SessionState;

/// Who sends the statements.
#[derive(Debug, Clone)]
pub struct Who {
    pub principal: Principal,
    /// The client's address; `None` on a Unix socket.
    pub source: Option<IpAddr>,
    /// Limits that depend on who it is (see [`crate::limits`]).
    pub limits: crate::SessionLimits,
    /// Judging a statement a human approved: `context.approved` is set,
    /// so approval rules no longer hold it (and nothing is remembered:
    /// the memo serves unapproved judgements only).
    pub approved: bool,
}

/// How a target is guarded.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    pub target: TargetRef,
    pub enforcement: Enforcement,
    /// Most rows one DML statement may touch, if limited.
    pub row_limit: Option<u64>,
    /// Strict masking and inference (see [`MaskingRules`]).
    pub masking: MaskingRules,
}

/// The decision on one statement of a message, for logs.
#[derive(Debug, Clone)]
pub struct StatementVerdict {
    pub class: StatementClass,
    pub decision: Decision,
    /// The policies that made the decision (see [`policy::Decided`]).
    pub policies: Arc<[String]>,
    /// What the policy saw: the operations, objects and columns, resolved
    /// under the search_path that decided (for the audit trail).
    pub facts: Arc<policy::StatementFacts>,
}

/// The verdict on one message (a Query, a Parse, a Bind).
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The analysis, when the text parsed.
    pub analysis: Option<Arc<Analysis>>,
    /// One entry per statement judged (shared: a remembered judgement is
    /// handed out for every text of its shape).
    pub statements: Arc<[StatementVerdict]>,
    /// Why the message would be refused, if it would. Only text meant for
    /// the client: the policy's id, message and hint, or the parser's
    /// message.
    pub refusal: Option<Refusal>,
    /// The policy whose decision is the refusal, as a field of its own for
    /// logs and `policy explain`; `None` when Portcullis itself refused (a
    /// parse error, a name it cannot follow).
    pub refused_by: Option<String>,
    /// Whether the refusal is enforced (false in observe mode: log it and
    /// let the message through).
    pub enforced: bool,
    /// The message changes the schema (objects created, dropped or
    /// altered): the catalog snapshot is out of date once it ran.
    pub changes_schema: bool,
    /// The target's row limit applies: some statement writes rows (INSERT,
    /// UPDATE, DELETE, MERGE, CREATE TABLE AS, SELECT INTO; not COPY) and
    /// the limit is enforced. The proxy must count the rows it touches.
    pub row_limit: Option<u64>,
    /// Some statement runs code the analysis cannot see (a DO block, a
    /// procedure, a volatile function): it may have changed settings such
    /// as search_path that the session cannot follow.
    pub opaque: bool,
    /// Some statement may run SQL the analysis cannot see (a DO block, a
    /// procedure, a function outside pg_catalog, dynamic SQL, a user
    /// operator), which could change a setting unseen. Built-in volatile
    /// functions (`nextval`, `random`) make a statement opaque but not this.
    pub hidden_code: bool,
    /// Some statement may create, replace or alter functions (or schemas
    /// holding them), or runs hidden code that may: until the catalog
    /// snapshot shows the change, the session judges function calls as if
    /// it had made them write (see [`CatalogView`]).
    pub may_change_functions: bool,
    /// The protected columns the message's statements choose, group or
    /// order rows by, masked for this principal: what a caller may infer
    /// about values it cannot see. Recorded whether or not that refuses
    /// the message (`[masking] inference`), for logs, metrics and the
    /// audit. Names only.
    pub inferred: Vec<Inferred>,
    /// Set when the refusal is an approval rule's and nothing else refuses
    /// the message: it may run once a member of `approvers` approves it.
    pub approval: Option<Approval>,
}

impl Judgement {
    /// A refusal no approval lifts: it replaces an approval the message
    /// was held for. `policy`: the policy that decided it, if one did.
    fn hard_refusal(&mut self, r: Refusal, policy: Option<&str>) {
        self.refusal = Some(r);
        self.refused_by = policy.map(str::to_owned);
        self.approval = None;
    }

    /// An approval rule holds a statement: the first one found stands for
    /// the message, as long as every other rule that holds it names the
    /// same group (an approval by one group must not lift another's rule).
    fn held(&mut self, a: &Approval, r: Option<Refusal>) {
        match &self.approval {
            None => {
                self.approval = Some(a.clone());
                self.refusal = r;
                self.refused_by = Some(a.policy.clone());
            }
            Some(first) if first.approvers == a.approvers => {}
            Some(_) => self.hard_refusal(
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "statement refused by Portcullis: its statements need approval by different groups",
                )
                .hint("Send each statement as a query of its own, so that each can be approved."),
                None,
            ),
        }
    }

    /// Whether the message must not reach the server.
    pub fn blocks(&self) -> bool {
        self.enforced && self.refusal.is_some()
    }
}

/// A target's guard, shared by all its sessions.
pub struct Guard {
    engine: Arc<PolicyEngine>,
    analyses: Arc<SharedAnalysisCache>,
    settings: GuardSettings,
    catalog: RwLock<CatalogSlot>,
    /// Schema changes sessions have numbered once committed (see
    /// [`Guard::number_schema_change`]).
    schema_changes: AtomicU64,
}

#[derive(Default)]
struct CatalogSlot {
    generation: u64,
    snapshot: Option<Arc<CatalogSnapshot>>,
    /// Every schema change numbered up to this was committed before the
    /// snapshot's load began, so the snapshot shows it.
    covers: u64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An analysis cache to share between guards (statements repeat across
/// targets too).
pub fn shared_analysis_cache() -> Arc<SharedAnalysisCache> {
    Arc::new(SharedAnalysisCache::new(CacheLimits::default()))
}

impl Guard {
    pub fn new(
        engine: Arc<PolicyEngine>,
        analyses: Arc<SharedAnalysisCache>,
        settings: GuardSettings,
    ) -> Guard {
        Guard {
            engine,
            analyses,
            settings,
            catalog: RwLock::new(CatalogSlot::default()),
            schema_changes: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// Installs a freshly loaded catalog snapshot, whose load began when
    /// [`Guard::schema_changes`] said `covers`.
    pub fn set_catalog(&self, snapshot: CatalogSnapshot, covers: u64) {
        let mut slot = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        slot.generation += 1;
        slot.snapshot = Some(Arc::new(snapshot));
        slot.covers = slot.covers.max(covers);
    }

    /// The current snapshot and its generation.
    pub fn catalog(&self) -> (u64, Option<Arc<CatalogSnapshot>>) {
        let slot = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        (slot.generation, slot.snapshot.clone())
    }

    /// The current snapshot's generation (cheaper than [`Guard::catalog`]
    /// for a caller that only checks whether the snapshot changed).
    pub fn catalog_generation(&self) -> u64 {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    fn catalog_slot(&self) -> (u64, Option<Arc<CatalogSnapshot>>, u64) {
        let slot = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        (slot.generation, slot.snapshot.clone(), slot.covers)
    }

    /// How many schema changes sessions have numbered: read it just before
    /// a catalog load begins, and pass it to [`Guard::set_catalog`].
    pub fn schema_changes(&self) -> u64 {
        self.schema_changes.load(Ordering::SeqCst)
    }

    /// Numbers a session's schema change once it is committed (its
    /// session is idle again): a snapshot whose load begins after this
    /// shows it.
    pub fn number_schema_change(&self) -> u64 {
        self.schema_changes.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Analyses `sql` (through the cache).
    pub fn analyze(&self, sql: &str) -> Result<Arc<Analysis>, AnalysisError> {
        self.analyses.analyze(sql)
    }

    /// The row limit a data-changing statement of `who` runs under: the
    /// target's, or, when only the identity's rows-changed budget counts
    /// its rows, `u64::MAX` (the proxy lowers it to what the budget has
    /// left when the statement is sent). None in observe mode.
    fn enforced_row_limit(&self, who: &Who) -> Option<u64> {
        self.counts_rows(who)
            .then(|| self.settings.row_limit.unwrap_or(u64::MAX))
    }

    /// Whether the rows `who`'s statements change are counted here: by
    /// the target's row limit or the identity's rows-changed budget, and
    /// not in observe mode.
    pub fn counts_rows(&self, who: &Who) -> bool {
        self.settings.enforcement == Enforcement::Enforce
            && (self.settings.row_limit.is_some() || who.limits.counts_rows)
    }

    fn request(&self, who: &Who, statement: policy::StatementFacts) -> Request {
        let mut context = RequestContext::now(who.source);
        context.row_limit = self.settings.row_limit;
        context.approved = who.approved;
        Request {
            principal: who.principal.clone(),
            target: self.settings.target.clone(),
            statement,
            context,
        }
    }

    fn judgement(&self, analysis: Option<Arc<Analysis>>, refusal: Option<Refusal>) -> Judgement {
        Judgement {
            analysis,
            statements: Arc::new([]),
            refusal,
            refused_by: None,
            enforced: self.settings.enforcement == Enforcement::Enforce,
            changes_schema: false,
            row_limit: None,
            opaque: false,
            hidden_code: false,
            may_change_functions: false,
            inferred: Vec::new(),
            approval: None,
        }
    }

    /// Judges a statement string: a simple Query (any number of
    /// statements) or an extended-protocol Parse. Any statement refused
    /// refuses the whole string. Each statement is judged under every
    /// search_path it may run under, seeing what the statements before it
    /// in the same string set up.
    pub fn judge_text(&self, sql: &str, who: &Who, session: &SessionState) -> Judgement {
        let (analysis, origin) = match self.analyses.analyze_found(sql) {
            Ok(found) => (found.analysis, found.origin),
            Err(e) => return self.judgement(None, Some(analysis_refusal(&e))),
        };
        if session.lexer_unsettled() && lexer::sensitive(sql.as_bytes()) {
            return self.judgement(Some(analysis), Some(lexer::unsettled()));
        }
        let (generation, catalog, covers) = self.catalog_slot();
        let mut functions_unseen = session.functions_unseen(covers);
        let unseen_at_start = functions_unseen;
        // Texts of one shape share their judgement: a memorable one reads
        // neither the text nor statement spans.
        let memorable = !session.lexer_unsettled()
            && !who.approved
            && !self.engine.reads_time()
            && memo::memorable(analysis.statements.iter());
        if memorable {
            let paths = session.possible_paths();
            let probe = memo::Probe::Text(&origin);
            if let Some(mut hit) = session
                .memo()
                .get(probe, paths, generation, functions_unseen)
            {
                hit.analysis = Some(analysis);
                return hit;
            }
        }
        let count = u32::try_from(analysis.statements.len()).unwrap_or(u32::MAX);
        let mut j = self.judgement(Some(analysis.clone()), None);
        let mut paths = session.message_paths();
        // The session as earlier statements of this string leave it, once
        // one of them prepares or deallocates something.
        let mut scratch: Option<SessionState> = None;
        let mut verdicts = Vec::with_capacity(analysis.statements.len());
        // Where rows are counted at all, and where the identity's budget
        // counts every query.
        let rows_counted = self.counts_rows(who);
        let budget = rows_counted && who.limits.counts_rows;
        for (index, stmt) in analysis.statements.iter().enumerate() {
            let state = scratch.as_ref().unwrap_or(session);
            // What a DO block or function body does inside (the same under
            // every search_path).
            let hidden = opaque_scan::scan(stmt, sql);
            let view = catalog.as_deref().map(|snapshot| CatalogView {
                snapshot,
                functions_unseen,
            });
            let mut worst: Option<(Decided, policy::StatementFacts)> = None;
            let mut stmt_hidden_code = false;
            // Calls code not known to be read-only (under some path): it
            // may change rows Portcullis cannot see, so they are counted.
            let mut stmt_opaque = false;
            for path in paths.paths() {
                let scope = Scope {
                    search_path: path,
                    session_user: Some(&session.session_user),
                    catalog: view.as_ref(),
                };
                let mut facts = describe(stmt, &scope, count);
                facts.dangerous.extend(hidden.capabilities.iter().copied());
                j.opaque |= facts.opaque;
                stmt_hidden_code |= facts.opaque && runs_hidden_code(stmt, path, view.as_ref());
                // EXECUTE runs a prepared body: judge it as part of this
                // statement.
                for action in &stmt.actions {
                    if let (ActionKind::Execute { name }, Execution::Now) =
                        (&action.kind, action.execution)
                    {
                        let added = state
                            .sql_name(name)
                            .map_err(|e| encoding_refusal(&e))
                            .and_then(|key| self.add_prepared(&mut facts, &key, state, &scope));
                        if let Err(r) = added {
                            j.refusal.get_or_insert(r);
                        }
                    }
                }
                // With an EXECUTE's prepared body added.
                stmt_opaque |= facts.opaque;
                let request = self.request(who, facts);
                let decided = self.engine.decided(&request);
                worse(&mut worst, decided, request.statement);
            }
            let (decided, facts) = worst.unwrap_or_else(allowed_by_default);
            let decision = decided.decision;
            j.changes_schema |= changes_schema(stmt);
            j.hidden_code |= stmt_hidden_code;
            // Later statements of the string run after this one's changes.
            let changes_functions = may_change_functions(stmt) || stmt_hidden_code;
            j.may_change_functions |= changes_functions;
            functions_unseen |= changes_functions;
            // A PREPARE runs nothing now: its body is counted when it is
            // executed (judge_prepared). Under a rows-changed budget every
            // statement that runs a query is counted: code that looks
            // read-only (a stable function, a view, a cast) may call code
            // that is not.
            let code_now = stmt_opaque && !prepares(stmt);
            if writes_rows(stmt)
                || executes_writes(stmt, state)
                || code_now
                || refreshes(stmt)
                || (budget && runs_a_query(stmt))
            {
                j.row_limit = self.enforced_row_limit(who);
            }
            // Always judged: the columns it infers from are recorded even
            // when something else refuses the statement.
            let masking = self.masking_refusal(stmt, who, state, &mut j.inferred);
            // The first refusal of the message wins; within a statement,
            // what Portcullis cannot follow, then the policy's decision,
            // then masking's (a statement the policy denies or holds for
            // approval is reported as such).
            // A statement held for approval does not stop the search for
            // a refusal: approving must not be asked for a message that
            // would be refused anyway.
            if j.refusal.is_none() || j.approval.is_some() {
                if let Some(r) = lexer::check(stmt)
                    .or_else(|| reserved_name(stmt))
                    .or_else(|| hidden.settings.clone())
                    .or_else(|| {
                        crate::limits::check(
                            stmt.settings.iter().chain(&hidden.changes),
                            stmt.stored_settings.iter().chain(&hidden.stored),
                            &who.limits,
                        )
                    })
                    .or_else(|| portal_refusal(stmt, state))
                    .or_else(|| {
                        // Under a budget, any WITH HOLD cursor: its query
                        // (a view, a stable function) runs at COMMIT.
                        (rows_counted
                            && declares_cursor(stmt)
                            && (stmt_opaque || (budget && declares_hold_cursor(stmt))))
                        .then(uncountable_cursor)
                    })
                    .or_else(|| {
                        (budget && (truncates(stmt) || hidden.truncates)).then(uncountable_truncate)
                    })
                {
                    j.hard_refusal(r, None);
                } else if let Some(r) = decision_refusal(&decision)
                    .filter(|_| !matches!(decision, Decision::RequiresApproval(_)))
                {
                    j.hard_refusal(with_note(r, &hidden), decision.policy());
                } else if hidden.blind.is_some() || runs_sql_text(stmt) {
                    // Whatever the policies allow: code Portcullis cannot
                    // read could change the settings it protects
                    // (application_name, portcullis.*, how text is read,
                    // a session's statement_timeout limit).
                    j.hard_refusal(
                        with_note(
                            Refusal::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "statement refused by Portcullis: it holds code Portcullis cannot read",
                            )
                            .hint("Send the statements themselves, or EXECUTE constant strings, so that Portcullis can judge them."),
                            &hidden,
                        ),
                        None,
                    );
                } else if let Some(r) = self.copy_refusal(stmt, who, state).or(masking) {
                    j.hard_refusal(r, None);
                } else if let Decision::RequiresApproval(a) = &decision {
                    // Held only when approving it is all it takes.
                    j.held(
                        a,
                        decision_refusal(&decision).map(|r| with_note(r, &hidden)),
                    );
                }
            }
            verdicts.push(StatementVerdict {
                class: stmt.class,
                decision,
                policies: decided.policies,
                facts: Arc::new(facts),
            });
            if index + 1 < analysis.statements.len() {
                scratch
                    .as_ref()
                    .unwrap_or(session)
                    .follow_in_message(&mut paths, stmt);
                if prepares(stmt) {
                    // Only to see what later statements may run: a name the
                    // session cannot follow is refused when it is applied.
                    let _ = scratch
                        .get_or_insert_with(|| session.clone())
                        .follow_prepared(&analysis, index, stmt);
                }
            }
        }
        j.statements = verdicts.into();
        if memorable {
            let key = memo::Key {
                subject: memo::Subject::Text(origin),
                paths: session.possible_paths().to_vec(),
                generation,
                own_changes_unseen: unseen_at_start,
            };
            session.memo().put(key, j.clone());
        }
        j
    }

    /// Judges running the prepared statement `name` (a Bind): by the texts
    /// the session prepared under that name, under every search_path the
    /// session may have now.
    pub fn judge_prepared(&self, name: &NameKey, who: &Who, session: &SessionState) -> Judgement {
        let (generation, catalog, covers) = self.catalog_slot();
        let functions_unseen = session.functions_unseen(covers);
        let memorable = !who.approved
            && !self.engine.reads_time()
            && memo::memorable(session.prepared(name).filter_map(|t| t.statement()));
        let paths = session.possible_paths();
        let probe = memo::Probe::Prepared(name, session);
        if memorable {
            if let Some(hit) = session
                .memo()
                .get(probe, paths, generation, functions_unseen)
            {
                return hit;
            }
        }
        let j =
            self.judge_prepared_afresh(name, who, session, catalog.as_deref(), functions_unseen);
        if memorable {
            let key = memo::Key {
                subject: memo::Subject::Prepared(
                    name.clone(),
                    session
                        .prepared(name)
                        .map(|t| (t.analysis.clone(), t.index))
                        .collect(),
                ),
                paths: paths.to_vec(),
                generation,
                own_changes_unseen: functions_unseen,
            };
            session.memo().put(key, j.clone());
        }
        j
    }

    fn judge_prepared_afresh(
        &self,
        name: &NameKey,
        who: &Who,
        session: &SessionState,
        catalog: Option<&CatalogSnapshot>,
        functions_unseen: bool,
    ) -> Judgement {
        let view = catalog.map(|snapshot| CatalogView {
            snapshot,
            functions_unseen,
        });
        let mut j = self.judgement(None, None);
        let mut worst: Option<(Decided, policy::StatementFacts)> = None;
        for path in session.search_paths() {
            let scope = Scope {
                search_path: path,
                session_user: Some(&session.session_user),
                catalog: view.as_ref(),
            };
            let mut facts = policy::StatementFacts {
                statement_count: 1,
                ..Default::default()
            };
            if let Err(r) = self.add_prepared(&mut facts, name, session, &scope) {
                j.refusal = Some(r);
                return j;
            }
            j.opaque |= facts.opaque;
            j.hidden_code |= facts.opaque
                && session
                    .prepared(name)
                    .filter_map(|t| t.statement())
                    .any(|stmt| runs_hidden_code(stmt, path, view.as_ref()));
            let request = self.request(who, facts);
            let decided = self.engine.decided(&request);
            worse(&mut worst, decided, request.statement);
        }
        let mut copy_in = false;
        let mut may_commit = false;
        for stmt in session.prepared(name).filter_map(|t| t.statement()) {
            j.changes_schema |= changes_schema(stmt);
            j.may_change_functions |= may_change_functions(stmt) || j.hidden_code;
            // j.opaque: the prepared text calls code that may change rows.
            if prepared_writes_rows(stmt)
                || executes_writes(stmt, session)
                || j.opaque
                || (who.limits.counts_rows && runs_a_query(stmt))
            {
                j.row_limit = self.enforced_row_limit(who);
            }
            may_commit |= matches!(stmt.class, StatementClass::Call | StatementClass::Do);
            copy_in |= copies_in(stmt);
        }
        if may_commit && j.row_limit.is_some() {
            // Through the extended protocol a procedure or DO block runs
            // outside a transaction block and may COMMIT before the check
            // after it: its changes would stay, uncounted.
            j.refusal = Some(uncountable_commit());
            return j;
        }
        if copy_in && j.row_limit.is_some() {
            // The counting statements would have to follow the Execute
            // while the server is in copy mode, which ends the session.
            j.refusal = Some(Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                match self.settings.row_limit {
                    Some(_) => format!(
                        "COPY FROM on a target with a row limit must be sent as a simple query, not through the extended protocol (target \"{}\")",
                        self.settings.target.name
                    ),
                    None => "the rows you change are counted against a limit: COPY FROM must be sent as a simple query, not through the extended protocol".to_owned(),
                },
            )
            .hint("Send COPY ... FROM STDIN as a plain query (psql's \\copy, JDBC's CopyManager and psycopg do); Portcullis counts the rows it adds."));
            return j;
        }
        let (decided, facts) = worst.unwrap_or_else(allowed_by_default);
        let decision = decided.decision;
        // Judged when parsed too; again, since the catalog or the
        // session's search_path may have changed since.
        let mut masking = None;
        for stmt in session.prepared(name).filter_map(|t| t.statement()) {
            let r = self.masking_refusal(stmt, who, session, &mut j.inferred);
            masking = masking.or(r);
        }
        // The policy's decision first, as in `judge_text`; a statement is
        // held for approval only when approving it is all it takes.
        match (&decision, masking) {
            (Decision::RequiresApproval(_), Some(r)) => j.hard_refusal(r, None),
            (Decision::RequiresApproval(a), None) => j.held(a, decision_refusal(&decision)),
            (_, masking) => match decision_refusal(&decision) {
                Some(r) => j.hard_refusal(r, decision.policy()),
                None => j.refusal = masking,
            },
        }
        j.statements = Arc::new([StatementVerdict {
            class: StatementClass::Execute,
            decision,
            policies: decided.policies,
            facts: Arc::new(facts),
        }]);
        j
    }

    fn add_prepared(
        &self,
        facts: &mut policy::StatementFacts,
        name: &NameKey,
        session: &SessionState,
        scope: &Scope<'_>,
    ) -> Result<(), Refusal> {
        let mut any = false;
        for stmt in session.prepared(name).filter_map(|t| t.statement()) {
            describe_into(facts, stmt, scope);
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "prepared statement \"{}\" was not prepared through Portcullis",
                    name.shown()
                ),
            )
            .hint(
                "Prepare statements with PREPARE or the extended protocol in this session; \
                 Portcullis judges a prepared statement by the text it saw prepared.",
            ))
        }
    }
}

/// The refusal for text or a name the proxy cannot read exactly as the
/// server will.
pub fn encoding_refusal(e: &EncodingError) -> Refusal {
    let (code, message) = match e {
        EncodingError::Invalid { encoding } => (
            sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
            format!("invalid byte sequence for encoding \"{encoding}\""),
        ),
        EncodingError::Unsupported { encoding } => (
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("Portcullis cannot judge non-ASCII text in encoding \"{encoding}\" exactly"),
        ),
        EncodingError::NoEquivalent { encoding } => (
            sqlstate::UNTRANSLATABLE_CHARACTER,
            format!("a character in the statement has no equivalent in encoding \"{encoding}\""),
        ),
    };
    Refusal::error(code, message)
        .hint("Use client_encoding UTF8 (or LATIN1), or keep statements and names in ASCII.")
}

/// Whether `stmt` may run SQL the analysis cannot see: code bodies,
/// procedures, dynamic SQL, operators that may not be pg_catalog's, or a
/// function that may resolve outside pg_catalog. (`set_config` by name is
/// followed by the analysis itself.)
/// No search_path was tried (none is possible): nothing decided, nothing
/// seen.
fn allowed_by_default() -> (Decided, policy::StatementFacts) {
    (
        Decided {
            decision: Decision::Allow,
            policies: Arc::from([]),
        },
        policy::StatementFacts::default(),
    )
}

fn runs_hidden_code(
    stmt: &portcullis_analysis::StatementFacts,
    path: &[String],
    catalog: Option<&CatalogView<'_>>,
) -> bool {
    use portcullis_analysis::functions::{assess, Basis};
    use portcullis_analysis::{FunctionCatalog, FunctionSafety};
    if !stmt.opaque.is_empty() || !stmt.shadowable_operators(path).is_empty() {
        return true;
    }
    let functions = catalog.map(|c| c as &dyn FunctionCatalog);
    stmt.opaque_calls(path, functions)
        .iter()
        .any(|f| match catalog {
            Some(c) => {
                let found = c.candidates(f.name.schema.as_deref(), &f.name.name, f.args, path);
                found.is_empty() || found.iter().any(|c| c.schema != "pg_catalog")
            }
            None => !matches!(
                assess(f, path, None),
                FunctionSafety::NotReadOnly(Basis::BuiltinTable)
            ),
        })
}

/// Whether `stmt` runs (EXECUTE) a prepared statement that writes rows.
fn executes_writes(stmt: &portcullis_analysis::StatementFacts, session: &SessionState) -> bool {
    stmt.actions.iter().any(|a| match (&a.kind, a.execution) {
        (ActionKind::Execute { name }, Execution::Now) => session.sql_name(name).is_ok_and(|key| {
            session
                .prepared(&key)
                .filter_map(|t| t.statement())
                .any(prepared_writes_rows)
        }),
        _ => false,
    })
}

/// Under a rows-changed budget, a statement that runs a query (or a
/// procedure, a DO block, a FETCH from a cursor another statement opened)
/// is counted, whatever it looks like.
fn runs_a_query(stmt: &portcullis_analysis::StatementFacts) -> bool {
    matches!(
        stmt.class,
        StatementClass::Select
            | StatementClass::Explain
            | StatementClass::Execute
            | StatementClass::CreateTableAs
            | StatementClass::Copy
            | StatementClass::Call
            | StatementClass::Do
    ) || stmt.actions.iter().any(|a| {
        a.execution == Execution::Now
            && matches!(&a.kind, ActionKind::Cursor { statement, .. }
                if *statement == "FetchStmt" || *statement == "MoveStmt")
    })
}

/// Whether the statement declares a WITH HOLD cursor, whose query runs to
/// the end at COMMIT, after any count.
fn declares_hold_cursor(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        matches!(&a.kind, ActionKind::Cursor { statement, .. } if *statement == "DeclareCursorStmt WITH HOLD")
    })
}

/// Whether the statement refreshes a materialized view, which runs the
/// view's query (and any code in it) now.
fn refreshes(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        a.execution == Execution::Now
            && matches!(&a.kind, ActionKind::Maintenance { statement } if *statement == "RefreshMatViewStmt")
    })
}

/// Whether the statement only reads, as far as its text shows: a query
/// (or a FETCH/MOVE) that changes no rows itself. Code it calls may still
/// write: under a rows-changed budget such a statement is counted, but
/// reserves only a slice of what is left (`row_budgets.rs`), so that a
/// long read does not hold every other statement of the identity back.
pub fn reads_only(stmt: &portcullis_analysis::StatementFacts) -> bool {
    let query = matches!(stmt.class, StatementClass::Select | StatementClass::Explain)
        || stmt.actions.iter().any(|a| {
            matches!(&a.kind, ActionKind::Cursor { statement, .. }
                if *statement == "FetchStmt" || *statement == "MoveStmt")
        });
    query && !writes(stmt, |e| e != Execution::Never)
}

/// Whether the statement truncates a table now.
fn truncates(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions
        .iter()
        .any(|a| a.execution == Execution::Now && matches!(a.kind, ActionKind::Truncate { .. }))
}

/// TRUNCATE removes rows the server's count does not see.
fn uncountable_truncate() -> Refusal {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "statement refused by Portcullis: TRUNCATE removes rows without counting them, and the rows you change are counted against a limit",
    )
    .hint("Delete the rows with DELETE, where Portcullis counts them.")
}

/// CALL and DO through the extended protocol may commit mid-statement.
fn uncountable_commit() -> Refusal {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "statement refused by Portcullis: where the rows you change are counted, CALL and DO must be sent as a simple query, not through the extended protocol",
    )
    .hint("Send it as a simple query (psql sends it that way); through the extended protocol a procedure can commit before Portcullis counts its rows.")
}

/// Whether the statement is a DECLARE CURSOR.
fn declares_cursor(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        matches!(&a.kind, ActionKind::Cursor { statement, .. } if statement.starts_with("DeclareCursorStmt"))
    })
}

/// A cursor over code that may change rows runs that code at each FETCH,
/// or all of it at COMMIT (WITH HOLD), where the rows it changes cannot be
/// counted.
fn uncountable_cursor() -> Refusal {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "statement refused by Portcullis: this cursor could change rows where they cannot be counted (its query calls functions that may change rows, or, where your changes are counted against a limit, it is WITH HOLD and runs at COMMIT)",
    )
    .hint("Run the query itself, where Portcullis counts the rows it changes, or declare a cursor without WITH HOLD over a plain query.")
}

/// SQL FETCH and MOVE run protocol portals too: one bound to a statement
/// under the row limit must run through Execute, where the rows are
/// counted.
fn portal_refusal(
    stmt: &portcullis_analysis::StatementFacts,
    session: &SessionState,
) -> Option<Refusal> {
    stmt.actions.iter().find_map(|a| match (&a.kind, a.execution) {
        (ActionKind::Cursor { statement, name }, Execution::Now) if *statement == "FetchStmt" => {
            let key = session.sql_name(name).ok()?;
            session.portal_row_limit(&key)?;
            Some(Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "portal \"{}\" runs a statement under the row limit and cannot be run with FETCH or MOVE",
                    key.shown()
                ),
            )
            .hint("Run it with the protocol's Execute message, where Portcullis counts the rows it changes."))
        }
        _ => None,
    })
}

fn prepares(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        a.execution == Execution::Now
            && matches!(
                a.kind,
                ActionKind::Prepare { .. }
                    | ActionKind::Deallocate { .. }
                    | ActionKind::Discard { .. }
            )
    })
}

/// Whether `stmt` may create, replace, alter, move or drop functions (or
/// what resolves them: schemas, extensions, languages, casts, operators,
/// types). Changes to tables, indexes, views, sequences, triggers, rules
/// and policies do not; anything not known to be one of those may.
fn may_change_functions(stmt: &portcullis_analysis::StatementFacts) -> bool {
    use portcullis_analysis::ObjectKind as K;
    const RELATIONS_ONLY: &[&str] = &[
        "CreateStmt",
        "IndexStmt",
        "ViewStmt",
        "RuleStmt",
        "CreateTrigStmt",
        "CreatePolicyStmt",
        "AlterPolicyStmt",
        "CreateSeqStmt",
        "AlterSeqStmt",
        "CreateStatsStmt",
        "AlterStatsStmt",
        "RefreshMatViewStmt",
        "CommentStmt",
        "ReplicaIdentityStmt",
    ];
    let relation_like = |k: &K| {
        matches!(
            k,
            K::Table
                | K::View
                | K::MaterializedView
                | K::Index
                | K::Sequence
                | K::ForeignTable
                | K::Column
                | K::TableConstraint
                | K::Trigger
                | K::Rule
                | K::Policy
                | K::StatisticsObject
        )
    };
    stmt.actions.iter().any(|a| {
        a.execution == Execution::Now
            && match &a.kind {
                ActionKind::SchemaChange { statement } => !RELATIONS_ONLY.contains(statement),
                ActionKind::Drop { object, .. }
                | ActionKind::Rename { object, .. }
                | ActionKind::SetSchema { object, .. } => !relation_like(object),
                ActionKind::DropOwned { .. } => true,
                _ => false,
            }
    })
}

fn changes_schema(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        a.execution == Execution::Now
            && matches!(
                a.kind.class(),
                StatementClass::Drop
                    | StatementClass::Rename
                    | StatementClass::AlterTable
                    | StatementClass::SchemaChange
                    | StatementClass::CreateTableAs
            )
    })
}

/// Whether the statement writes table rows when it runs. COPY FROM is
/// left out: its rows arrive after the statement starts, in copy mode.
fn writes_rows(stmt: &portcullis_analysis::StatementFacts) -> bool {
    writes(stmt, |e| e == Execution::Now)
}

/// Whether a prepared text writes rows when it is executed (a PREPARE's
/// body is deferred until then).
fn prepared_writes_rows(stmt: &portcullis_analysis::StatementFacts) -> bool {
    writes(stmt, |e| e != Execution::Never)
}

fn writes(stmt: &portcullis_analysis::StatementFacts, runs: impl Fn(Execution) -> bool) -> bool {
    stmt.actions.iter().any(|a| {
        runs(a.execution)
            && a.kind.modifies_data()
            && !matches!(a.kind, ActionKind::Truncate { .. })
    })
}

/// Whether the statement is a COPY FROM (its rows arrive in copy mode).
fn copies_in(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.actions.iter().any(|a| {
        matches!(
            a.kind,
            ActionKind::Copy {
                direction: portcullis_analysis::CopyDirection::From,
                ..
            }
        )
    })
}

/// Keeps in `worst` the decision a statement gets from all of `decided`
/// so far (its search_paths): the most severe, and a denial when two
/// hold it for approval by different groups (`Decision::together`).
fn worse(
    worst: &mut Option<(Decided, policy::StatementFacts)>,
    decided: Decided,
    facts: policy::StatementFacts,
) {
    match worst {
        None => *worst = Some((decided, facts)),
        Some((w, f)) if w.decision.yields_to(&decided.decision) => {
            let earlier = std::mem::replace(&mut w.decision, Decision::Allow);
            *w = Decided {
                decision: earlier.together(decided.decision),
                policies: decided.policies,
            };
            *f = facts;
        }
        Some(_) => {}
    }
}

fn decision_refusal(decision: &Decision) -> Option<Refusal> {
    let hint = decision
        .client_hint()
        .unwrap_or("Ask an administrator of Portcullis' policies if you need this statement.");
    let message = decision.client_message()?;
    Some(Refusal::error(sqlstate::INSUFFICIENT_PRIVILEGE, message).hint(hint))
}

/// Adds what was found inside the statement's code to the hint, so that a
/// DO block refused for a capability it hides says which.
/// Whether the statement calls a function that runs SQL given as a value
/// (query_to_xml, ts_stat, ...): code no scan reads.
fn runs_sql_text(stmt: &portcullis_analysis::StatementFacts) -> bool {
    stmt.opaque.iter().any(|o| {
        o.kind == portcullis_analysis::OpaqueKind::DynamicSql
            && o.execution != portcullis_analysis::Execution::Never
    })
}

fn with_note(mut refusal: Refusal, hidden: &opaque_scan::HiddenCode) -> Refusal {
    if let Some(note) = hidden.client_note() {
        refusal.hint = Some(match refusal.hint.take() {
            Some(hint) if hint.ends_with('.') => format!("{hint} {note}"),
            Some(hint) => format!("{hint}. {note}"),
            None => note,
        });
    }
    refusal
}

fn analysis_refusal(e: &AnalysisError) -> Refusal {
    let (code, message, hint) = match e {
        AnalysisError::Syntax { message } => (
            sqlstate::SYNTAX_ERROR,
            message.clone(),
            "Portcullis parses every statement with PostgreSQL's grammar and refuses what does not parse.",
        ),
        AnalysisError::NulByte => (
            sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
            "statement contains a NUL byte".to_owned(),
            "Remove the NUL byte; PostgreSQL cannot receive one either.",
        ),
        AnalysisError::TooDeep => (
            sqlstate::STATEMENT_TOO_COMPLEX,
            "statement is nested too deeply for Portcullis to analyse".to_owned(),
            "Simplify the statement, for example by splitting long chains of operators or sub-queries.",
        ),
        AnalysisError::Internal(_) => (
            sqlstate::INTERNAL_ERROR,
            "Portcullis could not analyse the statement".to_owned(),
            "This is a Portcullis bug; the statement was refused to be safe. Please report it.",
        ),
    };
    Refusal::error(code, message).hint(hint)
}
/// A prepared statement or cursor named like the proxy's own
/// (`portcullis.*`, the names the row-limit and returned-rows bookkeeping
/// sends its statements under): a client that could prepare, execute,
/// deallocate or fetch from one could swap what the proxy runs, or run
/// what the proxy left behind, behind the session model's back.
fn reserved_name(stmt: &portcullis_analysis::StatementFacts) -> Option<Refusal> {
    let reserved = |name: &String| name.to_ascii_lowercase().starts_with("portcullis.");
    let uses = stmt.actions.iter().any(|a| match &a.kind {
        ActionKind::Prepare { name } | ActionKind::Execute { name } => reserved(name),
        ActionKind::Deallocate { name: Some(name) } => reserved(name),
        ActionKind::Cursor { name, .. } => reserved(name),
        _ => false,
    });
    uses.then(|| {
        Refusal::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "prepared statement and cursor names starting with \"portcullis.\" are reserved",
        )
        .hint("Use another name.")
    })
}
