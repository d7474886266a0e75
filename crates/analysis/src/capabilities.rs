//! Name tables for dangerous capabilities and code the analysis cannot see.
//!
//! The statements that carry a capability by their node type (COPY PROGRAM,
//! ALTER SYSTEM, CREATE SERVER...) are recognised in the walk; this module
//! holds the name-based rules: functions, extensions, settings, operators.
//!
//! Function names are matched whatever their schema and ASCII case: the
//! real `pg_read_file` is in pg_catalog, but an extension installed in any
//! schema (`ext.dblink`) or a look-alike is treated the same, which can only
//! make the analysis stricter.

use crate::facts::{Capability, SettingValue};

/// pg_catalog functions that read, write or list files on the server.
/// `lo_import` / `lo_export` called from SQL always run server-side (the
/// client-side variants are libpq calls, not SQL).
const SERVER_FILE_FUNCTIONS: &[&str] = &[
    "lo_export",
    "lo_import",
    "pg_current_logfile",
    "pg_file_length",
    "pg_file_read",
    "pg_file_rename",
    "pg_file_sync",
    "pg_file_unlink",
    "pg_file_write",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_logdir_ls",
    "pg_ls_archive_statusdir",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_logicalmapdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir",
    "pg_ls_summariesdir",
    "pg_ls_tmpdir",
    "pg_ls_waldir",
    "pg_read_binary_file",
    "pg_read_file",
    "pg_read_file_old",
    "pg_show_all_file_settings",
    "pg_stat_file",
];

/// Server administration functions: other sessions, configuration,
/// replication, WAL, backups.
const ADMINISTRATION_FUNCTIONS: &[&str] = &[
    "pg_backup_start",
    "pg_backup_stop",
    "pg_cancel_backend",
    "pg_copy_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_restore_point",
    "pg_drop_replication_slot",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
    "pg_logical_emit_message",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_get_changes",
    "pg_promote",
    "pg_reload_conf",
    "pg_replication_slot_advance",
    "pg_rotate_logfile",
    "pg_rotate_logfile_old",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_stop_making_pinned_objects",
    "pg_switch_wal",
    "pg_sync_replication_slots",
    "pg_terminate_backend",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
];

/// Name prefixes of administration function families.
const ADMINISTRATION_PREFIXES: &[&str] =
    &["binary_upgrade_", "pg_replication_origin_", "pg_stat_reset"];

/// Name prefixes of functions that reach other servers (the dblink and
/// postgres_fdw extensions).
const FOREIGN_DATA_PREFIXES: &[&str] = &["dblink", "postgres_fdw_"];

/// Functions that execute SQL handed to them as a value, or read a table
/// named by a value: what they touch never appears in the parse tree.
const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "ts_rewrite",
    "ts_stat",
];

fn contains(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn has_prefix(prefixes: &[&str], name: &str) -> bool {
    prefixes.iter().any(|p| {
        name.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })
}

/// The capability a call to a function named `name` carries, if any.
/// set_config is handled with its arguments in the walk.
pub fn function_capability(name: &str) -> Option<Capability> {
    if contains(SERVER_FILE_FUNCTIONS, name) {
        Some(Capability::ServerFiles)
    } else if has_prefix(FOREIGN_DATA_PREFIXES, name) {
        Some(Capability::ForeignData)
    } else if contains(ADMINISTRATION_FUNCTIONS, name) || has_prefix(ADMINISTRATION_PREFIXES, name)
    {
        Some(Capability::ServerAdministration)
    } else {
        None
    }
}

/// Whether a function runs SQL text or reads a table it is given by name.
pub fn runs_sql_text(name: &str) -> bool {
    contains(DYNAMIC_SQL_FUNCTIONS, name) || has_prefix(&["dblink"], name)
}

/// The capability that installing an extension, or writing code in a
/// language, by this name grants: dblink and postgres_fdw reach other
/// servers; file_fdw and adminpack reach server files; untrusted procedural
/// languages (`plpython3u`, `plperlu`, `pltclu`...) and the `c` and
/// `internal` languages (a shared library, or any built-in C function under
/// a new name) run arbitrary code on the server.
pub fn extension_capability(name: &str) -> Option<Capability> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "dblink" | "postgres_fdw" => Some(Capability::ForeignData),
        "file_fdw" | "adminpack" => Some(Capability::ServerFiles),
        "c" | "internal" => Some(Capability::ServerProgram),
        l if l.starts_with("pl") && l.ends_with('u') => Some(Capability::ServerProgram),
        _ => None,
    }
}

/// The capabilities a change to setting `name` (lower case) carries.
///
/// - `role`, `session_authorization`: [`Capability::IdentityChange`], or
///   [`Capability::IdentityReset`] when going back to the login identity
///   (RESET, DEFAULT, `SET ROLE NONE`).
/// - `session_replication_role`: [`Capability::SilencedSafeguards`] unless
///   set to its default (`origin`): `replica` and `local` stop ordinary
///   triggers and foreign-key checks from firing.
///
/// RESET ALL touches none of these dangerously: `role` and
/// `session_authorization` are excluded from RESET ALL by PostgreSQL
/// (GUC_NO_RESET_ALL), and `session_replication_role` goes back to origin.
pub fn setting_capability(name: &str, value: &SettingValue) -> Option<Capability> {
    let is_value = |v: &str| matches!(value, SettingValue::Values(vs) if vs.len() == 1 && vs[0].eq_ignore_ascii_case(v));
    match name {
        "role" if *value == SettingValue::Default || is_value("none") => {
            Some(Capability::IdentityReset)
        }
        "session_authorization" if *value == SettingValue::Default => {
            Some(Capability::IdentityReset)
        }
        "role" | "session_authorization" => Some(Capability::IdentityChange),
        "session_replication_role" if *value == SettingValue::Default || is_value("origin") => None,
        "session_replication_role" => Some(Capability::SilencedSafeguards),
        _ => None,
    }
}

/// Every operator name pg_catalog defines (`SELECT DISTINCT oprname FROM
/// pg_operator`; `!=` is folded to `<>` by the parser). An operator outside
/// this list can only be user-defined, and may call any function.
const BUILTIN_OPERATORS: &[&str] = &[
    "!!", "!~", "!~*", "!~~", "!~~*", "#", "##", "#-", "#>", "#>>", "%", "&", "&&", "&<", "&<|",
    "&>", "*", "*<", "*<=", "*<>", "*=", "*>", "*>=", "+", "-", "->", "->>", "-|-", "/", "<",
    "<->", "<<", "<<=", "<<|", "<=", "<>", "<@", "<^", "=", ">", ">=", ">>", ">>=", ">^", "?",
    "?#", "?&", "?-", "?-|", "?|", "?||", "@", "@-@", "@>", "@?", "@@", "@@@", "^", "^@", "|",
    "|&>", "|/", "|>>", "||", "||/", "~", "~*", "~<=~", "~<~", "~=", "~>=~", "~>~", "~~", "~~*",
];

/// Whether an operator (its name list as written: `["="]`, or
/// `["pg_catalog", "="]` for `OPERATOR(pg_catalog.=)`) is certainly a
/// built-in one.
pub fn is_builtin_operator(schema: Option<&str>, name: &str) -> bool {
    schema.is_none_or(|s| s == "pg_catalog") && BUILTIN_OPERATORS.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_match_whatever_the_case() {
        assert_eq!(
            function_capability("pg_read_file"),
            Some(Capability::ServerFiles)
        );
        assert_eq!(
            function_capability("PG_READ_FILE"),
            Some(Capability::ServerFiles)
        );
        assert_eq!(
            function_capability("dblink_exec"),
            Some(Capability::ForeignData)
        );
        assert_eq!(
            function_capability("pg_terminate_backend"),
            Some(Capability::ServerAdministration)
        );
        assert_eq!(
            function_capability("pg_stat_reset_shared"),
            Some(Capability::ServerAdministration)
        );
        assert_eq!(function_capability("lower"), None);
        assert_eq!(function_capability("pg_stat"), None);
        assert!(runs_sql_text("query_to_xml"));
        assert!(runs_sql_text("dblink"));
        assert!(!runs_sql_text("xmlagg"));
    }

    #[test]
    fn extensions_and_languages() {
        assert_eq!(
            extension_capability("dblink"),
            Some(Capability::ForeignData)
        );
        assert_eq!(
            extension_capability("plpython3u"),
            Some(Capability::ServerProgram)
        );
        assert_eq!(extension_capability("plpgsql"), None);
        assert_eq!(extension_capability("C"), Some(Capability::ServerProgram));
        assert_eq!(extension_capability("sql"), None);
        assert_eq!(extension_capability("pgcrypto"), None);
    }

    #[test]
    fn settings() {
        let v = |s: &str| SettingValue::Values(vec![s.to_owned()]);
        assert_eq!(
            setting_capability("role", &v("admin")),
            Some(Capability::IdentityChange)
        );
        assert_eq!(
            setting_capability("role", &v("none")),
            Some(Capability::IdentityReset)
        );
        assert_eq!(
            setting_capability("role", &SettingValue::Default),
            Some(Capability::IdentityReset)
        );
        assert_eq!(
            setting_capability("session_authorization", &SettingValue::Unknown),
            Some(Capability::IdentityChange)
        );
        assert_eq!(
            setting_capability("session_replication_role", &v("replica")),
            Some(Capability::SilencedSafeguards)
        );
        assert_eq!(
            setting_capability("session_replication_role", &v("origin")),
            None
        );
        assert_eq!(setting_capability("search_path", &v("x")), None);
    }

    #[test]
    fn operators() {
        assert!(BUILTIN_OPERATORS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_builtin_operator(None, "="));
        assert!(is_builtin_operator(Some("pg_catalog"), "||"));
        assert!(!is_builtin_operator(Some("public"), "="));
        assert!(!is_builtin_operator(None, "===>"));
    }
}
