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
WHERE p.prokind IN ('f','w','a')";

/// How many result sets [`CATALOG_QUERIES`] produces.
pub const CATALOG_RESULT_SETS: usize = 5;

/// One row of a catalog query: text columns, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// A catalog result that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog query {query}: {problem}")]
pub struct CatalogError {
    pub query: &'static str,
    pub problem: String,
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

fn qualified(row: &Row, at: usize, query: &'static str) -> Result<QualifiedName, CatalogError> {
    Ok(QualifiedName::new(
        Some(text(row, at, query)?),
        text(row, at + 1, query)?,
    ))
}

impl CatalogSnapshot {
    /// Builds a snapshot from the result sets of [`CATALOG_QUERIES`].
    pub fn from_rows(result_sets: &[Vec<Row>]) -> Result<CatalogSnapshot, CatalogError> {
        let [schemas, relations, inherits, views, functions] = result_sets else {
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
        Ok(snap)
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
                row(&["app", "orders", "r"]),
            ],
            vec![row(&["public", "orders_2025", "public", "orders"])],
            vec![row(&["public", "order_totals", "public", "orders"])],
            vec![
                row(&["public", "add_item", "2", "0", "false", "v", "NULL"]),
                row(&["public", "fmt", "2", "1", "false", "i", "NULL"]),
                row(&["pg_catalog", "lower", "1", "0", "false", "i", "NULL"]),
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
    fn malformed_results_are_errors() {
        assert!(CatalogSnapshot::from_rows(&[]).is_err());
        let bad = CatalogSnapshot::from_rows(&[
            vec![],
            vec![],
            vec![],
            vec![],
            vec![row(&["public", "f", "x", "0", "false", "v", "NULL"])],
        ]);
        assert!(bad.is_err());
    }
}
