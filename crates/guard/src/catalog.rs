//! A snapshot of one target's catalog: the answers to the two questions the
//! statement analysis cannot answer from text alone (which functions are
//! read-only, which relations a name reaches).
//!
//! The proxy loads a snapshot over its own connection to the target with
//! [`CATALOG_QUERIES`] and keeps it per target; sessions read it without
//! locking. A snapshot can be stale: an object created after it was taken
//! is unknown, which the analysis treats as opaque (functions) or resolves
//! by the search_path (relations). Both err on the side of refusing, and the
//! proxy refreshes the snapshot after schema changes it lets through.

use std::collections::{HashMap, HashSet};

use portcullis_analysis::functions::CatalogFunction;
use portcullis_analysis::resolve::RelationKind;
use portcullis_analysis::{FunctionCatalog, QualifiedName, RelationCatalog, Volatility};
use portcullis_mask::{Class, Strategy};

/// The statements whose results build a snapshot, in this order, each
/// returning text columns. Sent as one simple Query; every result set maps
/// to one `*_rows` argument of [`CatalogSnapshot::from_rows`].
pub const CATALOG_QUERIES: &str = "\
SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast%';
SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r','p','v','m','f','S') AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%';
SELECT cn.nspname, c.relname, pn.nspname, p.relname FROM pg_catalog.pg_inherits i \
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace;
SELECT DISTINCT vn.nspname, v.relname, dn.nspname, d.relname FROM pg_catalog.pg_rewrite r \
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace \
JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND dep.objid = r.oid \
AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
JOIN pg_catalog.pg_class d ON d.oid = dep.refobjid JOIN pg_catalog.pg_namespace dn ON dn.oid = d.relnamespace \
WHERE d.oid <> v.oid AND v.relkind IN ('v','m') AND d.relkind IN ('r','p','v','m','f');
SELECT n.nspname, p.proname, p.pronargs::text, p.pronargdefaults::text, (p.provariadic <> 0)::text, p.provolatile::text, e.extname \
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e' \
LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
WHERE p.prokind IN ('f','w','a');
SELECT c.oid::text, n.nspname, c.relname, a.attnum::text, a.attname, \
(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END)::text, \
(CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)::text, \
pg_catalog.col_description(c.oid, a.attnum::int), (a.attgenerated <> '')::text FROM pg_catalog.pg_attribute a \
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f') \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%' \
ORDER BY c.oid, a.attnum;
SELECT n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v','m') \
AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/// How many result sets [`CATALOG_QUERIES`] produces.
pub const CATALOG_RESULT_SETS: usize = 7;

/// One row of a catalog query: text columns, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// A catalog result that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog query {query}: {problem}")]
pub struct CatalogError {
    pub query: &'static str,
    pub problem: String,
}

/// What a column holds and how to mask it, from its relation, name,
/// comment and type OID (see [`CatalogSnapshot::classify`]).
pub type Classifier<'a> = dyn Fn(&QualifiedName, &str, Option<&str>, u32) -> Classification + 'a;

/// What a column holds, as far as its name, comment, type and the
/// configuration say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Sensitive values of this class, masked as the strategy says (the
    /// class's default when `None`).
    Sensitive(Class, Option<Strategy>),
    /// Nothing sensitive: a person said so (the configuration, a
    /// `pii:none` comment), or its type cannot hold free text.
    Clear,
    /// Free text nothing vouches for: its values are scanned by the
    /// content detectors.
    Scan,
}

/// One column of a table, view or foreign table, as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub relation: QualifiedName,
    pub name: String,
    pub attnum: i16,
    /// The type, a domain's base type in its place (one level, as
    /// RowDescription reports a domain column's type).
    pub type_oid: u32,
    pub typmod: i32,
    pub comment: Option<String>,
    /// A generated column: computed from the others, and left out of
    /// `COPY table TO` when no column list is given.
    pub generated: bool,
    /// What it holds, once classified (see [`CatalogSnapshot::classify`]).
    pub class: Option<Class>,
    /// Unclassified free text: its values are scanned (see
    /// [`Classification::Scan`]).
    pub scan: bool,
    /// How the configuration wants it masked (its class's default when
    /// `None`).
    pub strategy: Option<Strategy>,
    /// For a view's column: the classified columns its value is computed
    /// from, by the view's definition (see [`CatalogSnapshot::classify`]).
    pub derived_from: Vec<(QualifiedName, String, Class)>,
    /// For a view's column: its definition could not be traced, and the
    /// view reads a classified column.
    pub untraced: bool,
}

#[derive(Debug, Clone)]
struct Function {
    min_args: usize,
    max_args: Option<usize>,
    info: CatalogFunction,
}

/// One target's catalog, as of when it was loaded.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    schemas: HashSet<String>,
    relations: HashMap<QualifiedName, RelationKind>,
    /// Relation name → the schemas holding a relation of that name.
    by_name: HashMap<String, Vec<String>>,
    children: HashMap<QualifiedName, Vec<QualifiedName>>,
    view_reads: HashMap<QualifiedName, Vec<QualifiedName>>,
    /// (schema, name) → overloads.
    functions: HashMap<(String, String), Vec<Function>>,
    /// (relation OID, attribute number) → column.
    columns: HashMap<(u32, i16), CatalogColumn>,
    /// Relation → its OID and its columns' attribute numbers, in order.
    relation_columns: HashMap<QualifiedName, (u32, Vec<i16>)>,
    /// Relation OID → name (relations with columns).
    by_oid: HashMap<u32, QualifiedName>,
    /// Some column is classified.
    any_classified: bool,
    /// A view's definition as the server prints it.
    view_definitions: HashMap<QualifiedName, String>,
    /// What each view's definition chooses rows by (once classified).
    view_row_choice: HashMap<QualifiedName, ViewRowChoice>,
}

/// The search_path view definitions are read with: pg_get_viewdef
/// qualifies what the loader's search_path ("$user", public) would not
/// find.
fn view_path() -> [String; 1] {
    ["public".to_owned()]
}

/// What a view's definition chooses rows by (see
/// [`CatalogSnapshot::view_row_choice`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewRowChoice {
    /// Classified columns, as (relation, column, class).
    pub columns: Vec<(QualifiedName, String, Class)>,
    /// Something it chooses by could not be traced.
    pub untraced: bool,
}

fn text<'r>(row: &'r Row, i: usize, query: &'static str) -> Result<&'r str, CatalogError> {
    row.get(i)
        .and_then(|c| c.as_deref())
        .ok_or_else(|| CatalogError {
            query,
            problem: format!("column {} missing or NULL", i + 1),
        })
}

fn number(row: &Row, i: usize, query: &'static str) -> Result<usize, CatalogError> {
    text(row, i, query)?.parse().map_err(|_| CatalogError {
        query,
        problem: format!("column {} is not a number", i + 1),
    })
}

fn parse<T: std::str::FromStr>(
    row: &Row,
    i: usize,
    query: &'static str,
) -> Result<T, CatalogError> {
    text(row, i, query)?.parse().map_err(|_| CatalogError {
        query,
        problem: format!("column {} is not a number", i + 1),
    })
}

fn qualified(row: &Row, at: usize, query: &'static str) -> Result<QualifiedName, CatalogError> {
    Ok(QualifiedName::new(
        Some(text(row, at, query)?),
        text(row, at + 1, query)?,
    ))
}

impl CatalogSnapshot {
    /// Builds a snapshot from the result sets of [`CATALOG_QUERIES`].
    pub fn from_rows(result_sets: &[Vec<Row>]) -> Result<CatalogSnapshot, CatalogError> {
        let [schemas, relations, inherits, views, functions, columns, definitions] = result_sets
        else {
            return Err(CatalogError {
                query: "all",
                problem: format!(
                    "expected {CATALOG_RESULT_SETS} result sets, got {}",
                    result_sets.len()
                ),
            });
        };
        let mut snap = CatalogSnapshot::default();
        for row in schemas {
            snap.schemas.insert(text(row, 0, "schemas")?.to_owned());
        }
        for row in relations {
            let name = qualified(row, 0, "relations")?;
            let kind = text(row, 2, "relations")?
                .chars()
                .next()
                .and_then(RelationKind::from_relkind);
            let Some(kind) = kind else { continue };
            snap.by_name
                .entry(name.name.clone())
                .or_default()
                .push(name.schema.clone().unwrap_or_default());
            snap.relations.insert(name, kind);
        }
        for row in inherits {
            let child = qualified(row, 0, "inherits")?;
            let parent = qualified(row, 2, "inherits")?;
            snap.children.entry(parent).or_default().push(child);
        }
        for row in views {
            let view = qualified(row, 0, "views")?;
            let reads = qualified(row, 2, "views")?;
            snap.view_reads.entry(view).or_default().push(reads);
        }
        for row in functions {
            let schema = text(row, 0, "functions")?.to_owned();
            let name = text(row, 1, "functions")?.to_owned();
            let nargs = number(row, 2, "functions")?;
            let defaults = number(row, 3, "functions")?;
            let variadic = text(row, 4, "functions")? == "true";
            let volatility = text(row, 5, "functions")?
                .chars()
                .next()
                .and_then(Volatility::from_provolatile)
                .ok_or_else(|| CatalogError {
                    query: "functions",
                    problem: "unknown provolatile".into(),
                })?;
            let extension = row.get(6).cloned().flatten();
            let f = Function {
                min_args: nargs.saturating_sub(defaults),
                max_args: (!variadic).then_some(nargs),
                info: CatalogFunction {
                    schema: schema.clone(),
                    volatility,
                    extension,
                },
            };
            snap.functions.entry((schema, name)).or_default().push(f);
        }
        for row in columns {
            let oid: u32 = parse(row, 0, "columns")?;
            let relation = qualified(row, 1, "columns")?;
            let attnum: i16 = parse(row, 3, "columns")?;
            let column = CatalogColumn {
                relation: relation.clone(),
                name: text(row, 4, "columns")?.to_owned(),
                attnum,
                type_oid: parse(row, 5, "columns")?,
                typmod: parse(row, 6, "columns")?,
                comment: row.get(7).cloned().flatten(),
                generated: row.get(8).cloned().flatten().as_deref() == Some("true"),
                class: None,
                scan: false,
                strategy: None,
                derived_from: Vec::new(),
                untraced: false,
            };
            snap.by_oid.entry(oid).or_insert_with(|| relation.clone());
            let entry = snap
                .relation_columns
                .entry(relation)
                .or_insert_with(|| (oid, Vec::new()));
            entry.1.push(attnum);
            snap.columns.insert((oid, attnum), column);
        }
        for row in definitions {
            let view = qualified(row, 0, "view definitions")?;
            if let Some(text) = row.get(2).cloned().flatten() {
                snap.view_definitions.insert(view, text);
            }
        }
        Ok(snap)
    }

    /// Classifies every column: `classify` answers from a column's own
    /// name and comment (with the configuration's overrides). A partition
    /// or child table's column holds what its parent's same-named column
    /// holds. Views are classified through what they read: a view over a
    /// relation with a classified column has its columns treated as
    /// derived from it unless their own classification says more (see
    /// [`CatalogSnapshot::view_may_expose`]).
    pub fn classify(&mut self, classify: &Classifier<'_>) {
        for c in self.columns.values_mut() {
            let found = classify(&c.relation, &c.name, c.comment.as_deref(), c.type_oid);
            (c.class, c.strategy, c.scan) = match found {
                Classification::Sensitive(k, s) => (Some(k), s, false),
                Classification::Clear => (None, None, false),
                Classification::Scan => (None, None, true),
            };
        }
        // Parents' classes flow down to descendants (any depth).
        let mut changed = true;
        while changed {
            changed = false;
            for (parent, kids) in &self.children {
                let Some((poid, pcols)) = self.relation_columns.get(parent) else {
                    continue;
                };
                let inherited: Vec<(String, Class)> = pcols
                    .iter()
                    .filter_map(|a| self.columns.get(&(*poid, *a)))
                    .filter_map(|c| c.class.map(|k| (c.name.clone(), k)))
                    .collect();
                for kid in kids {
                    let Some((koid, kcols)) = self.relation_columns.get(kid) else {
                        continue;
                    };
                    for a in kcols {
                        if let Some(col) = self.columns.get_mut(&(*koid, *a)) {
                            if col.class.is_none() {
                                if let Some((_, k)) = inherited.iter().find(|(n, _)| *n == col.name)
                                {
                                    col.class = Some(*k);
                                    changed = true;
                                }
                            }
                        }
                    }
                }
            }
        }
        self.any_classified = self.columns.values().any(|c| c.class.is_some());
        self.trace_views();
    }

    /// Each view column's classified sources, from the view's definition
    /// by output-column lineage (views over views in any order: a view's
    /// columns count through what they were traced to). A column that
    /// passes one classified column through unchanged (`email AS reach`)
    /// takes that column's class and strategy; a computed one is derived
    /// from its sources. A definition that does not parse or cannot be
    /// lined up with the view's columns marks every column untraced when
    /// the view may expose a classified column. The classified columns the
    /// definition chooses rows by are kept per view (see
    /// [`CatalogSnapshot::view_row_choice`]).
    fn trace_views(&mut self) {
        let mut views: Vec<(QualifiedName, Option<portcullis_analysis::Analysis>)> = self
            .view_definitions
            .iter()
            .map(|(v, text)| (v.clone(), portcullis_analysis::analyze(text).ok()))
            .collect();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        // Each round only adds, so this ends; one more round than there
        // are views covers any order of views over views.
        for _ in 0..=views.len() {
            let mut changed = false;
            for (view, analysis) in &views {
                let stmt = analysis.as_ref().and_then(|a| a.statements.first());
                changed |= self.trace_view(view, stmt);
                changed |= self.trace_view_row_choice(view, stmt);
            }
            if !changed {
                break;
            }
        }
    }

    fn trace_view(
        &mut self,
        view: &QualifiedName,
        stmt: Option<&portcullis_analysis::StatementFacts>,
    ) -> bool {
        use portcullis_analysis::{Lineage, OutputItem};
        let Some((oid, attnums)) = self.relation_columns.get(view).cloned() else {
            return false;
        };
        // Per view column: its source columns, and whether it passes one of
        // them through unchanged.
        let traced = stmt.and_then(|stmt| {
            let items = stmt.output.as_ref()?.items()?;
            let mut out: Vec<(Vec<(QualifiedName, String)>, bool)> = Vec::new();
            for item in items {
                match item {
                    OutputItem::Column(lineage @ Lineage::From { sources, .. }) => {
                        out.push((self.source_columns(sources)?, lineage.passes_through()));
                    }
                    OutputItem::Column(Lineage::Unknown) => return None,
                    OutputItem::AllColumnsOf { relation, except } => {
                        let rel = self.qualify_on(relation, &view_path())?;
                        for c in self.columns_of(&rel) {
                            if !except.contains(&c.name) {
                                out.push((vec![(rel.clone(), c.name.clone())], true));
                            }
                        }
                    }
                }
            }
            (out.len() == attnums.len()).then_some(out)
        });
        let mut changed = false;
        match traced {
            Some(per_column) => {
                for (attnum, (sources, passes)) in attnums.iter().zip(per_column) {
                    let (found, untraced) = self.classified_sources(&sources);
                    // The one class (and strategy) every classified source
                    // passed through has.
                    let passed = if passes {
                        let mut classes = sources.iter().filter_map(|(rel, name)| {
                            self.columns_of(rel)
                                .find(|c| c.name == *name)
                                .and_then(|c| c.class.map(|k| (k, c.strategy)))
                        });
                        let first = classes.next();
                        first.filter(|f| classes.all(|c| c == *f))
                    } else {
                        None
                    };
                    if let Some(col) = self.columns.get_mut(&(oid, *attnum)) {
                        let mut found = found;
                        found.retain(|f| !col.derived_from.contains(f));
                        if !found.is_empty() || (untraced && !col.untraced) {
                            col.derived_from.extend(found);
                            col.untraced |= untraced;
                            changed = true;
                        }
                        if let Some((class, strategy)) = passed {
                            if col.class != Some(class) || col.strategy != strategy {
                                col.class = Some(class);
                                col.strategy = strategy;
                                changed = true;
                            }
                        }
                    }
                }
            }
            None => {
                let exposes = self.may_expose(view);
                for attnum in &attnums {
                    if let Some(col) = self.columns.get_mut(&(oid, *attnum)) {
                        if exposes && !col.untraced {
                            col.untraced = true;
                            changed = true;
                        }
                    }
                }
            }
        }
        changed
    }

    /// The classified columns a view's definition chooses rows by.
    fn trace_view_row_choice(
        &mut self,
        view: &QualifiedName,
        stmt: Option<&portcullis_analysis::StatementFacts>,
    ) -> bool {
        let sources = stmt.and_then(|s| s.row_choice.sources());
        let (found, untraced) = match sources.and_then(|s| self.source_columns(s)) {
            Some(columns) => self.classified_sources(&columns),
            None => (Vec::new(), self.may_expose(view)),
        };
        let entry = self.view_row_choice.entry(view.clone()).or_default();
        let before = (entry.columns.len(), entry.untraced);
        for f in found {
            if !entry.columns.contains(&f) {
                entry.columns.push(f);
            }
        }
        entry.untraced |= untraced;
        before != (entry.columns.len(), entry.untraced)
    }

    /// The columns lineage sources of a view's definition name, qualified
    /// (a whole row: every column); `None` when a relation is not known.
    fn source_columns(
        &self,
        sources: &[portcullis_analysis::Source],
    ) -> Option<Vec<(QualifiedName, String)>> {
        let mut cols = Vec::new();
        for s in sources {
            let (relation, column) = match s {
                portcullis_analysis::Source::Column { relation, column } => {
                    (relation, Some(column))
                }
                portcullis_analysis::Source::WholeRow { relation } => (relation, None),
            };
            let rel = self.qualify_on(relation, &view_path())?;
            match column {
                Some(c) => cols.push((rel, c.clone())),
                None => cols.extend(self.columns_of(&rel).map(|c| (rel.clone(), c.name.clone()))),
            }
        }
        Some(cols)
    }

    /// The classified columns behind `columns` (through views), and
    /// whether one of them is an untraced view's.
    fn classified_sources(
        &self,
        columns: &[(QualifiedName, String)],
    ) -> (Vec<(QualifiedName, String, Class)>, bool) {
        let mut found: Vec<(QualifiedName, String, Class)> = Vec::new();
        let mut untraced = false;
        for (rel, name) in columns {
            if let Some(c) = self.columns_of(rel).find(|c| c.name == *name) {
                if let Some(k) = c.class {
                    found.push((rel.clone(), name.clone(), k));
                }
                found.extend(c.derived_from.iter().cloned());
                untraced |= c.untraced;
            }
        }
        (found, untraced)
    }

    /// The classified columns `view`'s definition chooses, groups or
    /// orders rows by (through the views it reads), and whether what it
    /// chooses by could not be traced while it may expose a classified
    /// column. Selecting from the view lets a caller learn something of
    /// those columns' values, whatever it selects.
    pub fn view_row_choice(&self, view: &QualifiedName) -> Option<&ViewRowChoice> {
        self.view_row_choice.get(view)
    }

    /// `relation` as a name on `path` reaches it in this snapshot.
    fn qualify_on(&self, relation: &QualifiedName, path: &[String]) -> Option<QualifiedName> {
        if relation.schema.is_some() {
            return self
                .relations
                .contains_key(relation)
                .then(|| relation.clone());
        }
        let schema = self.find_relation(&relation.name, path)?;
        Some(QualifiedName::new(Some(&schema), &relation.name))
    }

    /// The column with this relation OID and attribute number, if known.
    pub fn column(&self, relation_oid: u32, attnum: i16) -> Option<&CatalogColumn> {
        self.columns.get(&(relation_oid, attnum))
    }

    /// A relation's columns, in order.
    pub fn columns_of(&self, relation: &QualifiedName) -> impl Iterator<Item = &CatalogColumn> {
        let found = self.relation_columns.get(relation);
        found.into_iter().flat_map(move |(oid, cols)| {
            cols.iter()
                .filter_map(move |a| self.columns.get(&(*oid, *a)))
        })
    }

    /// Whether some column anywhere is classified (when none is, only
    /// content scanning can find anything).
    pub fn any_classified(&self) -> bool {
        self.any_classified
    }

    /// Whether `relation` (a table, or a view through everything it reads)
    /// has a classified column.
    pub fn may_expose(&self, relation: &QualifiedName) -> bool {
        let mut seen = HashSet::new();
        self.may_expose_inner(relation, &mut seen)
    }

    fn may_expose_inner(
        &self,
        relation: &QualifiedName,
        seen: &mut HashSet<QualifiedName>,
    ) -> bool {
        if !seen.insert(relation.clone()) {
            return false;
        }
        if self.columns_of(relation).any(|c| c.class.is_some()) {
            return true;
        }
        let reads = self.view_reads.get(relation).into_iter().flatten();
        let kids = self.children.get(relation).into_iter().flatten();
        let next: Vec<QualifiedName> = reads.chain(kids).cloned().collect();
        next.iter().any(|r| self.may_expose_inner(r, seen))
    }

    /// Whether `relation` is a view or materialized view.
    pub fn is_view(&self, relation: &QualifiedName) -> bool {
        matches!(
            self.relations.get(relation),
            Some(RelationKind::View | RelationKind::MaterializedView)
        )
    }

    /// The OID of a relation with columns.
    pub fn relation_oid(&self, relation: &QualifiedName) -> Option<u32> {
        self.relation_columns.get(relation).map(|(oid, _)| *oid)
    }

    /// The relation with this OID.
    pub fn relation_of_oid(&self, oid: u32) -> Option<&QualifiedName> {
        self.by_oid.get(&oid)
    }

    /// Number of relations known.
    pub fn relation_count(&self) -> usize {
        self.relations.len()
    }

    /// Number of functions known (overloads counted).
    pub fn function_count(&self) -> usize {
        self.functions.values().map(Vec::len).sum()
    }

    fn overloads(&self, schema: &str, name: &str, nargs: usize, out: &mut Vec<CatalogFunction>) {
        if let Some(list) = self.functions.get(&(schema.to_owned(), name.to_owned())) {
            for f in list {
                if nargs >= f.min_args && f.max_args.is_none_or(|max| nargs <= max) {
                    out.push(f.info.clone());
                }
            }
        }
    }
}

impl FunctionCatalog for CatalogSnapshot {
    fn candidates(
        &self,
        schema: Option<&str>,
        name: &str,
        nargs: usize,
        search_path: &[String],
    ) -> Vec<CatalogFunction> {
        let mut out = Vec::new();
        match schema {
            Some(s) => self.overloads(s, name, nargs, &mut out),
            None => {
                // pg_catalog is searched first unless listed; pg_temp never
                // for functions. Every candidate on the path counts: argument
                // types are unknown here, so any of them could be chosen.
                if !search_path.iter().any(|s| s == "pg_catalog") {
                    self.overloads("pg_catalog", name, nargs, &mut out);
                }
                for s in search_path.iter().filter(|s| *s != "pg_temp") {
                    if self.schemas.contains(s.as_str()) || s == "$user" {
                        self.overloads(s, name, nargs, &mut out);
                    } else {
                        // A schema the snapshot does not know may have been
                        // created since it was taken, with anything in it:
                        // a same-named function there counts as one that
                        // writes, until the snapshot is refreshed. (`$user`
                        // names the login role's schema, which usually does
                        // not exist; one created outside Portcullis is
                        // seen at the next refresh.)
                        out.push(CatalogFunction {
                            schema: s.clone(),
                            volatility: Volatility::Volatile,
                            extension: None,
                        });
                    }
                }
            }
        }
        out
    }
}

impl RelationCatalog for CatalogSnapshot {
    fn find_relation(&self, name: &str, search_path: &[String]) -> Option<String> {
        let holders = self.by_name.get(name)?;
        search_path
            .iter()
            .find(|s| holders.iter().any(|h| h == *s))
            .cloned()
    }

    fn schema_exists(&self, schema: &str) -> bool {
        self.schemas.contains(schema)
    }

    fn relation_kind(&self, relation: &QualifiedName) -> Option<RelationKind> {
        self.relations.get(relation).copied()
    }

    fn view_relations(&self, view: &QualifiedName) -> Vec<QualifiedName> {
        self.view_reads.get(view).cloned().unwrap_or_default()
    }

    fn child_relations(&self, table: &QualifiedName) -> Vec<QualifiedName> {
        self.children.get(table).cloned().unwrap_or_default()
    }
}

/// A snapshot as one session may rely on it.
///
/// The snapshot lags behind schema changes: the loader cannot see a
/// change until its transaction commits, and a refresh waits for a burst
/// of changes to pause. A session's next statement must still be judged as
/// if the snapshot had its own changes. Relations the session created are
/// unknown to the snapshot and resolved by the search_path, which is what
/// judging them would do anyway; but a function the session created,
/// replaced or altered (`CREATE OR REPLACE ... VOLATILE`, a same-named
/// function in an earlier schema, `ALTER FUNCTION ... VOLATILE`, a DO block
/// doing any of that) may now be anything. Until a snapshot taken after
/// the change arrives, such a session sees every function outside
/// pg_catalog as one that may write: what a current snapshot could say at
/// worst.
#[derive(Debug, Clone, Copy)]
pub struct CatalogView<'a> {
    pub snapshot: &'a CatalogSnapshot,
    /// The session may have changed functions the snapshot describes.
    pub functions_unseen: bool,
}

impl FunctionCatalog for CatalogView<'_> {
    fn candidates(
        &self,
        schema: Option<&str>,
        name: &str,
        nargs: usize,
        search_path: &[String],
    ) -> Vec<CatalogFunction> {
        let mut out = self.snapshot.candidates(schema, name, nargs, search_path);
        if self.functions_unseen {
            let unseen = |schema: &str| CatalogFunction {
                schema: schema.to_owned(),
                volatility: Volatility::Volatile,
                extension: None,
            };
            match schema {
                Some("pg_catalog") => {}
                Some(s) => out.push(unseen(s)),
                None => out.extend(
                    search_path
                        .iter()
                        .filter(|s| !matches!(s.as_str(), "pg_catalog" | "pg_temp"))
                        .map(|s| unseen(s)),
                ),
            }
        }
        out
    }
}

impl RelationCatalog for CatalogView<'_> {
    fn find_relation(&self, name: &str, search_path: &[String]) -> Option<String> {
        self.snapshot.find_relation(name, search_path)
    }

    fn schema_exists(&self, schema: &str) -> bool {
        self.snapshot.schema_exists(schema)
    }

    fn relation_kind(&self, relation: &QualifiedName) -> Option<RelationKind> {
        self.snapshot.relation_kind(relation)
    }

    fn view_relations(&self, view: &QualifiedName) -> Vec<QualifiedName> {
        self.snapshot.view_relations(view)
    }

    fn child_relations(&self, table: &QualifiedName) -> Vec<QualifiedName> {
        self.snapshot.child_relations(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[&str]) -> Row {
        cols.iter()
            .map(|c| (*c != "NULL").then(|| c.to_string()))
            .collect()
    }

    pub(crate) fn sample() -> CatalogSnapshot {
        CatalogSnapshot::from_rows(&[
            vec![row(&["public"]), row(&["app"]), row(&["pg_catalog"])],
            vec![
                row(&["public", "orders", "p"]),
                row(&["public", "orders_2025", "r"]),
                row(&["public", "order_totals", "v"]),
                row(&["public", "contacts", "v"]),
                row(&["app", "orders", "r"]),
            ],
            vec![row(&["public", "orders_2025", "public", "orders"])],
            vec![
                row(&["public", "order_totals", "public", "orders"]),
                row(&["public", "contacts", "public", "orders"]),
            ],
            vec![
                row(&["public", "add_item", "2", "0", "false", "v", "NULL"]),
                row(&["public", "fmt", "2", "1", "false", "i", "NULL"]),
                row(&["pg_catalog", "lower", "1", "0", "false", "i", "NULL"]),
            ],
            vec![
                row(&["16400", "public", "orders", "1", "id", "23", "-1", "NULL"]),
                row(&[
                    "16400", "public", "orders", "2", "email", "25", "-1", "NULL",
                ]),
                row(&[
                    "16410",
                    "public",
                    "orders_2025",
                    "1",
                    "id",
                    "23",
                    "-1",
                    "NULL",
                ]),
                row(&[
                    "16410",
                    "public",
                    "orders_2025",
                    "2",
                    "email",
                    "25",
                    "-1",
                    "NULL",
                ]),
                row(&[
                    "16420",
                    "public",
                    "order_totals",
                    "1",
                    "total",
                    "1700",
                    "-1",
                    "NULL",
                ]),
                row(&[
                    "16430",
                    "app",
                    "orders",
                    "1",
                    "note",
                    "1043",
                    "104",
                    "holds a phone number",
                ]),
                row(&["16440", "public", "contacts", "1", "id", "23", "-1", "NULL"]),
                row(&[
                    "16440", "public", "contacts", "2", "reach", "25", "-1", "NULL",
                ]),
                row(&[
                    "16440", "public", "contacts", "3", "shout", "25", "-1", "NULL",
                ]),
            ],
            vec![
                row(&[
                    "public",
                    "order_totals",
                    " SELECT count(id) AS total FROM orders;",
                ]),
                row(&[
                    "public",
                    "contacts",
                    " SELECT id, email AS reach, upper(email) AS shout FROM orders;",
                ]),
            ],
        ])
        .expect("valid rows")
    }

    #[test]
    fn relations_resolve_along_the_path() {
        let c = sample();
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            c.find_relation("orders", &path(&["app", "public"])),
            Some("app".into())
        );
        assert_eq!(
            c.find_relation("orders", &path(&["public"])),
            Some("public".into())
        );
        assert_eq!(c.find_relation("nope", &path(&["public"])), None);
        let orders = QualifiedName::new(Some("public"), "orders");
        assert_eq!(
            c.relation_kind(&orders),
            Some(RelationKind::PartitionedTable)
        );
        assert_eq!(c.child_relations(&orders).len(), 1);
        assert_eq!(
            c.view_relations(&QualifiedName::new(Some("public"), "order_totals")),
            vec![orders]
        );
    }

    #[test]
    fn function_candidates_respect_argument_counts() {
        let c = sample();
        let path = vec!["public".to_string()];
        assert_eq!(c.candidates(None, "add_item", 2, &path).len(), 1);
        assert!(c.candidates(None, "add_item", 3, &path).is_empty());
        assert_eq!(c.candidates(None, "fmt", 1, &path).len(), 1, "a default");
        assert_eq!(c.candidates(None, "lower", 1, &path).len(), 1);
        assert!(c.candidates(Some("app"), "add_item", 2, &path).is_empty());
    }

    #[test]
    fn a_schema_the_snapshot_does_not_know_may_hold_anything() {
        let c = sample();
        let path = vec!["shadow".to_string(), "pg_catalog".to_string()];
        let found = c.candidates(None, "lower", 1, &path);
        assert!(
            found
                .iter()
                .any(|f| f.schema == "shadow" && f.volatility == Volatility::Volatile),
            "{found:?}"
        );
        let known = vec!["public".to_string()];
        assert!(c
            .candidates(None, "lower", 1, &known)
            .iter()
            .all(|f| f.schema != "public"));
    }

    #[test]
    fn classes_flow_to_partitions_and_views_expose_what_they_read() {
        let mut c = sample();
        c.classify(&|rel, name, comment, _| {
            if rel.name == "orders" && name == "email" && rel.schema.as_deref() == Some("public") {
                Classification::Sensitive(Class::Email, None)
            } else if comment.is_some_and(|t| t.contains("phone")) {
                Classification::Sensitive(Class::Phone, Some(Strategy::Keyed))
            } else {
                Classification::Clear
            }
        });
        assert_eq!(c.column(16400, 2).and_then(|c| c.class), Some(Class::Email));
        assert_eq!(c.column(16400, 1).and_then(|c| c.class), None);
        assert_eq!(
            c.column(16410, 2).and_then(|c| c.class),
            Some(Class::Email),
            "a partition holds what its parent holds"
        );
        assert_eq!(c.column(16430, 1).and_then(|c| c.class), Some(Class::Phone));
        assert_eq!(
            c.column(16430, 1).and_then(|c| c.strategy),
            Some(Strategy::Keyed)
        );
        assert_eq!(c.column(16430, 1).map(|c| c.typmod), Some(104));
        assert!(c.may_expose(&QualifiedName::new(Some("public"), "order_totals")));
        // View columns are traced through the view's definition.
        let email = (
            QualifiedName::new(Some("public"), "orders"),
            "email".to_owned(),
            Class::Email,
        );
        assert_eq!(
            c.column(16440, 1).map(|c| c.derived_from.clone()),
            Some(vec![])
        );
        assert_eq!(
            c.column(16440, 2).map(|c| c.derived_from.clone()),
            Some(vec![email.clone()])
        );
        assert_eq!(
            c.column(16440, 3).map(|c| c.derived_from.clone()),
            Some(vec![email])
        );
        // `email AS reach` passes email through: it is an email; `upper(email)`
        // is computed from one.
        assert_eq!(c.column(16440, 2).and_then(|c| c.class), Some(Class::Email));
        assert_eq!(c.column(16440, 3).and_then(|c| c.class), None);
        assert_eq!(
            c.view_row_choice(&QualifiedName::new(Some("public"), "contacts")),
            Some(&ViewRowChoice::default())
        );
        assert_eq!(
            c.column(16420, 1).map(|c| c.derived_from.clone()),
            Some(vec![])
        );
        assert!(c.columns.values().all(|c| !c.untraced));
        assert!(c.any_classified());
        let names: Vec<&str> = c
            .columns_of(&QualifiedName::new(Some("public"), "orders"))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["id", "email"]);
        assert_eq!(
            c.relation_of_oid(16420),
            Some(&QualifiedName::new(Some("public"), "order_totals"))
        );
    }

    #[test]
    fn malformed_results_are_errors() {
        assert!(CatalogSnapshot::from_rows(&[]).is_err());
        let bad = CatalogSnapshot::from_rows(&[
            vec![],
            vec![],
            vec![],
            vec![],
            vec![row(&["public", "f", "x", "0", "false", "v", "NULL"])],
            vec![],
            vec![],
        ]);
        assert!(bad.is_err());
    }
}
