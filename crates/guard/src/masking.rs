//! What each output column of a result set is, for one session: the
//! guard's half of masking. The catalog says what a plain column holds
//! (by the table OID and attribute number RowDescription gives, so no
//! alias hides it); the statement says what a computed column may be made
//! of. How a protected value is hidden is the mask crate's business.

use portcullis_analysis::{
    ActionKind, AssignedColumns, Assignment, CopyDirection, CopyEndpoint, Execution, Lineage,
    Output, OutputItem, QualifiedName, Resolver, Source, StatementClass, StatementFacts,
};
use portcullis_mask::{Class, Strategy};
use portcullis_policy::{RequestContext, ResourceRef};
use portcullis_wire::{sqlstate, Refusal};

use portcullis_analysis::RelationCatalog;

use crate::catalog::{CatalogColumn, CatalogSnapshot, CatalogView};
use crate::copy_out::copy_format;
use crate::guard::{Guard, Who};
use crate::session::SessionState;

/// Where an output column comes from, as RowDescription says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputColumn {
    /// The table (or view) of a plain column reference; 0 when computed.
    pub table_oid: u32,
    pub attnum: i16,
}

/// What one output column is, for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// The catalog vouches that nothing sensitive is in it.
    Clear,
    /// A classified column the session may not see, and how the
    /// configuration wants it masked (its class's default when `None`).
    Protected(Class, Option<Strategy>),
    /// Computed, possibly from a protected column: hidden whole.
    Derived,
    /// Nothing vouches for it (a table the snapshot does not know, a value
    /// computed from columns nobody classified): its content is scanned.
    Unvouched,
}

/// How masking treats values it can only hide whole, and rows chosen by
/// protected columns (`[masking] strict` and `inference`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskingRules {
    /// Refuse, before it runs, a statement that returns a value computed
    /// from a protected column, or one whose columns cannot be traced
    /// while it may read one (instead of masking such values whole).
    pub strict: bool,
    pub inference: InferenceRule,
}

/// What to do with a statement that chooses, groups or orders rows by a
/// protected column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InferenceRule {
    /// Let it run, and record the columns on the judgement
    /// ([`crate::Judgement::inferred`]).
    #[default]
    Flag,
    /// Refuse it before it runs.
    Refuse,
}

/// A protected column whose values a statement's caller may learn
/// something of without seeing them, because the statement chooses,
/// groups or orders rows by it (`WHERE ssn LIKE '1%'`). For the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Inferred {
    /// A classified column masked for the caller (through a view: the
    /// columns it shows).
    Column {
        relation: QualifiedName,
        column: String,
        class: Class,
    },
    /// Rows are chosen by something whose columns cannot be told (an
    /// unknown function, a view that could not be traced), and the
    /// statement may read a column masked for the caller.
    Untraced,
}

impl std::fmt::Display for Inferred {
    /// Names only, for logs: never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inferred::Column {
                relation,
                column,
                class,
            } => {
                if let Some(schema) = &relation.schema {
                    write!(f, "{schema}.")?;
                }
                write!(f, "{}.{} ({})", relation.name, column, class.name())
            }
            Inferred::Untraced => f.write_str("(untraced)"),
        }
    }
}

impl Guard {
    /// The exposure of each column of a result set that `statements` (the
    /// texts it may come from; empty when unknown) return, for `who`.
    pub fn exposures(
        &self,
        columns: &[OutputColumn],
        statements: &[&StatementFacts],
        who: &Who,
        session: &SessionState,
        out: &mut Vec<Exposure>,
    ) {
        out.clear();
        let (_, catalog) = self.catalog();
        let Some(catalog) = catalog else {
            // No snapshot yet (the target was unreachable when the
            // session began): nothing is vouched for.
            out.extend(columns.iter().map(|_| Exposure::Unvouched));
            return;
        };
        let mut computed: Option<Vec<Exposure>> = None;
        for (i, c) in columns.iter().enumerate() {
            let e = if c.table_oid != 0 {
                plain(&catalog, c, who, self)
            } else {
                let per_position = computed.get_or_insert_with(|| {
                    self.computed_exposures(&catalog, columns.len(), statements, who, session)
                });
                per_position.get(i).copied().unwrap_or(Exposure::Derived)
            };
            out.push(e);
        }
    }

    /// The exposure of each output position as computed from the
    /// statements' lineage (used for the computed columns). Where lineage
    /// cannot say, a position is derived from a protected column when the
    /// statement may read one, and unvouched otherwise.
    pub(crate) fn computed_exposures(
        &self,
        catalog: &CatalogSnapshot,
        width: usize,
        statements: &[&StatementFacts],
        who: &Who,
        session: &SessionState,
    ) -> Vec<Exposure> {
        let fallback = if self.may_read_protected(catalog, statements, session) {
            Exposure::Derived
        } else {
            Exposure::Unvouched
        };
        if statements.is_empty() {
            return vec![fallback; width];
        }
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        let mut out = vec![Exposure::Clear; width];
        for stmt in statements {
            for path in session.search_paths() {
                let lineage = if stmt.is_opaque(path, Some(&view)) {
                    None
                } else {
                    stmt.output
                        .as_ref()
                        .and_then(|o| expand(catalog, o, path, session))
                        .filter(|l| l.len() == width)
                };
                let Some(lineage) = lineage else {
                    for e in out.iter_mut() {
                        *e = worse(*e, fallback);
                    }
                    continue;
                };
                for (e, l) in out.iter_mut().zip(&lineage) {
                    let found = self.lineage_exposure(catalog, l, fallback, path, session, who);
                    *e = worse(*e, found);
                }
            }
        }
        out
    }

    /// What a value with this lineage exposes: a column passed through
    /// unchanged is what its column is; a computed value is derived from
    /// its sources; `fallback` where lineage cannot say.
    fn lineage_exposure(
        &self,
        catalog: &CatalogSnapshot,
        lineage: &Lineage,
        fallback: Exposure,
        path: &[String],
        session: &SessionState,
        who: &Who,
    ) -> Exposure {
        let Some(sources) = lineage.sources() else {
            return fallback;
        };
        if lineage.passes_through() {
            return sources
                .iter()
                .map(|s| self.passed_exposure(catalog, s, path, session, who))
                .fold(Exposure::Clear, worse);
        }
        sources
            .iter()
            .map(|s| self.source_exposure(catalog, s, path, session, who))
            .fold(Exposure::Clear, worse)
    }

    /// What a column passed through unchanged exposes: as a plain column
    /// of a result set (see [`plain`]).
    fn passed_exposure(
        &self,
        catalog: &CatalogSnapshot,
        source: &Source,
        path: &[String],
        session: &SessionState,
        who: &Who,
    ) -> Exposure {
        let Source::Column { relation, column } = source else {
            return self.source_exposure(catalog, source, path, session, who);
        };
        let Some(relation) = qualify(catalog, relation, path, session) else {
            // Not in the snapshot: as its rows would be, scanned.
            return Exposure::Unvouched;
        };
        // Lineage names every FROM item that may hold an unqualified
        // column; the catalog knows which do.
        catalog
            .columns_of(&relation)
            .filter(|c| c.name == *column)
            .map(|c| column_exposure(c, who, self))
            .fold(Exposure::Clear, worse)
    }

    /// What one lineage source of a computed value exposes.
    fn source_exposure(
        &self,
        catalog: &CatalogSnapshot,
        source: &Source,
        path: &[String],
        session: &SessionState,
        who: &Who,
    ) -> Exposure {
        let relation = match source {
            Source::Column { relation, .. } | Source::WholeRow { relation } => relation,
        };
        let Some(relation) = qualify(catalog, relation, path, session) else {
            // Not in the snapshot: created since, it may be a view over
            // anything protected, if anything is.
            return if catalog.any_classified() {
                Exposure::Derived
            } else {
                Exposure::Unvouched
            };
        };
        // Lineage names every FROM item that may hold an unqualified
        // column; the catalog knows which do.
        let columns = catalog.columns_of(&relation).filter(|c| match source {
            Source::Column { column, .. } => c.name == *column,
            Source::WholeRow { .. } => true,
        });
        columns.fold(Exposure::Clear, |e, c| {
            worse(
                e,
                if self.masks(c, who) {
                    Exposure::Derived
                } else if c.scan {
                    Exposure::Unvouched
                } else {
                    Exposure::Clear
                },
            )
        })
    }

    /// Whether `col`'s values are hidden from `who`: it is classified and
    /// `who` may not unmask it, or (a view's column) it is computed from
    /// such a column, or its view could not be traced.
    fn masks(&self, col: &CatalogColumn, who: &Who) -> bool {
        col.class
            .is_some_and(|k| !self.may_unmask(who, &col.relation, &col.name, k))
            || col.untraced
            || col
                .derived_from
                .iter()
                .any(|(rel, name, class)| !self.may_unmask(who, rel, name, *class))
    }

    /// Whether `who` may see values of `class` in `relation.column` as
    /// they are.
    pub fn may_unmask(
        &self,
        who: &Who,
        relation: &QualifiedName,
        column: &str,
        class: Class,
    ) -> bool {
        let mut context = RequestContext::now(who.source);
        context.row_limit = self.settings().row_limit;
        self.engine().may_unmask(
            &who.principal,
            &self.settings().target,
            &context,
            &ResourceRef::column(
                relation.schema.as_deref().unwrap_or_default(),
                relation.name.as_str(),
                column,
            ),
            class.name(),
        )
    }

    /// Whether any of `statements` may read a column `who` may not see:
    /// a relation that exposes one, directly or through a view, under any
    /// search_path the session may have; a prepared statement, cursor or
    /// function whose body the proxy cannot follow counts as one.
    fn may_read_protected(
        &self,
        catalog: &CatalogSnapshot,
        statements: &[&StatementFacts],
        session: &SessionState,
    ) -> bool {
        if !catalog.any_classified() {
            return false;
        }
        if statements.is_empty() {
            return true;
        }
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        for stmt in statements {
            if matches!(stmt.class, StatementClass::Cursor | StatementClass::Execute) {
                // The rows are the cursor's or prepared statement's,
                // which this statement does not show.
                return true;
            }
            if stmt.actions.iter().any(|a| {
                matches!(
                    (&a.kind, a.execution),
                    (ActionKind::Execute { .. }, Execution::Now)
                )
            }) {
                return true;
            }
            for path in session.search_paths() {
                if stmt.is_opaque(path, Some(&view)) {
                    return true;
                }
                for r in resolver(&view, path, session).resolve(stmt) {
                    if !r.access.read {
                        continue;
                    }
                    if r.name.schema.is_none() || catalog.relation_kind(&r.name).is_none() {
                        // Unknown to the snapshot: created since, and may
                        // be a view over anything.
                        return true;
                    }
                    if catalog.may_expose(&r.name) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

impl Guard {
    /// The masking checks made when a statement is judged, before it runs
    /// (so no row of a refused statement is ever computed): under
    /// `strict`, a result column computed from a protected column, or
    /// columns that cannot be traced while the statement may read one,
    /// refuse it; a protected column it chooses, groups or orders rows by
    /// is added to `inferred`, and refuses it under `inference =
    /// "refuse"`. `stmt` is judged by what it runs: EXECUTE by the
    /// statements prepared under its name, PREPARE by its body.
    pub(crate) fn masking_refusal(
        &self,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
        inferred: &mut Vec<Inferred>,
    ) -> Option<Refusal> {
        let (_, catalog) = self.catalog();
        let catalog = catalog?;
        if !catalog.any_classified() {
            return None;
        }
        let mut runs: Vec<&StatementFacts> = Vec::new();
        if stmt.class != StatementClass::Execute {
            runs.push(stmt);
        }
        // EXECUTE (also under EXPLAIN ANALYZE) runs what was prepared.
        runs.extend(prepared_bodies(stmt, session));
        let rules = self.settings().masking;
        let mut refusal = None;
        for facts in &runs {
            let before = inferred.len();
            self.inferred_columns(&catalog, facts, who, session, inferred);
            if rules.inference == InferenceRule::Refuse && inferred.len() > before {
                refusal.get_or_insert_with(|| {
                    Refusal::error(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        "statement refused by Portcullis: it chooses, groups or orders rows by a column masked for you",
                    )
                    .hint("Filtering, joining, grouping or sorting on a masked column reveals its values. Leave masked columns out of WHERE, JOIN, GROUP BY, HAVING and ORDER BY, or ask for the unmask permission.")
                });
            }
            if rules.strict && refusal.is_none() {
                refusal = self.strict_refusal(&catalog, facts, who, session);
            }
        }
        inferred.sort_by_key(|i| i.to_string());
        inferred.dedup();
        refusal
    }

    /// Under strict masking: the refusal for a statement whose result has
    /// a column that would be masked whole.
    fn strict_refusal(
        &self,
        catalog: &CatalogSnapshot,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
    ) -> Option<Refusal> {
        let output = stmt.output.as_ref().or(stmt.prepared_output.as_ref())?;
        let fallback = if self.may_read_protected(catalog, &[stmt], session) {
            Exposure::Derived
        } else {
            Exposure::Unvouched
        };
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        for path in session.search_paths() {
            let Some(columns) = expand(catalog, output, path, session) else {
                if fallback == Exposure::Derived {
                    return Some(strict(
                        "strict masking: the columns of this statement cannot be traced to the columns they come from, and it may read a protected column".to_owned(),
                    ));
                }
                continue;
            };
            // Code the analysis cannot see may stand behind any computed
            // value; a column passed through is its column still.
            let opaque = stmt.is_opaque(path, Some(&view));
            for (i, lineage) in columns.iter().enumerate() {
                let exposure = if opaque && !lineage.passes_through() {
                    fallback
                } else {
                    self.lineage_exposure(catalog, lineage, fallback, path, session, who)
                };
                if exposure == Exposure::Derived {
                    return Some(strict(format!(
                        "strict masking: column {} of this statement is computed from a protected column",
                        i + 1
                    )));
                }
            }
        }
        None
    }

    /// The protected columns `stmt` chooses, groups or orders rows by,
    /// directly or through the views it reads.
    fn inferred_columns(
        &self,
        catalog: &CatalogSnapshot,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
        out: &mut Vec<Inferred>,
    ) {
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        let untraced = |guard: &Self, out: &mut Vec<Inferred>| {
            if guard.may_read_protected(catalog, &[stmt], session) {
                out.push(Inferred::Untraced);
            }
        };
        for path in session.search_paths() {
            match stmt.row_choice.sources() {
                None => untraced(self, out),
                Some(sources) => {
                    for source in sources {
                        let (relation, column) = match source {
                            Source::Column { relation, column } => (relation, Some(column)),
                            Source::WholeRow { relation } => (relation, None),
                        };
                        // A relation the snapshot does not know holds no
                        // classified column yet.
                        let Some(relation) = qualify(catalog, relation, path, session) else {
                            continue;
                        };
                        for c in catalog.columns_of(&relation) {
                            if column.is_none_or(|name| *name == c.name) {
                                self.masked_bases(c, who, out);
                            }
                        }
                    }
                }
            }
            // A view's own WHERE chooses the rows of whatever reads it.
            for r in resolver(&view, path, session).resolve(stmt) {
                if !r.access.read {
                    continue;
                }
                let Some(choice) = catalog.view_row_choice(&r.name) else {
                    continue;
                };
                for (relation, column, class) in &choice.columns {
                    if !self.may_unmask(who, relation, column, *class) {
                        out.push(Inferred::Column {
                            relation: relation.clone(),
                            column: column.clone(),
                            class: *class,
                        });
                    }
                }
                if choice.untraced {
                    out.push(Inferred::Untraced);
                }
            }
        }
    }

    /// The columns masked for `who` behind catalog column `c`: itself, or
    /// for a view's column the classified columns it shows.
    fn masked_bases(&self, c: &CatalogColumn, who: &Who, out: &mut Vec<Inferred>) {
        if c.untraced {
            out.push(Inferred::Untraced);
        }
        if c.derived_from.is_empty() {
            if let Some(class) = c.class {
                if !self.may_unmask(who, &c.relation, &c.name, class) {
                    out.push(Inferred::Column {
                        relation: c.relation.clone(),
                        column: c.name.clone(),
                        class,
                    });
                }
            }
            return;
        }
        for (relation, column, class) in &c.derived_from {
            if !self.may_unmask(who, relation, column, *class) {
                out.push(Inferred::Column {
                    relation: relation.clone(),
                    column: column.clone(),
                    class: *class,
                });
            }
        }
    }

    /// The refusal for a statement that would copy columns masked for
    /// `who` somewhere masking cannot follow them.
    ///
    /// Written values are judged column by column ([`Guard::write_refusal`]):
    /// INSERT, UPDATE, MERGE, CREATE TABLE AS, SELECT INTO, materialized
    /// views. What leaves the database or hides behind a definition
    /// masking does not trace (COPY to a file or a program, COPY TO
    /// STDOUT whose layout cannot be followed, views, function bodies),
    /// and a write the lineage pass did not reach (a rule's actions), are
    /// judged by the relations the statement reads: one masked column in
    /// them is enough.
    pub(crate) fn copy_refusal(
        &self,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
    ) -> Option<Refusal> {
        let mut out_of_reach = false;
        let mut written: Vec<&QualifiedName> = Vec::new();
        for a in &stmt.actions {
            match &a.kind {
                ActionKind::SelectInto { table }
                | ActionKind::CreateTableAs { table, .. }
                | ActionKind::Insert { table, .. }
                | ActionKind::Update { table, .. }
                | ActionKind::Merge { table, .. } => written.push(table),
                // COPY TO STDOUT is masked like a result set, if its
                // layout can be followed.
                ActionKind::Copy {
                    direction: CopyDirection::To,
                    endpoint: CopyEndpoint::Client,
                    ..
                } if stmt.copy_out.as_ref().and_then(copy_format).is_some() => {}
                ActionKind::Copy {
                    direction: CopyDirection::To,
                    ..
                } => out_of_reach = true,
                ActionKind::SchemaChange { statement }
                    if matches!(*statement, "ViewStmt" | "CreateFunctionStmt") =>
                {
                    out_of_reach = true
                }
                _ => {}
            }
        }
        if !out_of_reach && written.is_empty() && stmt.writes.is_empty() {
            return None;
        }
        let (_, catalog) = self.catalog();
        let catalog = catalog?;
        if !catalog.any_classified() {
            return None;
        }
        let untraced = written
            .iter()
            .any(|t| !stmt.writes.iter().any(|w| w.relation == **t));
        if out_of_reach || untraced {
            if let Some(r) = self.read_refusal(&catalog, stmt, who, session) {
                return Some(r);
            }
        }
        self.write_refusal(&catalog, stmt, who, session)
    }

    /// Relation by relation: a column masked for `who` in anything
    /// `stmt` reads.
    fn read_refusal(
        &self,
        catalog: &CatalogSnapshot,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
    ) -> Option<Refusal> {
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        for path in session.search_paths() {
            for r in resolver(&view, path, session).resolve(stmt) {
                if !r.access.read || r.name.schema.is_none() {
                    continue;
                }
                if let Some(column) = self.masked_column(catalog, &r.name, who) {
                    return Some(copy_refused(format!(
                        "statement refused by Portcullis: it would copy {column} out of reach of masking"
                    )));
                }
            }
        }
        None
    }

    /// Column by column: a value derived from a column masked for `who`
    /// written into a column that does not mask it as well (not of the
    /// same class, or not masked for `who`, or a relation the statement
    /// creates). A value whose sources cannot be traced counts when the
    /// statement may read a masked column. The rows chosen (WHERE) are
    /// not what is written: that is inference, judged apart.
    fn write_refusal(
        &self,
        catalog: &CatalogSnapshot,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
    ) -> Option<Refusal> {
        let view = CatalogView {
            snapshot: catalog,
            functions_unseen: false,
        };
        let mut reads_protected: Option<bool> = None;
        for path in session.search_paths() {
            // Code the analysis cannot see may stand behind any computed
            // value; a column passed through is its column still.
            let opaque = stmt.is_opaque(path, Some(&view));
            for w in &stmt.writes {
                for (target, value) in written_pairs(catalog, w, path, session) {
                    let value = if opaque && !value.passes_through() {
                        Lineage::Unknown
                    } else {
                        value
                    };
                    let into = || describe_target(w, target);
                    let Some(sources) = value.sources() else {
                        let reads = *reads_protected.get_or_insert_with(|| {
                            self.may_read_protected(catalog, &[stmt], session)
                        });
                        if reads {
                            return Some(copy_refused(format!(
                                "statement refused by Portcullis: it would write values it cannot trace into {} while it may read columns masked for you",
                                into()
                            )));
                        }
                        continue;
                    };
                    for source in sources {
                        for base in self.masked_sources(catalog, source, path, session, who) {
                            let protected = match &base {
                                Inferred::Column { class, .. } => {
                                    target.is_some_and(|t| self.protects(catalog, t, *class, who))
                                }
                                Inferred::Untraced => false,
                            };
                            if !protected {
                                let what = match &base {
                                    Inferred::Column {
                                        relation,
                                        column,
                                        class,
                                    } => format!(
                                        "column \"{column}\" of \"{}\" (masked: {})",
                                        relation.name,
                                        class.name()
                                    ),
                                    Inferred::Untraced => "columns masked for you".to_owned(),
                                };
                                return Some(copy_refused(format!(
                                    "statement refused by Portcullis: it would copy {what} into {}, out of reach of masking",
                                    into()
                                )));
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The columns masked for `who` that a lineage source stands for (a
    /// view's column: the classified columns it shows); a relation the
    /// snapshot does not know counts as untraced.
    fn masked_sources(
        &self,
        catalog: &CatalogSnapshot,
        source: &Source,
        path: &[String],
        session: &SessionState,
        who: &Who,
    ) -> Vec<Inferred> {
        let (relation, column) = match source {
            Source::Column { relation, column } => (relation, Some(column)),
            Source::WholeRow { relation } => (relation, None),
        };
        let mut out = Vec::new();
        let Some(relation) = qualify(catalog, relation, path, session) else {
            // Created since the snapshot: it may be a view over anything.
            out.push(Inferred::Untraced);
            return out;
        };
        for c in catalog.columns_of(&relation) {
            if column.is_none_or(|name| *name == c.name) && self.masks(c, who) {
                self.masked_bases(c, who, &mut out);
            }
        }
        out
    }

    /// Whether target column `c` masks values of `class` for `who` as
    /// their source column does: classified so and masked for `who`.
    /// Written through a view, a value lands in the column the view shows,
    /// which must be so.
    fn protects(
        &self,
        catalog: &CatalogSnapshot,
        c: &CatalogColumn,
        class: Class,
        who: &Who,
    ) -> bool {
        if c.untraced {
            return false;
        }
        if catalog.is_view(&c.relation) {
            return !c.derived_from.is_empty()
                && c.derived_from
                    .iter()
                    .all(|(r, n, k)| *k == class && !self.may_unmask(who, r, n, *k));
        }
        c.class == Some(class) && !self.may_unmask(who, &c.relation, &c.name, class)
    }

    /// A column of `relation` (or of what it reads or holds, for views
    /// and partitioned tables) masked for `who`, named for a message.
    fn masked_column(
        &self,
        catalog: &CatalogSnapshot,
        relation: &QualifiedName,
        who: &Who,
    ) -> Option<String> {
        if let Some(c) = catalog.columns_of(relation).find(|c| self.masks(c, who)) {
            return Some(match c.class {
                Some(k) => format!(
                    "column \"{}\" of \"{}\" (masked: {})",
                    c.name,
                    c.relation.name,
                    k.name()
                ),
                None => format!("column \"{}\" of \"{}\" (masked)", c.name, c.relation.name),
            });
        }
        // A view or parent: what it reaches was resolved separately, but
        // one the snapshot cannot see through counts as masked.
        (catalog.is_view(relation)
            && catalog.may_expose(relation)
            && catalog.columns_of(relation).next().is_none())
        .then(|| format!("columns of \"{}\"", relation.name))
    }
}

/// A resolver of names on `path` through the snapshot, as `session`
/// sees them.
fn resolver<'a>(
    view: &'a CatalogView<'a>,
    path: &'a [String],
    session: &'a SessionState,
) -> Resolver<'a> {
    Resolver {
        search_path: path,
        session_user: Some(&session.session_user),
        catalog: Some(view),
    }
}

/// The refusal of a statement that would copy masked values away.
fn copy_refused(message: String) -> Refusal {
    Refusal::error(sqlstate::INSUFFICIENT_PRIVILEGE, message).hint(
        "Columns masked for you can be read only through queries, which return them masked. Leave such columns out, or ask for the unmask permission.",
    )
}

/// Each value `w` writes, with the catalog column it lands in (`None`:
/// one masking does not know, such as a column of a relation the
/// statement creates). Where values cannot be matched to columns (a
/// width that does not agree, values that cannot be told apart), every
/// column may receive any of them.
fn written_pairs<'c>(
    catalog: &'c CatalogSnapshot,
    w: &Assignment,
    path: &[String],
    session: &SessionState,
) -> Vec<(Option<&'c CatalogColumn>, Lineage)> {
    let relation = match w.columns {
        AssignedColumns::Created => None,
        _ => qualify(catalog, &w.relation, path, session),
    };
    let table: Vec<&CatalogColumn> = relation
        .as_ref()
        .map(|r| catalog.columns_of(r).collect())
        .unwrap_or_default();
    let by_name = |n: &String| table.iter().copied().find(|c| c.name == *n);
    let targets: Vec<Option<&CatalogColumn>> = match &w.columns {
        AssignedColumns::Named(names) => names.iter().map(by_name).collect(),
        AssignedColumns::InOrder => table.iter().copied().map(Some).collect(),
        AssignedColumns::Created => Vec::new(),
    };
    let values = expand(catalog, &w.values, path, session);
    let matched = match (&values, &w.columns) {
        (Some(v), AssignedColumns::Named(_)) => v.len() == targets.len(),
        // Columns left out of an INSERT without a list get defaults.
        (Some(v), AssignedColumns::InOrder) => relation.is_some() && v.len() <= targets.len(),
        (Some(_), AssignedColumns::Created) => true,
        (None, _) => false,
    };
    match values {
        Some(values) if matched => values
            .into_iter()
            .enumerate()
            .map(|(i, l)| (targets.get(i).copied().flatten(), l))
            .collect(),
        values => {
            let values = values.unwrap_or_else(|| vec![Lineage::Unknown]);
            let mut targets = targets;
            if targets.is_empty()
                || relation.is_none()
                || !matches!(w.columns, AssignedColumns::Named(_))
            {
                // Somewhere masking may not know.
                targets.push(None);
            }
            targets
                .iter()
                .flat_map(|t| values.iter().map(move |l| (*t, l.clone())))
                .collect()
        }
    }
}

/// Where a written value lands, named for a message.
fn describe_target(w: &Assignment, target: Option<&CatalogColumn>) -> String {
    match target {
        Some(c) => format!("column \"{}\" of \"{}\"", c.name, c.relation.name),
        None => format!("\"{}\"", w.relation.name),
    }
}

/// The more exposed of two exposures (for a value that may be either).
/// Two protected columns masked alike stay so; masked differently, the
/// value is hidden whole.
pub(crate) fn worse(a: Exposure, b: Exposure) -> Exposure {
    match (a, b) {
        (Exposure::Clear, x) | (x, Exposure::Clear) => x,
        (Exposure::Unvouched, x) | (x, Exposure::Unvouched) => x,
        (Exposure::Protected(k, s), Exposure::Protected(l, t)) if k == l && s == t => a,
        _ => Exposure::Derived,
    }
}

/// `relation` as the server resolves it on `path`, if the snapshot has it.
pub(crate) fn qualify(
    catalog: &CatalogSnapshot,
    relation: &QualifiedName,
    path: &[String],
    session: &SessionState,
) -> Option<QualifiedName> {
    let view = CatalogView {
        snapshot: catalog,
        functions_unseen: false,
    };
    let q = resolver(&view, path, session).qualify_read(relation)?;
    catalog.relation_kind(&q).map(|_| q)
}

/// A statement's output, one lineage per column, `*` expanded with the
/// catalog; `None` when that cannot be done.
pub(crate) fn expand(
    catalog: &CatalogSnapshot,
    output: &Output,
    path: &[String],
    session: &SessionState,
) -> Option<Vec<Lineage>> {
    let items = output.items()?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            OutputItem::Column(l) => out.push(l.clone()),
            OutputItem::AllColumnsOf { relation, except } => {
                let q = qualify(catalog, relation, path, session)?;
                for c in catalog.columns_of(&q) {
                    if !except.contains(&c.name) {
                        out.push(Lineage::From {
                            sources: vec![Source::Column {
                                relation: q.clone(),
                                column: c.name.clone(),
                            }],
                            computed: false,
                        });
                    }
                }
            }
        }
    }
    Some(out)
}

/// A plain column reference.
pub(crate) fn plain(
    catalog: &CatalogSnapshot,
    c: &OutputColumn,
    who: &Who,
    guard: &Guard,
) -> Exposure {
    if c.attnum < 0 {
        // A system column (ctid, xmin, tableoid): never user data.
        return Exposure::Clear;
    }
    if c.attnum == 0 {
        // The server reports a whole-row reference (`SELECT c FROM
        // customers c`) as attribute 0 of its table.
        let Some(relation) = catalog.relation_of_oid(c.table_oid) else {
            return Exposure::Unvouched;
        };
        return if catalog
            .columns_of(relation)
            .any(|col| guard.masks(col, who))
        {
            Exposure::Derived
        } else if catalog.columns_of(relation).any(|col| col.scan) {
            Exposure::Unvouched
        } else {
            Exposure::Clear
        };
    }
    let Some(col) = catalog.column(c.table_oid, c.attnum) else {
        // A table the snapshot does not know (created since, temporary,
        // or a system catalog).
        return Exposure::Unvouched;
    };
    column_exposure(col, who, guard)
}

/// What a catalog column's values expose as they are.
fn column_exposure(col: &CatalogColumn, who: &Who, guard: &Guard) -> Exposure {
    match col.class {
        _ if !guard.masks(col, who) && col.scan => Exposure::Unvouched,
        _ if !guard.masks(col, who) => Exposure::Clear,
        // A classified column, or a view's column passing one through.
        Some(class) => Exposure::Protected(class, col.strategy),
        // A view's column, computed from a masked one.
        None => Exposure::Derived,
    }
}

/// The statements an EXECUTE runs: those prepared under its name (their
/// bodies, for SQL PREPARE).
fn prepared_bodies<'a>(
    stmt: &StatementFacts,
    session: &'a SessionState,
) -> impl Iterator<Item = &'a StatementFacts> {
    let keys: Vec<_> = stmt
        .actions
        .iter()
        .filter_map(|a| match (&a.kind, a.execution) {
            (ActionKind::Execute { name }, Execution::Now) => session.sql_name(name).ok(),
            _ => None,
        })
        .collect();
    keys.into_iter().flat_map(move |key| {
        session
            .prepared(&key)
            .filter_map(|t| t.statement())
            .collect::<Vec<_>>()
    })
}

fn strict(message: String) -> Refusal {
    Refusal::error(sqlstate::INSUFFICIENT_PRIVILEGE, message).hint(
        "Strict masking refuses values computed from columns masked for you instead of hiding them whole. Select such columns plainly (they are returned masked), or ask for the unmask permission.",
    )
}
