//! What each output column of a result set is, for one session: the
//! guard's half of masking. The catalog says what a plain column holds
//! (by the table OID and attribute number RowDescription gives, so no
//! alias hides it); the statement says what a computed column may be made
//! of. How a protected value is hidden is the mask crate's business.

use portcullis_analysis::{
    ActionKind, CopyDirection, CopyEndpoint, Execution, Lineage, OutputItem, QualifiedName,
    Resolver, Source, StatementClass, StatementFacts,
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
                    expand(catalog, stmt, path, session, width)
                };
                let Some(lineage) = lineage else {
                    for e in out.iter_mut() {
                        *e = worse(*e, fallback);
                    }
                    continue;
                };
                for (e, l) in out.iter_mut().zip(&lineage) {
                    let found = match l {
                        Lineage::Unknown => fallback,
                        Lineage::From(sources) => sources
                            .iter()
                            .map(|s| self.source_exposure(catalog, s, path, session, who))
                            .fold(Exposure::Clear, worse),
                    };
                    *e = worse(*e, found);
                }
            }
        }
        out
    }

    /// What one lineage source exposes.
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
    /// The refusal for a statement that would copy columns masked for
    /// `who` somewhere masking cannot follow them: a new table (CREATE
    /// TABLE AS, SELECT INTO, a materialized view), a view, another table
    /// (INSERT / UPDATE / MERGE reading them from elsewhere), or out
    /// through COPY (a file, a program, or the client when the layout of
    /// its output cannot be followed to mask it). Relations are judged whole: one masked
    /// column in what the statement reads is enough.
    pub(crate) fn copy_refusal(
        &self,
        stmt: &StatementFacts,
        who: &Who,
        session: &SessionState,
    ) -> Option<Refusal> {
        // Where it copies to; `None` inside for "out of the database".
        let mut into: Vec<Option<&QualifiedName>> = Vec::new();
        for a in &stmt.actions {
            match &a.kind {
                ActionKind::SelectInto { table } | ActionKind::CreateTableAs { table, .. } => {
                    into.push(Some(table))
                }
                ActionKind::Insert { table, .. }
                | ActionKind::Update { table, .. }
                | ActionKind::Merge { table, .. } => into.push(Some(table)),
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
                } => into.push(None),
                ActionKind::SchemaChange { statement }
                    if matches!(*statement, "ViewStmt" | "CreateFunctionStmt") =>
                {
                    into.push(None)
                }
                _ => {}
            }
        }
        if into.is_empty() {
            return None;
        }
        let (_, catalog) = self.catalog();
        let catalog = catalog?;
        if !catalog.any_classified() {
            return None;
        }
        let view = CatalogView {
            snapshot: &catalog,
            functions_unseen: false,
        };
        for path in session.search_paths() {
            let resolved = resolver(&view, path, session).resolve(stmt);
            // The written tables, qualified as the server will.
            let targets: Vec<&QualifiedName> = resolved
                .iter()
                .filter(|r| r.access.write)
                .map(|r| &r.name)
                .collect();
            for r in &resolved {
                if !r.access.read || r.name.schema.is_none() {
                    continue;
                }
                // Reading a table to change it in place copies nothing
                // elsewhere.
                let in_place = !into.contains(&None)
                    && targets.contains(&&r.name)
                    && r.reached_through.is_none();
                if in_place {
                    continue;
                }
                if let Some(column) = self.masked_column(&catalog, &r.name, who) {
                    let m = format!(
                        "statement refused by Portcullis: it would copy {} out of reach of masking",
                        column
                    );
                    return Some(
                        Refusal::error(sqlstate::INSUFFICIENT_PRIVILEGE, m).hint(
                            "Columns masked for you can be read only through queries, which return them masked. Leave such columns out, or ask for the unmask permission.",
                        ),
                    );
                }
            }
        }
        None
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

/// The more exposed of two exposures (for a value that may be either).
pub(crate) fn worse(a: Exposure, b: Exposure) -> Exposure {
    fn rank(e: Exposure) -> u8 {
        match e {
            Exposure::Clear => 0,
            Exposure::Unvouched => 1,
            Exposure::Protected(..) | Exposure::Derived => 2,
        }
    }
    if rank(b) > rank(a) {
        b
    } else {
        a
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

/// The statement's output, one lineage per column, `*` expanded with the
/// catalog; `None` when it cannot be lined up with `width` columns.
fn expand(
    catalog: &CatalogSnapshot,
    stmt: &StatementFacts,
    path: &[String],
    session: &SessionState,
    width: usize,
) -> Option<Vec<Lineage>> {
    let items = stmt.output.as_ref()?.items()?;
    let mut out = Vec::with_capacity(width);
    for item in items {
        match item {
            OutputItem::Column(l) => out.push(l.clone()),
            OutputItem::AllColumnsOf { relation, except } => {
                let q = qualify(catalog, relation, path, session)?;
                for c in catalog.columns_of(&q) {
                    if !except.contains(&c.name) {
                        out.push(Lineage::From(vec![Source::Column {
                            relation: q.clone(),
                            column: c.name.clone(),
                        }]));
                    }
                }
            }
        }
    }
    (out.len() == width).then_some(out)
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
    match col.class {
        _ if !guard.masks(col, who) && col.scan => Exposure::Unvouched,
        _ if !guard.masks(col, who) => Exposure::Clear,
        Some(class) => Exposure::Protected(class, col.strategy),
        // A view's column, computed from a masked one.
        None => Exposure::Derived,
    }
}
