//! Which function calls are known to be read-only.
//!
//! A call is read-only when every function it could resolve to is immutable
//! or stable (`pg_proc.provolatile` `i` / `s`), or is one of a few volatile
//! pg_catalog built-ins whose only "side effect" is returning a different
//! value each time ([`HARMLESS_VOLATILE`]). Anything else, including any
//! function nobody can vouch for, is opaque: the proxy fails closed.
//!
//! Two sources answer, in this order:
//! 1. a [`FunctionCatalog`], which the proxy backs with real pg_proc queries
//!    and which sees user-defined functions, overloads and extension
//!    membership (for [`HARMLESS_EXTENSION_VOLATILE`]);
//! 2. the built-in table of pg_catalog volatilities (generated from pg_proc,
//!    see `gen/builtin_volatility.sh`), used only for calls that the server
//!    will resolve in pg_catalog: unqualified names while pg_catalog is
//!    searched first, or names qualified with `pg_catalog`.
//!
//! Known gap without a catalog: a user-defined overload of a built-in name
//! with different argument types (`public.lower(integer)`) is resolved by
//! the server by argument type, which the parse tree does not carry; the
//! table then wrongly vouches for it. Creating such a function is itself a
//! schema change, and with a catalog the gap closes (the catalog answers for
//! every candidate).

mod builtin_table;

use crate::facts::FunctionUse;

/// `pg_proc.provolatile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Volatility {
    /// `i`: same result for the same arguments, no side effects.
    Immutable,
    /// `s`: same result within a statement, no side effects.
    Stable,
    /// `v`: anything, including writing data.
    Volatile,
}

impl Volatility {
    /// Parses `pg_proc.provolatile`.
    pub fn from_provolatile(code: char) -> Option<Volatility> {
        match code {
            'i' => Some(Volatility::Immutable),
            's' => Some(Volatility::Stable),
            'v' => Some(Volatility::Volatile),
            _ => None,
        }
    }
}

/// One function a call may resolve to, as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CatalogFunction {
    /// The schema it lives in.
    pub schema: String,
    /// Its volatility.
    pub volatility: Volatility,
    /// The extension it belongs to (`pg_depend` with deptype `e`), if any.
    pub extension: Option<String>,
}

/// The catalog's view of functions, implemented by the proxy over pg_proc /
/// pg_namespace (typically from a per-target cache, since this is called on
/// the statement path and must not block).
pub trait FunctionCatalog {
    /// Every function a call `schema.name(<nargs arguments>)` could resolve
    /// to with this search_path: all overloads named `name` in `schema` (or,
    /// unqualified, in pg_catalog and every schema of the path) that accept
    /// `nargs` arguments, counting defaults and VARIADIC. Argument types are
    /// unknown here, so returning too many is safe and returning too few is
    /// not. An empty list means "no such function known".
    fn candidates(
        &self,
        schema: Option<&str>,
        name: &str,
        nargs: usize,
        search_path: &[String],
    ) -> Vec<CatalogFunction>;
}

/// Why a call is or is not read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The catalog's answer.
    Catalog,
    /// The built-in table of pg_catalog volatilities.
    BuiltinTable,
    /// The allow-list of harmless volatile built-ins.
    AllowList,
}

/// The verdict on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionSafety {
    /// Every candidate is immutable, stable or allow-listed.
    ReadOnly(Basis),
    /// Some candidate is volatile and not allow-listed (`nextval`,
    /// `setval`, user-defined volatile functions...).
    NotReadOnly(Basis),
    /// Nobody knows the function: opaque.
    Unknown,
}

/// Volatile pg_catalog functions that are nonetheless harmless: they are
/// volatile only because their result changes from call to call, or because
/// they read state that changes, and they write nothing a later statement
/// could observe.
///
/// - random numbers and identifiers: `random`, `random_normal`, `setseed`
///   (re-seeds this session's generator only), `gen_random_uuid`, `uuidv4`,
///   `uuidv7`;
/// - clocks: `clock_timestamp`, `timeofday` (`now()` is stable);
/// - sequence state already reached: `currval`, `lastval` (`nextval` and
///   `setval` write and are NOT here);
/// - sizes, positions and status readers used by monitoring:
///   `pg_*_size`, the WAL position functions, `pg_is_in_recovery`,
///   `pg_blocking_pids`, `pg_xact_status`, `pg_partition_tree`...
///
/// Deliberately absent: `pg_sleep*` (holds a connection and locks at will),
/// advisory locks (block other sessions), `pg_notify`, `set_config`
/// (changes settings; reported separately), large-object functions, the
/// statistics resetters, and anything that reads files or runs SQL text.
/// `txid_current` and `pg_backend_pid` need no entry: pg_proc has them
/// stable.
pub const HARMLESS_VOLATILE: &[&str] = &[
    "clock_timestamp",
    "current_query",
    "currval",
    "gen_random_uuid",
    "lastval",
    "pg_blocking_pids",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_database_size",
    "pg_indexes_size",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_jit_available",
    "pg_last_committed_xact",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_lock_status",
    "pg_notification_queue_usage",
    "pg_partition_ancestors",
    "pg_partition_tree",
    "pg_relation_size",
    "pg_safe_snapshot_blocking_pids",
    "pg_sequence_last_value",
    "pg_table_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_xact_commit_timestamp",
    "pg_xact_status",
    "random",
    "random_normal",
    "setseed",
    "timeofday",
    "txid_status",
    "uuidv4",
    "uuidv7",
];

/// Volatile functions of common extensions that are harmless for the same
/// reasons as [`HARMLESS_VOLATILE`]; trusted only when the catalog says the
/// function belongs to that extension (a user's function of the same name in
/// `public` does not).
pub const HARMLESS_EXTENSION_VOLATILE: &[(&str, &str)] = &[
    ("pgcrypto", "gen_random_bytes"),
    ("pgcrypto", "gen_random_uuid"),
    ("pgcrypto", "gen_salt"),
    ("uuid-ossp", "uuid_generate_v1"),
    ("uuid-ossp", "uuid_generate_v1mc"),
    ("uuid-ossp", "uuid_generate_v4"),
];

/// The volatility pg_catalog gives `name` (worst over its overloads), if it
/// is a pg_catalog function this crate knows.
pub fn builtin_volatility(name: &str) -> Option<Volatility> {
    builtin_table::BUILTIN_VOLATILITY
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| builtin_table::BUILTIN_VOLATILITY.get(i))
        .map(|(_, v)| *v)
}

/// Whether `name` is on the harmless-volatile allow-list.
pub fn is_harmless_volatile(name: &str) -> bool {
    HARMLESS_VOLATILE.binary_search(&name).is_ok()
}

/// Whether an unqualified function name resolves in pg_catalog before any
/// other schema. PostgreSQL searches pg_catalog first unless the search_path
/// names it explicitly; then it is searched where it stands (pg_temp is never
/// searched for functions, so it does not count).
pub fn pg_catalog_searched_first(search_path: &[String]) -> bool {
    match search_path.iter().position(|s| s == "pg_catalog") {
        None => true,
        Some(at) => search_path.iter().take(at).all(|s| s == "pg_temp"),
    }
}

/// Decides whether one call is known to be read-only. See the module
/// documentation for the sources and their order.
pub fn assess(
    call: &FunctionUse,
    search_path: &[String],
    catalog: Option<&dyn FunctionCatalog>,
) -> FunctionSafety {
    let name = call.name.name.as_str();
    let schema = call.name.schema.as_deref();
    if let Some(catalog) = catalog {
        let candidates = catalog.candidates(schema, name, call.args, search_path);
        if !candidates.is_empty() {
            let all_harmless = candidates.iter().all(|c| {
                c.volatility != Volatility::Volatile
                    || (c.schema == "pg_catalog" && is_harmless_volatile(name))
                    || c.extension
                        .as_deref()
                        .is_some_and(|ext| HARMLESS_EXTENSION_VOLATILE.contains(&(ext, name)))
            });
            return if all_harmless {
                FunctionSafety::ReadOnly(Basis::Catalog)
            } else {
                FunctionSafety::NotReadOnly(Basis::Catalog)
            };
        }
    }
    let resolves_in_pg_catalog = match schema {
        Some(s) => s == "pg_catalog",
        None => pg_catalog_searched_first(search_path),
    };
    if !resolves_in_pg_catalog {
        return FunctionSafety::Unknown;
    }
    match builtin_volatility(name) {
        Some(Volatility::Immutable | Volatility::Stable) => {
            FunctionSafety::ReadOnly(Basis::BuiltinTable)
        }
        Some(Volatility::Volatile) if is_harmless_volatile(name) => {
            FunctionSafety::ReadOnly(Basis::AllowList)
        }
        Some(Volatility::Volatile) => FunctionSafety::NotReadOnly(Basis::BuiltinTable),
        None => FunctionSafety::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Execution, QualifiedName};

    fn call(schema: Option<&str>, name: &str, args: usize) -> FunctionUse {
        FunctionUse {
            name: QualifiedName::new(schema, name),
            args,
            execution: Execution::Now,
        }
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(builtin_table::BUILTIN_VOLATILITY
            .windows(2)
            .all(|w| w[0].0 < w[1].0));
        assert!(HARMLESS_VOLATILE.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_allow_listed_function_is_a_volatile_builtin() {
        for name in HARMLESS_VOLATILE {
            assert_eq!(
                builtin_volatility(name),
                Some(Volatility::Volatile),
                "{name}"
            );
        }
    }

    #[test]
    fn everyday_builtins_are_read_only_without_a_catalog() {
        for (name, args) in [
            ("now", 0),
            ("lower", 1),
            ("count", 0),
            ("jsonb_build_object", 4),
            ("json_build_object", 2),
            ("date_trunc", 2),
            ("to_char", 2),
            ("string_agg", 2),
            ("row_number", 0),
            ("random", 0),
            ("gen_random_uuid", 0),
            ("txid_current", 0),
            ("pg_backend_pid", 0),
        ] {
            assert!(
                matches!(
                    assess(&call(None, name, args), &[], None),
                    FunctionSafety::ReadOnly(_)
                ),
                "{name}"
            );
        }
        assert!(matches!(
            assess(&call(Some("pg_catalog"), "lower", 1), &[], None),
            FunctionSafety::ReadOnly(_)
        ));
    }

    #[test]
    fn writers_and_unknowns_are_not_read_only() {
        for name in [
            "nextval",
            "setval",
            "set_config",
            "pg_sleep",
            "lo_unlink",
            "pg_advisory_lock",
        ] {
            assert_eq!(
                assess(&call(None, name, 1), &[], None),
                FunctionSafety::NotReadOnly(Basis::BuiltinTable),
                "{name}"
            );
        }
        assert_eq!(
            assess(&call(None, "my_func", 1), &[], None),
            FunctionSafety::Unknown
        );
        assert_eq!(
            assess(&call(Some("public"), "lower", 1), &[], None),
            FunctionSafety::Unknown
        );
    }

    #[test]
    fn builtin_table_is_not_trusted_when_pg_catalog_is_searched_late() {
        let path = vec!["public".to_owned(), "pg_catalog".to_owned()];
        assert_eq!(
            assess(&call(None, "lower", 1), &path, None),
            FunctionSafety::Unknown
        );
        let path = vec!["pg_catalog".to_owned(), "public".to_owned()];
        assert!(matches!(
            assess(&call(None, "lower", 1), &path, None),
            FunctionSafety::ReadOnly(_)
        ));
    }

    struct Catalog(Vec<CatalogFunction>);
    impl FunctionCatalog for Catalog {
        fn candidates(
            &self,
            _: Option<&str>,
            _: &str,
            _: usize,
            _: &[String],
        ) -> Vec<CatalogFunction> {
            self.0.clone()
        }
    }

    #[test]
    fn catalog_answers_first_and_the_worst_candidate_decides() {
        let stable = CatalogFunction {
            schema: "public".into(),
            volatility: Volatility::Stable,
            extension: None,
        };
        let volatile = CatalogFunction {
            schema: "public".into(),
            volatility: Volatility::Volatile,
            extension: None,
        };
        let cat = Catalog(vec![stable.clone()]);
        assert_eq!(
            assess(&call(None, "my_func", 1), &[], Some(&cat)),
            FunctionSafety::ReadOnly(Basis::Catalog)
        );
        let cat = Catalog(vec![stable, volatile.clone()]);
        assert_eq!(
            assess(&call(None, "lower", 1), &[], Some(&cat)),
            FunctionSafety::NotReadOnly(Basis::Catalog)
        );
        // A user's volatile `random` is not the allow-listed built-in.
        let cat = Catalog(vec![CatalogFunction {
            schema: "public".into(),
            ..volatile
        }]);
        assert_eq!(
            assess(&call(None, "random", 0), &[], Some(&cat)),
            FunctionSafety::NotReadOnly(Basis::Catalog)
        );
        // An extension's harmless function, but only from that extension.
        let from_extension = |extension: Option<&str>| {
            Catalog(vec![CatalogFunction {
                schema: "public".into(),
                volatility: Volatility::Volatile,
                extension: extension.map(str::to_owned),
            }])
        };
        assert_eq!(
            assess(
                &call(None, "uuid_generate_v4", 0),
                &[],
                Some(&from_extension(Some("uuid-ossp")))
            ),
            FunctionSafety::ReadOnly(Basis::Catalog)
        );
        assert_eq!(
            assess(
                &call(None, "uuid_generate_v4", 0),
                &[],
                Some(&from_extension(None))
            ),
            FunctionSafety::NotReadOnly(Basis::Catalog)
        );
        // An empty answer falls back to the table.
        let cat = Catalog(vec![]);
        assert!(matches!(
            assess(&call(None, "now", 0), &[], Some(&cat)),
            FunctionSafety::ReadOnly(Basis::BuiltinTable)
        ));
    }
}
