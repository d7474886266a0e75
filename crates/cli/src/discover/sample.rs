//! The SQL `portcullis discover` sends, and reading its answers. The
//! statements are built here, without I/O, so their quoting is tested on
//! its own.
//!
//! Every statement reads; the session is also made read-only before any
//! of them runs (see [`SESSION_SETUP`]).

use std::collections::HashSet;

use super::DiscoverError;

/// Values longer than this (bytes, as the server stores them) are counted
/// but not scanned: they are documents, not fields, and scanning them
/// would not say what the column is. It also keeps every sampled row well
/// under the size at which the proxy's reader streams a message
/// (64 KiB), even if the client encoding widens each character.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Run first on the sampling connection: nothing it runs can write, and
/// one statement cannot hold the target for long.
pub const SESSION_SETUP: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
SET statement_timeout = '60s'; SET lock_timeout = '5s'";

/// Two result sets: the relations to sample (tables, partitioned tables
/// and materialized views; partitions are sampled through their parent,
/// whose classification they inherit) with the planner's row estimate,
/// and the OIDs of text-like types (string types and domains over them,
/// json, jsonb, xml, and arrays of these), whose values are scanned.
pub const RELATIONS_QUERY: &str = "\
SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::bigint::text \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r','p','m') AND NOT c.relispartition \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%' \
ORDER BY n.nspname, c.relname;
SELECT t.oid::text FROM pg_catalog.pg_type t \
LEFT JOIN pg_catalog.pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem \
WHERE t.typcategory = 'S' OR t.oid IN (114, 142, 3802) \
OR e.typcategory = 'S' OR e.oid IN (114, 142, 3802)";

/// A relation to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub kind: RelKind,
    /// The planner's estimate (`reltuples`); negative when never analysed.
    pub estimated_rows: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    Partitioned,
    MaterializedView,
}

/// The answer to [`RELATIONS_QUERY`]: the relations, and the text-like
/// type OIDs.
pub fn parse_relations(
    sets: &[Vec<Vec<Option<String>>>],
) -> Result<(Vec<Relation>, HashSet<u32>), DiscoverError> {
    let bad = |what: &str| DiscoverError::Unreadable(what.to_owned());
    let [relations, types] = sets else {
        return Err(bad(
            "the relations query returned an unexpected number of results",
        ));
    };
    let mut out = Vec::with_capacity(relations.len());
    for row in relations {
        let field = |i: usize| row.get(i).and_then(|v| v.as_deref());
        let (Some(schema), Some(name), Some(kind), Some(rows)) =
            (field(0), field(1), field(2), field(3))
        else {
            return Err(bad("a relation row is incomplete"));
        };
        let kind = match kind {
            "r" => RelKind::Table,
            "p" => RelKind::Partitioned,
            "m" => RelKind::MaterializedView,
            _ => return Err(bad("a relation has an unexpected kind")),
        };
        out.push(Relation {
            schema: schema.to_owned(),
            name: name.to_owned(),
            kind,
            estimated_rows: rows
                .parse()
                .map_err(|_| bad("a row estimate is not a number"))?,
        });
    }
    let mut text_types = HashSet::new();
    for row in types {
        let oid = row
            .first()
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("a type OID is not a number"))?;
        text_types.insert(oid);
    }
    Ok((out, text_types))
}

/// An SQL identifier, always quoted: names are used exactly as the
/// catalog stores them, whatever their case or characters.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn relation_sql(r: &Relation) -> String {
    format!("{}.{}", quote_ident(&r.schema), quote_ident(&r.name))
}

/// Fails when the role may not read the relation at all, so that its
/// columns are not tried one by one.
pub fn probe_sql(r: &Relation) -> String {
    format!("SELECT FROM {} LIMIT 0", relation_sql(r))
}

/// Up to `rows` non-null values of one column, as text. Each row is the
/// value (NULL when over [`MAX_VALUE_BYTES`]) and whether it was over.
///
/// A table much larger than the sample is read through `TABLESAMPLE
/// SYSTEM`, with a fixed seed so that a second run over unchanged data
/// proposes the same; a smaller one (and a partitioned table, whose
/// estimate is not kept) through its first rows.
pub fn sample_sql(r: &Relation, column: &str, rows: u64) -> String {
    let sample = match r.kind {
        RelKind::Table | RelKind::MaterializedView
            if r.estimated_rows > 0 && (r.estimated_rows as u64) > rows.saturating_mul(10) =>
        {
            // Three times the rows wanted, in blocks: nulls and uneven
            // blocks still leave enough.
            let percent = (rows as f64 * 300.0 / r.estimated_rows as f64).clamp(0.0001, 100.0);
            format!(" TABLESAMPLE SYSTEM ({percent:.4}) REPEATABLE (0)")
        }
        _ => String::new(),
    };
    let col = quote_ident(column);
    format!(
        "SELECT CASE WHEN octet_length(v) <= {MAX_VALUE_BYTES} THEN v END, \
         (octet_length(v) > {MAX_VALUE_BYTES})::text \
         FROM (SELECT {col}::text AS v FROM {rel}{sample} WHERE {col} IS NOT NULL LIMIT {rows}) s",
        rel = relation_sql(r),
    )
}

/// Words for the SQLSTATEs a sampling query meets; the server's message
/// is never shown (it could quote a value).
pub fn reason(code: &str) -> &'static str {
    match code {
        "42501" => "permission denied",
        "55000" => "not populated",
        "57014" => "timed out",
        "55P03" => "locked",
        "42P01" | "42703" => "dropped while sampling",
        _ => "the server refused the query",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(kind: RelKind, estimated_rows: i64) -> Relation {
        Relation {
            schema: "Odd \"schema\"".into(),
            name: "t".into(),
            kind,
            estimated_rows,
        }
    }

    #[test]
    fn names_are_quoted_as_the_catalog_stores_them() {
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let sql = sample_sql(&rel(RelKind::Table, 10), "c\"1", 1000);
        assert!(
            sql.contains("\"c\"\"1\"::text AS v FROM \"Odd \"\"schema\"\"\".\"t\""),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE \"c\"\"1\" IS NOT NULL LIMIT 1000"),
            "{sql}"
        );
        assert_eq!(
            probe_sql(&rel(RelKind::Table, 10)),
            "SELECT FROM \"Odd \"\"schema\"\"\".\"t\" LIMIT 0"
        );
    }

    #[test]
    fn large_tables_are_sampled_and_small_ones_read_from_the_start() {
        assert!(!sample_sql(&rel(RelKind::Table, 5_000), "c", 1000).contains("TABLESAMPLE"));
        assert!(!sample_sql(&rel(RelKind::Table, -1), "c", 1000).contains("TABLESAMPLE"));
        assert!(
            !sample_sql(&rel(RelKind::Partitioned, 10_000_000), "c", 1000).contains("TABLESAMPLE")
        );
        let sql = sample_sql(&rel(RelKind::Table, 10_000_000), "c", 1000);
        assert!(
            sql.contains("TABLESAMPLE SYSTEM (0.0300) REPEATABLE (0)"),
            "{sql}"
        );
        let sql = sample_sql(&rel(RelKind::MaterializedView, i64::MAX), "c", 1);
        assert!(sql.contains("TABLESAMPLE SYSTEM (0.0001)"), "{sql}");
    }

    #[test]
    fn relations_answer_is_checked() {
        let row = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
        let sets = vec![
            vec![
                row(&["public", "t", "r", "12"]),
                row(&["s", "mv", "m", "-1"]),
            ],
            vec![row(&["25"]), row(&["1043"])],
        ];
        let (rels, types) = parse_relations(&sets).unwrap();
        assert_eq!(rels.len(), 2);
        assert_eq!(rels[1].kind, RelKind::MaterializedView);
        assert_eq!(rels[1].estimated_rows, -1);
        assert!(types.contains(&25) && types.contains(&1043));
        assert!(parse_relations(&sets[..1]).is_err());
        let bad = vec![vec![row(&["public", "t", "v", "1"])], vec![]];
        assert!(parse_relations(&bad).is_err());
    }
}
