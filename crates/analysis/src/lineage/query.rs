//! The columns queries return: SELECT (with VALUES, set operations, CTEs
//! and FROM items), and the RETURNING lists of INSERT, UPDATE, DELETE and
//! MERGE.

use pg_query::protobuf::{self as pb, node::Node as NodeEnum, Node};
use pg_query::NodeRef;
use std::rc::Rc;

use super::columns::{self, Col, Columns};
use super::expr::{column_ref_parts, is_builtin_function};
use super::scope::{Join, Leaf, Level, Merge, Root, Row, Scopes};
use super::{Lineage, Output, OutputItem, Source, MAX_DEPTH, MAX_WORK};
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
}

/// The output of a top-level statement; `None` when it returns no rows.
pub(super) fn statement_output(stmt: NodeRef<'_>) -> Option<Output> {
    let mut l = Lineager {
        scopes: Scopes::default(),
        ctes: Vec::new(),
        depth: 0,
        work: 0,
    };
    match stmt {
        NodeRef::SelectStmt(s) => {
            if has_into(s) {
                return None; // SELECT INTO creates a table and returns no rows
            }
            Some(columns::to_output(l.select(s)))
        }
        NodeRef::InsertStmt(s) => {
            s.returning_clause.as_ref()?;
            Some(columns::to_output(l.query(stmt)))
        }
        NodeRef::UpdateStmt(s) => {
            s.returning_clause.as_ref()?;
            Some(columns::to_output(l.query(stmt)))
        }
        NodeRef::DeleteStmt(s) => {
            s.returning_clause.as_ref()?;
            Some(columns::to_output(l.query(stmt)))
        }
        NodeRef::MergeStmt(s) => {
            s.returning_clause.as_ref()?;
            Some(columns::to_output(l.query(stmt)))
        }
        // Plan text; FETCH and EXECUTE return what a cursor or prepared
        // statement defined elsewhere returns; CALL, a procedure's OUT
        // arguments.
        NodeRef::ExplainStmt(_) | NodeRef::ExecuteStmt(_) | NodeRef::CallStmt(_) => {
            Some(Output::Unknown)
        }
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
        _ => None,
    }
}

fn has_into(s: &pb::SelectStmt) -> bool {
    s.into_clause.is_some() || s.larg.as_deref().is_some_and(has_into)
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
    fn query(&mut self, node: NodeRef<'a>) -> Columns {
        if !self.enter() {
            return vec![Col::Any(Lineage::Unknown)];
        }
        let cols = match node {
            NodeRef::SelectStmt(s) => self.select(s),
            NodeRef::InsertStmt(s) => self.modification(
                s.with_clause.as_ref(),
                s.relation.as_ref(),
                &[],
                s.returning_clause.as_ref(),
            ),
            NodeRef::UpdateStmt(s) => self.modification(
                s.with_clause.as_ref(),
                s.relation.as_ref(),
                &s.from_clause,
                s.returning_clause.as_ref(),
            ),
            NodeRef::DeleteStmt(s) => self.modification(
                s.with_clause.as_ref(),
                s.relation.as_ref(),
                &s.using_clause,
                s.returning_clause.as_ref(),
            ),
            NodeRef::MergeStmt(s) => self.modification(
                s.with_clause.as_ref(),
                s.relation.as_ref(),
                s.source_relation
                    .as_deref()
                    .map(std::slice::from_ref)
                    .unwrap_or_default(),
                s.returning_clause.as_ref(),
            ),
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
            columns::union(left, right)
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
        for row in rows {
            let Some(NodeEnum::List(items)) = &row.node else {
                continue;
            };
            for (i, item) in items.items.iter().filter_map(node_of).enumerate() {
                let l = self.expr(item);
                match cols.get_mut(i) {
                    Some(c) => c.union(&l),
                    None => cols.push(l),
                }
            }
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
                let lineage = self.children(node);
                self.derived(r.alias.as_ref(), "", vec![Col::Any(lineage)])
            }
            NodeRef::JsonTable(t) => {
                let lineage = self.children(node);
                self.derived(t.alias.as_ref(), "", vec![Col::Any(lineage)])
            }
            _ => self.derived(None, "", vec![Col::Any(Lineage::Unknown)]),
        }
    }

    fn leaf(&mut self, leaf: Leaf<'a>) -> Root {
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
                        self.exprs(&fc.args)
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

    /// The RETURNING list of INSERT / UPDATE / DELETE / MERGE: over the
    /// target, and the FROM / USING / source items.
    fn modification(
        &mut self,
        with: Option<&'a pb::WithClause>,
        target: Option<&'a pb::RangeVar>,
        from: &'a [Node],
        returning: Option<&'a pb::ReturningClause>,
    ) -> Columns {
        let Some(returning) = returning else {
            return Vec::new(); // returns no rows
        };
        let Some(target) = target else {
            return vec![Col::Any(Lineage::Unknown)];
        };
        let ctes = self.ctes.len();
        if let Some(w) = with {
            self.with_clause(w);
        }
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
        for item in from.iter().filter_map(node_of) {
            let root = self.add_from_item(item);
            if let Some(level) = self.scopes.levels.last_mut() {
                level.roots.push(root);
            }
        }
        // OLD and NEW (and PG 18's `RETURNING WITH (OLD AS o, NEW AS n)`)
        // are the target's rows before and after.
        let renamed = returning.options.iter().filter_map(|o| match &o.node {
            Some(NodeEnum::ReturningOption(o)) => Some(o.value.as_str()),
            _ => None,
        });
        for name in ["old", "new"].into_iter().chain(renamed) {
            self.leaf(Leaf {
                name,
                schema: None,
                row: Row::Relation {
                    relation: relation.clone(),
                    aliases: Vec::new(),
                },
                qualified_only: true,
            });
        }
        let cols = self.targets(&returning.exprs);
        self.scopes.levels.pop();
        self.ctes.truncate(ctes);
        cols
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
