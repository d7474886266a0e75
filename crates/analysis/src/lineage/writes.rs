//! The values statements write: which columns of which relation receive
//! values computed from what (see the module documentation of [`super`],
//! *Written values*). Each written value is read from the parse tree in
//! the scope the server evaluates it in, with the same rules as an output
//! column.

use std::rc::Rc;

use pg_query::protobuf::{self as pb, node::Node as NodeEnum, Node};
use pg_query::NodeRef;

use super::columns::{self, Col, Columns};
use super::expr::expands_row;
use super::query::Lineager;
use super::scope::{Leaf, Level, Row};
use super::{AssignedColumns, Assignment, Lineage, Output, OutputItem, Source};
use crate::facts::QualifiedName;
use crate::walk::{boxed_node, node_of, range_var_name};

/// What an INSERT, UPDATE or MERGE assigns, as the tree has it.
pub(super) enum Assigns<'a> {
    /// DELETE: nothing.
    Nothing,
    Insert {
        /// The column list (ResTargets), empty when there is none.
        columns: &'a [Node],
        /// ON CONFLICT DO UPDATE's SET list.
        conflict_set: Option<&'a [Node]>,
    },
    /// UPDATE's SET list.
    Update(&'a [Node]),
    /// MERGE's WHEN clauses.
    Merge(&'a [Node]),
}

impl<'a> Assigns<'a> {
    pub(super) fn insert(s: &'a pb::InsertStmt) -> Self {
        let conflict_set = s.on_conflict_clause.as_deref().and_then(|c| {
            (c.action == pb::OnConflictAction::OnconflictUpdate as i32)
                .then_some(c.target_list.as_slice())
        });
        Assigns::Insert {
            columns: &s.cols,
            conflict_set,
        }
    }
}

/// One `SET (a, b, ...) = source` group's values, by position.
enum Parts {
    Each(Vec<Lineage>),
    /// Positions cannot be told apart: every column may get any of it.
    All(Lineage),
}

impl Parts {
    fn get(&self, colno: i32) -> Lineage {
        match self {
            Parts::Each(each) => usize::try_from(colno)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| each.get(i).cloned())
                .unwrap_or(Lineage::Unknown),
            Parts::All(l) => l.clone(),
        }
    }
}

impl<'a> Lineager<'a> {
    /// `EXCLUDED` of an INSERT's ON CONFLICT DO UPDATE: the row proposed
    /// for insertion. A listed column is the value inserted into it; any
    /// other, its default. Where values cannot be matched to columns, each
    /// column may be any of them. The target's own column is added in
    /// every case: never fewer sources than the row may hold.
    pub(super) fn excluded_row(
        relation: &QualifiedName,
        assigns: &Assigns<'a>,
        source: Option<&Columns>,
    ) -> Option<Row> {
        let Assigns::Insert {
            columns: listed,
            conflict_set: Some(_),
        } = assigns
        else {
            return None;
        };
        let names = target_names(listed);
        let own = |n: &str| {
            Lineage::of(Source::Column {
                relation: relation.clone(),
                column: n.to_owned(),
            })
        };
        let matched = source.filter(|cols| {
            !names.is_empty()
                && cols.len() == names.len()
                && cols.iter().all(|c| matches!(c, Col::One { .. }))
        });
        let mut cols: Columns = match (matched, source) {
            (Some(values), _) => names
                .iter()
                .zip(values)
                .map(|(n, c)| {
                    let mut l = match c {
                        Col::One { lineage, .. } => lineage.clone(),
                        _ => Lineage::Unknown,
                    };
                    l.union(&own(n));
                    Col::named(Some(n.clone()), l)
                })
                .collect(),
            (None, Some(values)) => vec![Col::Any(columns::whole(values))],
            (None, None) => Vec::new(), // DEFAULT VALUES
        };
        cols.push(Col::AllOf {
            relation: relation.clone(),
            except: Vec::new(),
            renamed: false,
        });
        Some(Row::Derived(Rc::new(cols)))
    }

    /// Records what an INSERT, UPDATE or MERGE on `relation` writes, in
    /// the scope of its target and FROM / USING items; `source` is the
    /// columns of an INSERT's query (`None`: DEFAULT VALUES).
    pub(super) fn assign(
        &mut self,
        relation: &QualifiedName,
        assigns: &Assigns<'a>,
        source: Option<Columns>,
    ) {
        match assigns {
            Assigns::Nothing => {}
            Assigns::Insert {
                columns: listed,
                conflict_set,
            } => {
                let names = target_names(listed);
                let (columns, values) = match source {
                    None => (AssignedColumns::Named(names), Output::Columns(Vec::new())),
                    Some(cols) if names.is_empty() => {
                        (AssignedColumns::InOrder, columns::to_output(cols))
                    }
                    Some(cols) => (AssignedColumns::Named(names), columns::to_output(cols)),
                };
                self.write(relation, columns, values);
                if let Some(set) = conflict_set {
                    let (names, values) = self.set_clause(set);
                    self.write(relation, AssignedColumns::Named(names), values);
                }
            }
            Assigns::Update(set) => {
                let (names, values) = self.set_clause(set);
                self.write(relation, AssignedColumns::Named(names), values);
            }
            Assigns::Merge(whens) => {
                let before = self.writes.len();
                for w in whens.iter() {
                    if let Some(NodeEnum::MergeWhenClause(w)) = &w.node {
                        self.merge_when(relation, w);
                    }
                }
                if self.writes.len() == before {
                    // Only DELETE or DO NOTHING: it writes no value, and
                    // says so.
                    self.write(
                        relation,
                        AssignedColumns::Named(Vec::new()),
                        Output::Columns(Vec::new()),
                    );
                }
            }
        }
    }

    fn merge_when(&mut self, relation: &QualifiedName, w: &'a pb::MergeWhenClause) {
        match pb::CmdType::try_from(w.command_type) {
            Ok(pb::CmdType::CmdUpdate) => {
                let (names, values) = self.set_clause(&w.target_list);
                self.write(relation, AssignedColumns::Named(names), values);
            }
            Ok(pb::CmdType::CmdInsert) => {
                let names = target_names(&w.target_list);
                let values = self.value_list(&w.values);
                let columns = if names.is_empty() && !w.values.is_empty() {
                    AssignedColumns::InOrder
                } else {
                    AssignedColumns::Named(names)
                };
                self.write(relation, columns, values);
            }
            _ => {}
        }
    }

    /// The items of a VALUES row (MERGE's INSERT), where `x.*` stands for
    /// as many columns as `x` has.
    fn value_list(&mut self, items: &'a [Node]) -> Output {
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter().filter_map(node_of) {
            let lineage = self.expr(item);
            if expands_row(item) {
                return Output::Unknown;
            }
            out.push(OutputItem::Column(lineage));
        }
        Output::Columns(out)
    }

    /// A SET list (UPDATE, ON CONFLICT DO UPDATE, MERGE's UPDATE): the
    /// columns set and their values.
    fn set_clause(&mut self, targets: &'a [Node]) -> (Vec<String>, Output) {
        let mut names = Vec::with_capacity(targets.len());
        let mut values = Vec::with_capacity(targets.len());
        // The source of the `SET (a, b) = ...` group under way, evaluated
        // once for all its columns.
        let mut group: Option<(*const Node, Parts)> = None;
        for t in targets {
            let Some(NodeEnum::ResTarget(rt)) = &t.node else {
                continue;
            };
            names.push(rt.name.clone());
            let value = match rt.val.as_deref() {
                Some(Node {
                    node: Some(NodeEnum::MultiAssignRef(m)),
                }) => {
                    let key: *const Node = m
                        .source
                        .as_deref()
                        .map_or(std::ptr::null(), |n| n as *const Node);
                    let parts = match group.take() {
                        Some((k, parts)) if k == key => parts,
                        _ => self.multi_assign_source(boxed_node(&m.source)),
                    };
                    let value = parts.get(m.colno);
                    group = Some((key, parts));
                    value
                }
                Some(v) => match node_of(v) {
                    Some(v) => self.expr(v),
                    None => Lineage::Unknown,
                },
                None => Lineage::Unknown,
            };
            values.push(OutputItem::Column(value));
        }
        (names, Output::Columns(values))
    }

    /// The values of `SET (a, b) = (SELECT x, y ...)` or `= ROW(x, y)` by
    /// position; anything else, all of it for every column.
    fn multi_assign_source(&mut self, source: Option<NodeRef<'a>>) -> Parts {
        match source {
            Some(NodeRef::SubLink(s)) => match boxed_node(&s.subselect) {
                Some(NodeRef::SelectStmt(q)) => {
                    let cols = self.select(q);
                    let each: Option<Vec<Lineage>> = cols
                        .iter()
                        .map(|c| match c {
                            Col::One { lineage, .. } => Some(lineage.clone().computed()),
                            _ => None,
                        })
                        .collect();
                    match each {
                        Some(each) => Parts::Each(each),
                        None => Parts::All(columns::whole(&cols)),
                    }
                }
                _ => Parts::All(Lineage::Unknown),
            },
            Some(NodeRef::RowExpr(r)) => {
                let items: Vec<NodeRef<'a>> = r.args.iter().filter_map(node_of).collect();
                let each: Vec<Lineage> = items.iter().map(|a| self.expr(*a)).collect();
                if items.iter().any(|a| expands_row(*a)) {
                    let mut all = Lineage::NONE;
                    for l in &each {
                        all.union(l);
                    }
                    Parts::All(all.computed())
                } else {
                    Parts::Each(each)
                }
            }
            Some(other) => Parts::All(self.expr(other).computed()),
            None => Parts::All(Lineage::Unknown),
        }
    }

    /// CREATE TABLE AS, SELECT INTO, CREATE MATERIALIZED VIEW: `cols`
    /// into the new relation `into`.
    pub(super) fn created(&mut self, into: Option<&'a pb::RangeVar>, cols: Columns) {
        let relation = into.map_or_else(|| QualifiedName::new(None, ""), range_var_name);
        self.write(
            &relation,
            AssignedColumns::Created,
            columns::to_output(cols),
        );
    }

    /// `ALTER TABLE t ALTER COLUMN c TYPE ... USING expr` rewrites every
    /// value of `c` as `expr` over the row.
    pub(super) fn alter_table(&mut self, a: &'a pb::AlterTableStmt) {
        let Some(target) = a.relation.as_ref() else {
            return;
        };
        let relation = range_var_name(target);
        self.scopes.levels.push(Level::default());
        let root = self.leaf(Leaf {
            name: target.relname.as_str(),
            schema: (!target.schemaname.is_empty()).then_some(target.schemaname.as_str()),
            row: Row::Relation {
                relation: relation.clone(),
                aliases: Vec::new(),
            },
            qualified_only: false,
        });
        if let Some(level) = self.scopes.levels.last_mut() {
            level.roots.push(root);
        }
        for cmd in &a.cmds {
            let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node else {
                continue;
            };
            if cmd.subtype != pb::AlterTableType::AtAlterColumnType as i32 {
                continue;
            }
            let Some(NodeRef::ColumnDef(def)) = boxed_node(&cmd.def) else {
                continue;
            };
            let Some(using) = boxed_node(&def.raw_default) else {
                continue;
            };
            let value = self.expr(using);
            self.write(
                &relation,
                AssignedColumns::Named(vec![cmd.name.clone()]),
                Output::Columns(vec![OutputItem::Column(value)]),
            );
        }
        self.scopes.levels.pop();
    }

    fn write(&mut self, relation: &QualifiedName, columns: AssignedColumns, values: Output) {
        let a = Assignment {
            relation: relation.clone(),
            columns,
            values,
        };
        // A recursive WITH evaluates its bodies more than once.
        if !self.writes.contains(&a) {
            self.writes.push(a);
        }
    }
}

/// The column names of an INSERT's column list (a field or element of a
/// column writes the column).
fn target_names(targets: &[Node]) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| match &t.node {
            Some(NodeEnum::ResTarget(rt)) => Some(rt.name.clone()),
            _ => None,
        })
        .collect()
}
