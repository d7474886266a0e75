//! The FROM items of each query level, and what names mean among them.
//!
//! This mirrors the walk's scopes (`walk::ScopeItem`) but keeps what the
//! walk does not need: the columns of every derived row and the shape of
//! joins, which `*` and `USING` depend on.

use std::rc::Rc;

use pg_query::protobuf::Node;

use super::columns::{self, Col, Columns};
use super::{Lineage, Source};
use crate::facts::QualifiedName;

/// The rows a FROM item provides.
#[derive(Debug, Clone)]
pub(super) enum Row {
    /// A relation as written (a table, a view...). `aliases` is its
    /// column-alias list (`FROM t AS x(a, b)`), which renames its first
    /// columns: which ones those are is the catalog's knowledge.
    Relation {
        relation: QualifiedName,
        aliases: Vec<String>,
    },
    /// A sub-query, CTE, function, VALUES or aliased join.
    Derived(Rc<Columns>),
}

impl Row {
    fn whole(&self) -> Lineage {
        match self {
            Row::Relation { relation, .. } => Lineage::of(Source::WholeRow {
                relation: relation.clone(),
            }),
            Row::Derived(cols) => columns::whole(cols),
        }
    }

    /// What `*` over this row expands to.
    fn expand(&self) -> Columns {
        match self {
            Row::Relation { relation, aliases } => vec![Col::AllOf {
                relation: relation.clone(),
                except: Vec::new(),
                renamed: !aliases.is_empty(),
            }],
            Row::Derived(cols) => cols.to_vec(),
        }
    }

    fn lookup(&self, name: &str) -> Option<columns::Found> {
        match self {
            Row::Relation { relation, aliases } => {
                if aliases.iter().any(|a| a == name) {
                    // Certainly a column of this relation, but which one
                    // the alias list renamed is not known here.
                    return Some(columns::Found {
                        lineage: Lineage::of(Source::WholeRow {
                            relation: relation.clone(),
                        }),
                        definite: true,
                    });
                }
                // The catalog knows whether it has this column; without it,
                // a possibility.
                Some(columns::Found {
                    lineage: Lineage::of(Source::Column {
                        relation: relation.clone(),
                        column: name.to_owned(),
                    }),
                    definite: false,
                })
            }
            Row::Derived(cols) => columns::lookup(cols, name),
        }
    }
}

/// A FROM item that can be named.
#[derive(Debug, Clone)]
pub(super) struct Leaf<'a> {
    /// The alias, or the relation's (or function's) own name; empty for an
    /// unaliased sub-query.
    pub name: &'a str,
    /// The schema written before an unaliased relation (`s.t.col`).
    pub schema: Option<&'a str>,
    pub row: Row,
    /// Only reachable by its name (a join's alias, RETURNING's OLD and
    /// NEW): unqualified column names do not look into it.
    pub qualified_only: bool,
}

/// A FROM-list entry, as `*` expands it.
#[derive(Debug, Clone)]
pub(super) enum Root {
    /// One item: an index into [`Level::leaves`].
    Leaf(usize),
    /// A join of two entries; `USING` / NATURAL merge columns.
    Join(Box<Join>),
}

#[derive(Debug, Clone)]
pub(super) struct Join {
    pub left: Root,
    pub right: Root,
    pub merge: Merge,
}

#[derive(Debug, Clone)]
pub(super) enum Merge {
    None,
    Using(Vec<String>),
    Natural,
}

/// One query level: its FROM items, and its WINDOW clause.
#[derive(Debug, Default)]
pub(super) struct Level<'a> {
    pub leaves: Vec<Leaf<'a>>,
    pub roots: Vec<Root>,
    pub windows: &'a [Node],
}

impl<'a> Level<'a> {
    pub(super) fn new(windows: &'a [Node]) -> Self {
        Level {
            leaves: Vec::new(),
            roots: Vec::new(),
            windows,
        }
    }

    pub(super) fn push_leaf(&mut self, leaf: Leaf<'a>) -> Root {
        self.leaves.push(leaf);
        Root::Leaf(self.leaves.len() - 1)
    }

    /// `*`: every entry of the FROM list, in order.
    pub(super) fn expand_all(&self) -> Columns {
        let mut out = Vec::new();
        for root in &self.roots {
            out.extend(self.expand(root));
        }
        out
    }

    /// What `*` over one entry expands to; one [`Col::Any`] of everything
    /// in it when that cannot be written out here.
    pub(super) fn expand(&self, root: &Root) -> Columns {
        self.try_expand(root)
            .unwrap_or_else(|| vec![Col::Any(self.whole(root))])
    }

    fn try_expand(&self, root: &Root) -> Option<Columns> {
        match root {
            Root::Leaf(i) => self.leaves.get(*i).map(|l| l.row.expand()),
            Root::Join(j) => {
                let left = self.try_expand(&j.left)?;
                let right = self.try_expand(&j.right)?;
                let merged: Vec<String> = match &j.merge {
                    Merge::None => return Some([left, right].concat()),
                    Merge::Using(names) => names.clone(),
                    Merge::Natural => {
                        // Common names are only known when both sides'
                        // names are.
                        let l = columns::all_names(&left)?;
                        let r = columns::all_names(&right)?;
                        l.into_iter()
                            .filter(|n| r.contains(n))
                            .map(str::to_owned)
                            .collect()
                    }
                };
                let names: Vec<&str> = merged.iter().map(String::as_str).collect();
                // The merged columns come first, then each side's others
                // (PostgreSQL's expandRTE for a join). A merged column is
                // either side's value (COALESCE for FULL joins).
                let mut out = Vec::with_capacity(left.len() + right.len());
                for n in &names {
                    let mut lineage = Lineage::NONE;
                    for side in [&left, &right] {
                        match columns::lookup(side, n) {
                            Some(found) => lineage.union(&found.lineage),
                            None => lineage = Lineage::Unknown,
                        }
                    }
                    out.push(Col::named(Some((*n).to_owned()), lineage));
                }
                out.extend(columns::without(&left, &names)?);
                out.extend(columns::without(&right, &names)?);
                Some(out)
            }
        }
    }

    /// Everything one entry's values may come from.
    pub(super) fn whole(&self, root: &Root) -> Lineage {
        match root {
            Root::Leaf(i) => self
                .leaves
                .get(*i)
                .map_or(Lineage::Unknown, |l| l.row.whole()),
            Root::Join(j) => {
                let mut all = self.whole(&j.left);
                all.union(&self.whole(&j.right));
                all
            }
        }
    }
}

/// Every query level in scope, innermost last.
#[derive(Debug, Default)]
pub(super) struct Scopes<'a> {
    pub levels: Vec<Level<'a>>,
}

impl<'a> Scopes<'a> {
    /// The FROM item a qualifier names (`t`, `s.t`, `db.s.t`), innermost
    /// level first.
    pub(super) fn find(&self, qualifier: &[&str]) -> Option<&Leaf<'a>> {
        let (name, schema) = match qualifier {
            [name] => (*name, None),
            [.., schema, name] => (*name, Some(*schema)),
            [] => return None,
        };
        self.levels.iter().rev().find_map(|level| {
            level
                .leaves
                .iter()
                .find(|l| l.name == name && (schema.is_none() || l.schema == schema))
        })
    }

    /// A qualified reference `q.col` (or `s.q.col`, or `q.col.field`).
    pub(super) fn qualified(&self, parts: &[&str]) -> Lineage {
        // PostgreSQL tries the longest qualifier first (`a.b.c`: relation
        // `b` of schema `a`, then relation `a` with column `b` and field `c`),
        // then a column of composite type (`c.field`).
        for split in (1..parts.len()).rev() {
            let (Some(qualifier), Some(column)) = (parts.get(..split), parts.get(split)) else {
                continue;
            };
            if qualifier.len() > 3 {
                continue;
            }
            if let Some(leaf) = self.find(qualifier) {
                return match leaf.row.lookup(column) {
                    Some(found) => found.lineage,
                    // Not a column we can see: any of them.
                    None => leaf.row.whole(),
                };
            }
        }
        match parts.first() {
            Some(first) => self.unqualified(first),
            None => Lineage::NONE,
        }
    }

    /// An unqualified column name: see the module documentation of
    /// [`super`] for the rule.
    pub(super) fn unqualified(&self, name: &str) -> Lineage {
        let mut lineage = Lineage::NONE;
        let mut any = false;
        for level in self.levels.iter().rev() {
            let mut definite = false;
            for leaf in &level.leaves {
                if !leaf.qualified_only {
                    if let Some(found) = leaf.row.lookup(name) {
                        lineage.union(&found.lineage);
                        definite |= found.definite;
                        any = true;
                    }
                }
                if leaf.name == name {
                    // `SELECT c FROM customers c`: the whole row, unless c
                    // has a column named c (then that column).
                    lineage.union(&leaf.row.whole());
                    any = true;
                }
            }
            if definite {
                return lineage;
            }
        }
        if any {
            lineage
        } else {
            // No FROM item could have it: nothing we can attribute.
            Lineage::Unknown
        }
    }

    /// `q.*` inside an expression: the whole row of that item.
    pub(super) fn whole_row(&self, qualifier: &[&str]) -> Lineage {
        self.find(qualifier)
            .map_or(Lineage::Unknown, |leaf| leaf.row.whole())
    }

    /// `*` inside an expression: every item of the innermost level.
    pub(super) fn whole_level(&self) -> Lineage {
        let Some(level) = self.levels.last() else {
            return Lineage::Unknown;
        };
        let mut all = Lineage::NONE;
        for root in &level.roots {
            all.union(&level.whole(root));
        }
        all
    }

    /// `q.*` in a target list: what it expands to.
    pub(super) fn expand_qualified(&self, qualifier: &[&str]) -> Columns {
        match self.find(qualifier) {
            Some(leaf) => leaf.row.expand(),
            None => vec![Col::Any(Lineage::Unknown)],
        }
    }

    /// `*` in a target list.
    pub(super) fn expand_all(&self) -> Columns {
        self.levels
            .last()
            .map(Level::expand_all)
            .unwrap_or_default()
    }

    /// The WINDOW clause of the innermost level.
    pub(super) fn windows(&self) -> &'a [Node] {
        self.levels.last().map_or(&[], |l| l.windows)
    }
}
