//! The columns of a derived row (a query's result, a CTE, a sub-query in
//! FROM, a join), as far as the text shows them: what `*` over it expands
//! to, and what a column name in it may refer to.

use super::{Lineage, Output, OutputItem, Source};
use crate::facts::QualifiedName;

/// One or several columns of a derived row, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Col {
    /// One column. `name` is `None` when PostgreSQL's name for it is not
    /// certain here (`1 + x` is `?column?`, `'x'::text` is `text`...): a
    /// reference by any name may mean it.
    One {
        name: Option<String>,
        lineage: Lineage,
    },
    /// `*` over a relation: its columns (but `except`), as many as the
    /// catalog says. `renamed` when a column-alias list gave some of them
    /// names that cannot be matched to positions here.
    AllOf {
        relation: QualifiedName,
        except: Vec<String>,
        renamed: bool,
    },
    /// Any number of columns, each computed from (at most) these sources:
    /// what cannot be expanded here (a function in FROM with an unknown
    /// row type, set operations whose branches cannot be matched).
    Any(Lineage),
}

pub(super) type Columns = Vec<Col>;

impl Col {
    pub(super) fn named(name: Option<String>, lineage: Lineage) -> Col {
        Col::One { name, lineage }
    }

    pub(super) fn all_of(relation: QualifiedName) -> Col {
        Col::AllOf {
            relation,
            except: Vec::new(),
            renamed: false,
        }
    }

    /// Everything this item's values may come from.
    fn whole(&self) -> Lineage {
        match self {
            Col::One { lineage, .. } | Col::Any(lineage) => lineage.clone(),
            Col::AllOf { relation, .. } => Lineage::of(Source::WholeRow {
                relation: relation.clone(),
            }),
        }
    }
}

/// Everything the row's values may come from (a whole-row reference: a
/// value computed from all of them).
pub(super) fn whole(cols: &[Col]) -> Lineage {
    let mut all = Lineage::NONE;
    for c in cols {
        all.union(&c.whole());
        if all.is_unknown() {
            break;
        }
    }
    all.computed()
}

/// What a column name may refer to in a derived row.
pub(super) struct Found {
    pub lineage: Lineage,
    /// The name certainly refers to a column of this row (an exact name
    /// match), so PostgreSQL looks no further.
    pub definite: bool,
}

/// The column(s) `name` may refer to in `cols`, `None` when certainly none.
pub(super) fn lookup(cols: &[Col], name: &str) -> Option<Found> {
    let mut exact: Option<Lineage> = None;
    let mut possible: Option<Lineage> = None;
    for c in cols {
        let candidate = match c {
            Col::One {
                name: Some(n),
                lineage,
            } => {
                if n == name {
                    exact.get_or_insert(Lineage::NONE).union(lineage);
                }
                continue;
            }
            Col::One {
                name: None,
                lineage,
            }
            | Col::Any(lineage) => lineage.clone(),
            Col::AllOf {
                relation,
                except,
                renamed,
            } => {
                if *renamed {
                    Lineage::of(Source::WholeRow {
                        relation: relation.clone(),
                    })
                } else if except.iter().any(|e| e == name) {
                    continue;
                } else {
                    Lineage::of(Source::Column {
                        relation: relation.clone(),
                        column: name.to_owned(),
                    })
                }
            }
        };
        possible.get_or_insert(Lineage::NONE).union(&candidate);
    }
    // An exact match is the column PostgreSQL picks: another column by that
    // name would make the reference ambiguous, an error.
    match (exact, possible) {
        (Some(lineage), _) => Some(Found {
            lineage,
            definite: true,
        }),
        (None, Some(lineage)) => Some(Found {
            lineage,
            definite: false,
        }),
        (None, None) => None,
    }
}

/// Applies a column-alias list (`AS s(a, b)`, `WITH x(a, b)`): the first
/// columns take the new names, in order. After a `*` of unknown width the
/// positions are lost, and so are the names that follow.
pub(super) fn rename(cols: Columns, aliases: &[&str]) -> Columns {
    if aliases.is_empty() {
        return cols;
    }
    let mut aliases = aliases.iter();
    let mut lost = false;
    cols.into_iter()
        .map(|c| match c {
            Col::One { name, lineage } => {
                let name = if lost {
                    None
                } else {
                    aliases.next().map_or(name, |a| Some((*a).to_owned()))
                };
                Col::One { name, lineage }
            }
            Col::AllOf {
                relation,
                except,
                renamed,
            } => {
                let renames = lost || aliases.len() > 0;
                lost |= renames;
                Col::AllOf {
                    relation,
                    except,
                    renamed: renamed || renames,
                }
            }
            Col::Any(lineage) => {
                lost = true;
                Col::Any(lineage)
            }
        })
        .collect()
}

/// The columns of a set operation: each branch's column at the same
/// position. When the positions cannot be matched (a `*` against columns),
/// one [`Col::Any`] of everything.
pub(super) fn union(left: Columns, right: Columns) -> Columns {
    if left.len() == right.len() {
        let merged: Option<Columns> = left
            .iter()
            .zip(&right)
            .map(|pair| match pair {
                (Col::One { name, lineage: l }, Col::One { lineage: r, .. }) => {
                    let mut lineage = l.clone();
                    lineage.union(r);
                    Some(Col::One {
                        name: name.clone(),
                        lineage,
                    })
                }
                (
                    Col::AllOf {
                        relation: a,
                        except: ea,
                        ..
                    },
                    Col::AllOf {
                        relation: b,
                        except: eb,
                        ..
                    },
                ) if a == b && ea == eb => Some(pair.0.clone()),
                _ => None,
            })
            .collect();
        if let Some(merged) = merged {
            return merged;
        }
    }
    let mut all = whole(&left);
    all.union(&whole(&right));
    vec![Col::Any(all)]
}

/// `cols` without the columns named `names` (the right side of `USING`),
/// `None` when which columns those are cannot be told here.
pub(super) fn without(cols: &[Col], names: &[&str]) -> Option<Columns> {
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        match c {
            Col::One { name: Some(n), .. } if names.contains(&n.as_str()) => {}
            Col::One { name: Some(_), .. } => out.push(c.clone()),
            Col::AllOf {
                relation,
                except,
                renamed: false,
            } => {
                let mut except = except.clone();
                for n in names {
                    if !except.iter().any(|e| e == n) {
                        except.push((*n).to_owned());
                    }
                }
                out.push(Col::AllOf {
                    relation: relation.clone(),
                    except,
                    renamed: false,
                });
            }
            Col::One { name: None, .. } | Col::AllOf { .. } | Col::Any(_) => return None,
        }
    }
    Some(out)
}

/// The names of every column, when all are certain (for NATURAL joins).
pub(super) fn all_names(cols: &[Col]) -> Option<Vec<&str>> {
    cols.iter()
        .map(|c| match c {
            Col::One { name: Some(n), .. } => Some(n.as_str()),
            _ => None,
        })
        .collect()
}

/// The statement's output as reported: unknown when any part cannot be
/// expanded.
pub(super) fn to_output(cols: Columns) -> Output {
    let mut items = Vec::with_capacity(cols.len());
    for c in cols {
        items.push(match c {
            Col::One { lineage, .. } => OutputItem::Column(lineage),
            Col::AllOf {
                relation, except, ..
            } => OutputItem::AllColumnsOf { relation, except },
            Col::Any(_) => return Output::Unknown,
        });
    }
    Output::Columns(items)
}
