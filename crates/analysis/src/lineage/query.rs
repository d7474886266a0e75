//! The columns queries return: SELECT (with VALUES, set operations, CTEs
//! and FROM items), and the RETURNING lists of INSERT, UPDATE, DELETE and
//! MERGE.

use pg_query::protobuf::{self as pb, node::Node as NodeEnum, Node};
use pg_query::NodeRef;
use std::rc::Rc;

use super::columns::{self, Col, Columns};
use super::expr::{column_ref_parts, expands_row, is_builtin_function};
use super::scope::{Join, Leaf, Level, Merge, Root, Row, Scopes};
use super::writes::Assigns;
use super::{Assignment, Found, Lineage, Output, OutputItem, Source, MAX_DEPTH, MAX_WORK};
use crate::literal::{self, ConstValue};
use crate::walk::{boxed_node, node_of, range_var_name, string_of, strings};

/// A recursive WITH is re-evaluated until its CTEs' columns stop growing;
/// sources only ever come from names in the text, so this is reached in a
/// few rounds. Past this many, its columns are unknown.
const MAX_FIXPOINT_ROUNDS: usize = 8;

/// Built-in set-returning functions whose result is one scalar column
/// (so `SELECT * FROM generate_series(1, 3) g` has a known width).
/// `unnest` is not one: over an array of a composite type it returns the
/// type's columns.
const SCALAR_SET_FUNCTIONS: &[&str] = &["generate_series", "generate_subscripts"];

/// The state of the lineage pass over one statement.
pub(super) struct Lineager<'a> {
    pub scopes: Scopes<'a>,
    /// CTEs visible here, innermost last.
    ctes: Vec<(&'a str, Rc<Columns>)>,
    depth: usize,
    /// Nodes visited so far, against [`MAX_WORK`].
    work: usize,
    /// The columns rows are chosen, grouped or ordered by, at any level
    /// (see [`Found::row_choice`]).
    row_choice: Lineage,
    /// The values written, at any level (see [`Found::writes`]).
    pub(super) writes: Vec<Assignment>,
}

/// What the pass finds in a top-level statement.
pub(super) fn statement(stmt: NodeRef<'_>) -> Found {
    let mut l = Lineager {
        scopes: Scopes::default(),
        ctes: Vec::new(),
        depth: 0,
        work: 0,
        row_choice: Lineage::NONE,
        writes: Vec::new(),
    };
    let mut prepared_output = None;
    let output = match stmt {
        NodeRef::SelectStmt(s) => {
            let cols = l.select(s);
            // SELECT INTO creates a table and returns no rows.
            match into_of(s) {
                Some(into) => {
                    l.created(into.rel.as_ref(), cols);
                    None
                }
                None => Some(columns::to_output(cols)),
            }
        }
        NodeRef::InsertStmt(s) => {
            let cols = l.query(stmt);
            s.returning_clause
                .as_ref()
                .map(|_| columns::to_output(cols))
        }
        NodeRef::UpdateStmt(s) => {
            let cols = l.query(stmt);
            s.returning_clause
                .as_ref()
                .map(|_| columns::to_output(cols))
        }
        NodeRef::DeleteStmt(s) => {
            let cols = l.query(stmt);
            s.returning_clause
                .as_ref()
                .map(|_| columns::to_output(cols))
        }
        NodeRef::MergeStmt(s) => {
            let cols = l.query(stmt);
            s.returning_clause
                .as_ref()
                .map(|_| columns::to_output(cols))
        }
        // Plan text (EXPLAIN ANALYZE runs its query); FETCH and EXECUTE
        // return what a cursor or prepared statement defined elsewhere
        // returns; CALL, a procedure's OUT arguments.
        NodeRef::ExplainStmt(e) => {
            l.body(boxed_node(&e.query));
            Some(Output::Unknown)
        }
        NodeRef::ExecuteStmt(_) | NodeRef::CallStmt(_) => Some(Output::Unknown),
        NodeRef::FetchStmt(f) => (!f.ismove).then_some(Output::Unknown),
        NodeRef::VariableShowStmt(s) => {
            // SHOW ALL: name, setting, description.
            let width = if s.name.eq_ignore_ascii_case("all") {
                3
            } else {
                1
            };
            Some(Output::Columns(vec![
                OutputItem::Column(Lineage::NONE);
                width
            ]))
        }
        NodeRef::CopyStmt(c) => l.copy_out(c),
        NodeRef::PrepareStmt(p) => {
            prepared_output = l.body(boxed_node(&p.query));
            None
        }
        NodeRef::DeclareCursorStmt(d) => {
            l.body(boxed_node(&d.query));
            None
        }
        NodeRef::CreateTableAsStmt(c) => {
            let cols = match boxed_node(&c.query) {
                Some(q) => l.query(q),
                None => vec![Col::Any(Lineage::Unknown)],
            };
            l.created(c.into.as_ref().and_then(|i| i.rel.as_ref()), cols);
            None
        }
        NodeRef::AlterTableStmt(a) => {
            l.alter_table(a);
            None
        }
        NodeRef::ViewStmt(v) => {
            l.body(boxed_node(&v.query));
            None
        }
        _ => None,
    };
    Found {
        output,
        prepared_output,
        row_choice: l.row_choice,
        writes: l.writes,
    }
}

fn has_into(s: &pb::SelectStmt) -> bool {
    into_of(s).is_some()
}

/// The INTO of a SELECT (in the first branch of a set operation).
fn into_of(s: &pb::SelectStmt) -> Option<&pb::IntoClause> {
    s.into_clause
        .as_deref()
        .or_else(|| s.larg.as_deref().and_then(into_of))
}

impl<'a> Lineager<'a> {
    pub(super) fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH || self.work >= MAX_WORK {
            return false;
        }
        self.depth += 1;
        self.work += 1;
        true
    }

    pub(super) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The columns any query-like node returns (a CTE's body, a sub-query).
    pub(super) fn query(&mut self, node: NodeRef<'a>) -> Columns {
        if !self.enter() {
            return vec![Col::Any(Lineage::Unknown)];
        }
        let cols = match node {
            NodeRef::SelectStmt(s) => self.select(s),
            NodeRef::InsertStmt(s) => {
                let conflict = s.on_conflict_clause.as_deref();
                self.modification(Modification {
                    with: s.with_clause.as_ref(),
                    target: s.relation.as_ref(),
                    from: &[],
                    source: boxed_node(&s.select_stmt),
                    chooses: conflict
                        .and_then(|c| boxed_node(&c.where_clause))
                        .into_iter()
                        .collect(),
                    returning: s.returning_clause.as_ref(),
                    assigns: Assigns::insert(s),
                })
            }
            NodeRef::UpdateStmt(s) => self.modification(Modification {
                with: s.with_clause.as_ref(),
                target: s.relation.as_ref(),
                from: &s.from_clause,
                source: None,
                chooses: boxed_node(&s.where_clause).into_iter().collect(),
                returning: s.returning_clause.as_ref(),
                assigns: Assigns::Update(&s.target_list),
            }),
            NodeRef::DeleteStmt(s) => self.modification(Modification {
                with: s.with_clause.as_ref(),
                target: s.relation.as_ref(),
                from: &s.using_clause,
                source: None,
                chooses: boxed_node(&s.where_clause).into_iter().collect(),
                returning: s.returning_clause.as_ref(),
                assigns: Assigns::Nothing,
            }),
            NodeRef::MergeStmt(s) => {
                let when = s.merge_when_clauses.iter().filter_map(|w| match &w.node {
                    Some(NodeEnum::MergeWhenClause(w)) => boxed_node(&w.condition),
                    _ => None,
                });
                self.modification(Modification {
                    with: s.with_clause.as_ref(),
                    target: s.relation.as_ref(),
                    from: s
                        .source_relation
                        .as_deref()
                        .map(std::slice::from_ref)
                        .unwrap_or_default(),
                    source: None,
                    chooses: boxed_node(&s.join_condition)
                        .into_iter()
                        .chain(when)
                        .collect(),
                    returning: s.returning_clause.as_ref(),
                    assigns: Assigns::Merge(&s.merge_when_clauses),
                })
            }
            _ => vec![Col::Any(Lineage::Unknown)],
        };
        self.leave();
        cols
    }

    /// The columns a SELECT (or VALUES, or set operation) returns.
    pub(super) fn select(&mut self, s: &'a pb::SelectStmt) -> Columns {
        if !self.enter() {
            return vec![Col::Any(Lineage::Unknown)];
        }
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w);
        }
        let plain = matches!(
            pb::SetOperation::try_from(s.op),
            Ok(pb::SetOperation::SetopNone | pb::SetOperation::Undefined) | Err(_)
        );
        let cols = if !plain {
            let left = match s.larg.as_deref() {
                Some(l) => self.select(l),
                None => vec![Col::Any(Lineage::Unknown)],
            };
            let right = match s.rarg.as_deref() {
                Some(r) => self.select(r),
                None => vec![Col::Any(Lineage::Unknown)],
            };
            let cols = columns::union(left, right);
            // ORDER BY and LIMIT of the whole set operation, over its
            // output columns only.
            self.scopes.levels.push(Level::default());
            self.choose_by_output(&s.sort_clause, &cols);
            self.choose_node(boxed_node(&s.limit_count));
            self.choose_node(boxed_node(&s.limit_offset));
            self.scopes.levels.pop();
            cols
        } else if !s.values_lists.is_empty() {
            self.values(&s.values_lists)
        } else {
            self.scopes.levels.push(Level::new(&s.window_clause));
            for item in s.from_clause.iter().filter_map(node_of) {
                let root = self.add_from_item(item);
                if let Some(level) = self.scopes.levels.last_mut() {
                    level.roots.push(root);
                }
            }
            let cols = self.targets(&s.target_list);
            self.choose_rows(s, &cols);
            self.scopes.levels.pop();
            cols
        };
        self.ctes.truncate(ctes);
        self.leave();
        cols
    }

    /// `VALUES (...), (...)`: columns `column1`, `column2`... each the union
    /// of its rows.
    fn values(&mut self, rows: &'a [Node]) -> Columns {
        let mut cols: Vec<Lineage> = Vec::new();
        // `x.*` in a VALUES row stands for as many columns as x has: the
        // positions after it are the catalog's knowledge.
        let mut expanded = false;
        for row in rows {
            let Some(NodeEnum::List(items)) = &row.node else {
                continue;
            };
            for (i, item) in items.items.iter().filter_map(node_of).enumerate() {
                expanded |= expands_row(item);
                let l = self.expr(item);
                match cols.get_mut(i) {
                    Some(c) => c.union(&l),
                    None => cols.push(l),
                }
            }
        }
        if expanded {
            let mut all = Lineage::NONE;
            for c in &cols {
                all.union(c);
            }
            return vec![Col::Any(all.computed())];
        }
        cols.into_iter()
            .enumerate()
            .map(|(i, l)| Col::named(Some(format!("column{}", i + 1)), l))
            .collect()
    }

    /// A target list (or RETURNING list), with `*` expanded.
    fn targets(&mut self, targets: &'a [Node]) -> Columns {
        let mut cols = Vec::with_capacity(targets.len());
        for t in targets {
            let Some(NodeEnum::ResTarget(rt)) = &t.node else {
                continue;
            };
            let Some(val) = boxed_node(&rt.val) else {
                continue;
            };
            if let NodeRef::AIndirection(_) = val {
                if expands_row(val) {
                    // `(x).*`: as many columns as x's type has.
                    let lineage = self.expr(val);
                    cols.push(Col::Any(lineage));
                    continue;
                }
            }
            if let NodeRef::ColumnRef(c) = val {
                let (parts, star) = column_ref_parts(c);
                if star {
                    cols.extend(if parts.is_empty() {
                        self.scopes.expand_all()
                    } else {
                        self.scopes.expand_qualified(&parts)
                    });
                    continue;
                }
            }
            let name = if rt.name.is_empty() {
                figure_name(val)
            } else {
                Some(rt.name.clone())
            };
            let lineage = self.expr(val);
            cols.push(Col::named(name, lineage));
        }
        cols
    }

    /// The CTEs of a WITH, made visible for what follows.
    fn with_clause(&mut self, w: &'a pb::WithClause) {
        let ctes: Vec<&'a pb::CommonTableExpr> = w
            .ctes
            .iter()
            .filter_map(|c| match &c.node {
                Some(NodeEnum::CommonTableExpr(cte)) => Some(&**cte),
                _ => None,
            })
            .collect();
        if !w.recursive {
            for cte in ctes {
                // Later CTEs of the same WITH may refer to earlier ones.
                let cols = self.cte_body(cte);
                self.ctes.push((&cte.ctename, Rc::new(cols)));
            }
            return;
        }
        // Every name is visible in every body, its own included: start
        // from nothing and recompute until nothing changes.
        let first = self.ctes.len();
        for cte in &ctes {
            self.ctes
                .push((&cte.ctename, Rc::new(vec![Col::Any(Lineage::NONE)])));
        }
        let writes = self.writes.len();
        for _ in 0..MAX_FIXPOINT_ROUNDS {
            let mut changed = false;
            for (i, cte) in ctes.iter().enumerate() {
                let cols = self.cte_body(cte);
                if let Some(slot) = self.ctes.get_mut(first + i) {
                    if *slot.1 != cols {
                        slot.1 = Rc::new(cols);
                        changed = true;
                    }
                }
            }
            if !changed {
                return;
            }
        }
        for slot in self.ctes.iter_mut().skip(first) {
            slot.1 = Rc::new(vec![Col::Any(Lineage::Unknown)]);
        }
        // Written from columns that were still growing.
        for w in self.writes.iter_mut().skip(writes) {
            w.values = Output::Unknown;
        }
    }

    fn cte_body(&mut self, cte: &'a pb::CommonTableExpr) -> Columns {
        let cols = match boxed_node(&cte.ctequery) {
            Some(q) => self.query(q),
            None => vec![Col::Any(Lineage::Unknown)],
        };
        let aliases: Vec<&str> = strings(&cte.aliascolnames).collect();
        columns::rename(cols, &aliases)
    }

    fn cte(&self, name: &str) -> Option<Rc<Columns>> {
        self.ctes
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, cols)| Rc::clone(cols))
    }

    /// One FROM item: adds what it names to the innermost level and returns
    /// its entry for `*`.
    fn add_from_item(&mut self, node: NodeRef<'a>) -> Root {
        match node {
            NodeRef::RangeVar(rv) => {
                let alias = rv.alias.as_ref();
                let aliases: Vec<&str> = alias
                    .map(|a| strings(&a.colnames).collect())
                    .unwrap_or_default();
                let cte = rv
                    .schemaname
                    .is_empty()
                    .then(|| self.cte(&rv.relname))
                    .flatten();
                let row = match cte {
                    Some(cols) if aliases.is_empty() => Row::Derived(cols),
                    Some(cols) => Row::Derived(Rc::new(columns::rename(cols.to_vec(), &aliases))),
                    None => Row::Relation {
                        relation: range_var_name(rv),
                        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                    },
                };
                self.leaf(Leaf {
                    name: alias.map_or(rv.relname.as_str(), |a| a.aliasname.as_str()),
                    schema: if alias.is_none() && !rv.schemaname.is_empty() {
                        Some(&rv.schemaname)
                    } else {
                        None
                    },
                    row,
                    qualified_only: false,
                })
            }
            NodeRef::RangeSubselect(r) => {
                let cols = self.beside(r.lateral, |l| match boxed_node(&r.subquery) {
                    Some(q) => l.query(q),
                    None => vec![Col::Any(Lineage::Unknown)],
                });
                self.derived(r.alias.as_ref(), "", cols)
            }
            NodeRef::RangeFunction(r) => {
                // Functions in FROM see the items before them, LATERAL or
                // not (PostgreSQL's rule).
                let cols = self.beside(true, |l| l.functions(r));
                let name = r
                    .alias
                    .is_none()
                    .then(|| function_name(r))
                    .flatten()
                    .unwrap_or("");
                self.derived(r.alias.as_ref(), name, cols)
            }
            NodeRef::JoinExpr(j) => self.join(j),
            NodeRef::RangeTableSample(r) => match boxed_node(&r.relation) {
                Some(rel) => self.add_from_item(rel),
                None => self.derived(None, "", vec![Col::Any(Lineage::Unknown)]),
            },
            // XMLTABLE, JSON_TABLE: every column may come from any of their
            // expressions.
            NodeRef::RangeTableFunc(r) => {
                let lineage = self.children(node).computed();
                self.derived(r.alias.as_ref(), "", vec![Col::Any(lineage)])
            }
            NodeRef::JsonTable(t) => {
                let lineage = self.children(node).computed();
                self.derived(t.alias.as_ref(), "", vec![Col::Any(lineage)])
            }
            _ => self.derived(None, "", vec![Col::Any(Lineage::Unknown)]),
        }
    }

    pub(super) fn leaf(&mut self, leaf: Leaf<'a>) -> Root {
        match self.scopes.levels.last_mut() {
            Some(level) => level.push_leaf(leaf),
            None => Root::Leaf(usize::MAX),
        }
    }

    /// A derived row named by its alias (renaming its columns) or `name`.
    fn derived(&mut self, alias: Option<&'a pb::Alias>, name: &'a str, cols: Columns) -> Root {
        let aliases: Vec<&str> = alias
            .map(|a| strings(&a.colnames).collect())
            .unwrap_or_default();
        self.leaf(Leaf {
            name: alias.map_or(name, |a| a.aliasname.as_str()),
            schema: None,
            row: Row::Derived(Rc::new(columns::rename(cols, &aliases))),
            qualified_only: false,
        })
    }

    /// Evaluates a sub-query or function of FROM. Without LATERAL it cannot
    /// see the other items of its own FROM list, only enclosing levels.
    fn beside(&mut self, lateral: bool, f: impl FnOnce(&mut Self) -> Columns) -> Columns {
        if lateral {
            return f(self);
        }
        let current = self.scopes.levels.pop();
        let cols = f(self);
        if let Some(level) = current {
            self.scopes.levels.push(level);
        }
        cols
    }

    fn join(&mut self, j: &'a pb::JoinExpr) -> Root {
        let left = match boxed_node(&j.larg) {
            Some(l) => self.add_from_item(l),
            None => self.derived(None, "", vec![Col::Any(Lineage::Unknown)]),
        };
        let right = match boxed_node(&j.rarg) {
            Some(r) => self.add_from_item(r),
            None => self.derived(None, "", vec![Col::Any(Lineage::Unknown)]),
        };
        let using: Vec<String> = strings(&j.using_clause).map(str::to_owned).collect();
        let merge = if j.is_natural {
            Merge::Natural
        } else if using.is_empty() {
            Merge::None
        } else {
            Merge::Using(using.clone())
        };
        let root = Root::Join(Box::new(Join { left, right, merge }));
        // What the join matches rows on chooses them: ON, the USING
        // columns of both sides, and for NATURAL every column of both
        // (which are common is the catalog's knowledge).
        self.choose_node(boxed_node(&j.quals));
        for name in &using {
            let l = self.scopes.unqualified(name);
            self.choose(&l);
        }
        if j.is_natural {
            let l = self
                .scopes
                .levels
                .last()
                .map_or(Lineage::Unknown, |level| level.whole(&root));
            self.choose(&l);
        }
        let Some(level) = self.scopes.levels.last_mut() else {
            return root;
        };
        if let Some(alias) = &j.join_using_alias {
            // `USING (id) AS x`: x.id is the merged column.
            let merged: Columns = level
                .expand(&root)
                .into_iter()
                .filter(|c| matches!(c, Col::One { name: Some(n), .. } if using.contains(n)))
                .collect();
            level.push_leaf(Leaf {
                name: &alias.aliasname,
                schema: None,
                row: Row::Derived(Rc::new(merged)),
                qualified_only: true,
            });
        }
        if let Some(alias) = &j.alias {
            // `(a JOIN b ...) AS j`: j.col and j.* see the join's columns.
            let aliases: Vec<&str> = strings(&alias.colnames).collect();
            let cols = columns::rename(level.expand(&root), &aliases);
            level.push_leaf(Leaf {
                name: &alias.aliasname,
                schema: None,
                row: Row::Derived(Rc::new(cols)),
                qualified_only: true,
            });
        }
        root
    }

    /// The columns of a function in FROM (or `ROWS FROM (...)`).
    fn functions(&mut self, r: &'a pb::RangeFunction) -> Columns {
        let mut cols = Vec::new();
        let mut unknown_width = false;
        let mut all = Lineage::NONE;
        for f in &r.functions {
            let Some(NodeEnum::List(pair)) = &f.node else {
                continue;
            };
            let call = pair.items.first().and_then(node_of);
            let lineage = match call {
                Some(NodeRef::FuncCall(fc)) => {
                    let parts: Vec<&str> = strings(&fc.funcname).collect();
                    if is_builtin_function(&parts) {
                        self.exprs(&fc.args).computed()
                    } else {
                        Lineage::Unknown
                    }
                }
                Some(other) => self.expr(other),
                None => Lineage::Unknown,
            };
            all.union(&lineage);
            // A column definition list (`AS x(a int, b text)`) gives the
            // width and names of a function returning `record`.
            let deflist = match pair.items.get(1).and_then(|n| n.node.as_ref()) {
                Some(NodeEnum::List(l)) if !l.items.is_empty() => &l.items,
                _ => &r.coldeflist,
            };
            if !deflist.is_empty() {
                for d in deflist {
                    let name = match &d.node {
                        Some(NodeEnum::ColumnDef(c)) => Some(c.colname.clone()),
                        _ => None,
                    };
                    cols.push(Col::named(name, lineage.clone()));
                }
            } else if is_scalar_set_function(call) {
                // Named after the function; an alias renames it.
                let name = call.and_then(|c| match c {
                    NodeRef::FuncCall(fc) => fc.funcname.last().and_then(string_of),
                    _ => None,
                });
                let name = match (&r.alias, r.functions.len()) {
                    (Some(a), 1) => Some(a.aliasname.as_str()),
                    _ => name,
                };
                cols.push(Col::named(name.map(str::to_owned), lineage));
            } else {
                unknown_width = true;
            }
        }
        if unknown_width {
            return vec![Col::Any(all)];
        }
        if r.ordinality {
            cols.push(Col::named(Some("ordinality".to_owned()), Lineage::NONE));
        }
        cols
    }

    /// An INSERT / UPDATE / DELETE / MERGE: what it chooses rows by, and
    /// its RETURNING list, over the target and the FROM / USING / source
    /// items.
    fn modification(&mut self, m: Modification<'a>) -> Columns {
        let Some(target) = m.target else {
            return vec![Col::Any(Lineage::Unknown)];
        };
        let ctes = self.ctes.len();
        if let Some(w) = m.with {
            self.with_clause(w);
        }
        // INSERT's query sees the CTEs but not the target.
        let source = m.source.map(|q| self.query(q));
        self.scopes.levels.push(Level::default());
        let relation = range_var_name(target);
        let alias = target.alias.as_ref();
        let root = self.leaf(Leaf {
            name: alias.map_or(target.relname.as_str(), |a| a.aliasname.as_str()),
            schema: if alias.is_none() && !target.schemaname.is_empty() {
                Some(&target.schemaname)
            } else {
                None
            },
            row: Row::Relation {
                relation: relation.clone(),
                aliases: Vec::new(),
            },
            qualified_only: false,
        });
        if let Some(level) = self.scopes.levels.last_mut() {
            level.roots.push(root);
        }
        for item in m.from.iter().filter_map(node_of) {
            let root = self.add_from_item(item);
            if let Some(level) = self.scopes.levels.last_mut() {
                level.roots.push(root);
            }
        }
        // OLD and NEW (and PG 18's `RETURNING WITH (OLD AS o, NEW AS n)`)
        // are the target's rows before and after; `excluded` (ON
        // CONFLICT) is a row of it.
        let renamed = m.returning.into_iter().flat_map(|r| {
            r.options.iter().filter_map(|o| match &o.node {
                Some(NodeEnum::ReturningOption(o)) => Some(o.value.as_str()),
                _ => None,
            })
        });
        let excluded = Self::excluded_row(&relation, &m.assigns, source.as_ref());
        for name in ["old", "new", "excluded"].into_iter().chain(renamed) {
            let row = match &excluded {
                Some(row) if name == "excluded" => row.clone(),
                _ => Row::Relation {
                    relation: relation.clone(),
                    aliases: Vec::new(),
                },
            };
            self.leaf(Leaf {
                name,
                schema: None,
                row,
                qualified_only: true,
            });
        }
        for node in m.chooses {
            self.choose_node(Some(node));
        }
        self.assign(&relation, &m.assigns, source);
        let cols = match m.returning {
            Some(r) => self.targets(&r.exprs),
            None => Vec::new(), // returns no rows
        };
        self.scopes.levels.pop();
        self.ctes.truncate(ctes);
        cols
    }

    /// The body of PREPARE, EXPLAIN, DECLARE CURSOR, CREATE TABLE AS or
    /// CREATE VIEW: what it chooses rows by, and what it returns when run.
    fn body(&mut self, query: Option<NodeRef<'a>>) -> Option<Output> {
        let query = query?;
        let cols = self.query(query);
        let returns = match query {
            NodeRef::SelectStmt(s) => !has_into(s),
            NodeRef::InsertStmt(s) => s.returning_clause.is_some(),
            NodeRef::UpdateStmt(s) => s.returning_clause.is_some(),
            NodeRef::DeleteStmt(s) => s.returning_clause.is_some(),
            NodeRef::MergeStmt(s) => s.returning_clause.is_some(),
            _ => return Some(Output::Unknown),
        };
        returns.then(|| columns::to_output(cols))
    }

    /// Counts what `lineage` reads as choosing rows.
    pub(super) fn choose(&mut self, lineage: &Lineage) {
        self.row_choice.union(lineage);
    }

    /// Counts the columns of an expression that chooses rows (a WHERE, an
    /// ON, a LIMIT).
    fn choose_node(&mut self, node: Option<NodeRef<'a>>) {
        if let Some(node) = node {
            let l = self.expr(node);
            self.choose(&l);
        }
    }

    /// The clauses of one SELECT level that choose, group or order its
    /// rows, `cols` being its output columns.
    fn choose_rows(&mut self, s: &'a pb::SelectStmt, cols: &Columns) {
        self.choose_node(boxed_node(&s.where_clause));
        self.choose_node(boxed_node(&s.having_clause));
        self.choose_by_output(&s.group_clause, cols);
        self.choose_by_output(&s.sort_clause, cols);
        // DISTINCT ON (...); a plain DISTINCT is one empty item.
        self.choose_by_output(&s.distinct_clause, cols);
        for w in s.window_clause.iter().filter_map(node_of) {
            let l = self.children(w);
            self.choose(&l);
        }
        self.choose_node(boxed_node(&s.limit_count));
        self.choose_node(boxed_node(&s.limit_offset));
    }

    /// ORDER BY, GROUP BY and DISTINCT ON items, which may name an output
    /// column by position (`ORDER BY 2`) or by its name (`ORDER BY e`
    /// for `email AS e`) as well as compute over the input columns.
    fn choose_by_output(&mut self, items: &'a [Node], cols: &Columns) {
        for item in items.iter().filter_map(node_of) {
            let l = self.by_output(item, cols);
            self.choose(&l);
        }
    }

    fn by_output(&mut self, node: NodeRef<'a>, cols: &Columns) -> Lineage {
        match node {
            NodeRef::SortBy(s) => match boxed_node(&s.node) {
                Some(inner) => self.by_output(inner, cols),
                None => Lineage::NONE,
            },
            NodeRef::GroupingSet(g) => {
                let mut all = Lineage::NONE;
                for item in g.content.iter().filter_map(node_of) {
                    let l = self.by_output(item, cols);
                    all.union(&l);
                }
                all
            }
            NodeRef::AConst(c) => output_position(c, cols),
            NodeRef::ColumnRef(c) => {
                let (parts, star) = column_ref_parts(c);
                let named = match (parts.as_slice(), star) {
                    ([name], false) => columns::lookup(cols, name),
                    _ => None,
                };
                let input = self.expr(node);
                match named {
                    // An output column by that name: PostgreSQL takes it
                    // (ORDER BY) or the input column (GROUP BY); both count.
                    Some(found) => {
                        let mut l = found.lineage;
                        if !(found.definite && input.is_unknown()) {
                            l.union(&input);
                        }
                        l
                    }
                    None => input,
                }
            }
            other => self.expr(other),
        }
    }

    /// COPY ... TO STDOUT sends rows to the client: the query's columns,
    /// or the table's. To a file or program: nothing comes back.
    fn copy_out(&mut self, c: &'a pb::CopyStmt) -> Option<Output> {
        if c.is_from || c.is_program || !c.filename.is_empty() {
            return None;
        }
        if let Some(q) = boxed_node(&c.query) {
            return Some(columns::to_output(self.query(q)));
        }
        let relation = range_var_name(c.relation.as_ref()?);
        let names: Vec<&str> = strings(&c.attlist).collect();
        if names.is_empty() {
            return Some(columns::to_output(vec![Col::all_of(relation)]));
        }
        let items = names
            .into_iter()
            .map(|n| {
                OutputItem::Column(Lineage::of(Source::Column {
                    relation: relation.clone(),
                    column: n.to_owned(),
                }))
            })
            .collect();
        Some(Output::Columns(items))
    }
}

fn is_scalar_set_function(call: Option<NodeRef<'_>>) -> bool {
    let Some(NodeRef::FuncCall(fc)) = call else {
        return false;
    };
    let parts: Vec<&str> = strings(&fc.funcname).collect();
    is_builtin_function(&parts)
        && parts
            .last()
            .is_some_and(|n| SCALAR_SET_FUNCTIONS.contains(n))
}

/// The name of an unaliased function in FROM: the first function's.
fn function_name(r: &pb::RangeFunction) -> Option<&str> {
    r.functions.first().and_then(|f| match &f.node {
        Some(NodeEnum::List(l)) => l.items.first().and_then(|fc| match &fc.node {
            Some(NodeEnum::FuncCall(fc)) => fc.funcname.last().and_then(string_of),
            _ => None,
        }),
        _ => None,
    })
}

/// The name PostgreSQL gives an unaliased output column, when it is
/// certain here (PostgreSQL's FigureColname): a column reference's last
/// name, a function's name, through casts. `None` means "not certain".
fn figure_name(node: NodeRef<'_>) -> Option<String> {
    match node {
        NodeRef::ColumnRef(c) => match c.fields.last().map(|f| &f.node) {
            Some(Some(NodeEnum::String(s))) => Some(s.sval.clone()),
            _ => None,
        },
        NodeRef::FuncCall(f) => f.funcname.last().and_then(string_of).map(str::to_owned),
        // `x::t` is named after x when x has a name, else after t.
        NodeRef::TypeCast(t) => boxed_node(&t.arg).and_then(figure_name),
        _ => None,
    }
}

/// An INSERT / UPDATE / DELETE / MERGE, as [`Lineager::modification`]
/// needs it.
struct Modification<'a> {
    with: Option<&'a pb::WithClause>,
    target: Option<&'a pb::RangeVar>,
    /// FROM (UPDATE), USING (DELETE), the source (MERGE).
    from: &'a [Node],
    /// INSERT's query.
    source: Option<NodeRef<'a>>,
    /// What chooses the rows changed: WHERE, MERGE's ON and WHEN
    /// conditions, ON CONFLICT's WHERE.
    chooses: Vec<NodeRef<'a>>,
    returning: Option<&'a pb::ReturningClause>,
    /// What it writes.
    assigns: Assigns<'a>,
}

/// The output column an integer in ORDER BY / GROUP BY / DISTINCT ON
/// stands for (reading the constant: the analysis then stands for this
/// text only). Past a `*` of unknown width, any of them.
fn output_position(c: &pb::AConst, cols: &Columns) -> Lineage {
    let Some(ConstValue::Ival(i)) = literal::value(c) else {
        return Lineage::NONE; // a string or NULL: a constant sort key
    };
    let Some(index) = usize::try_from(i.ival).ok().and_then(|p| p.checked_sub(1)) else {
        return Lineage::NONE; // the server refuses it
    };
    for (at, col) in cols.iter().enumerate() {
        match col {
            Col::One { lineage, .. } if at == index => return lineage.clone(),
            Col::One { .. } => {}
            Col::AllOf { .. } | Col::Any(_) => return columns::whole(cols),
        }
    }
    Lineage::NONE
}
