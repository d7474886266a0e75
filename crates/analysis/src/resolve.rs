//! From names as written to the relations the server will touch.
//!
//! The parse tree says `users`; the policy needs `public.users`, and, when
//! `users` is a view or a partitioned table, the tables behind it. That
//! depends on the session's search_path and on the catalog, so it is a
//! separate step from the (cached, text-only) analysis.
//!
//! PostgreSQL's lookup rules, which [`Resolver`] follows:
//! - a qualified name is used as written;
//! - an unqualified relation name is looked up in the session's temporary
//!   schema first (unless `pg_temp` is listed explicitly, then where it is
//!   listed), then in `pg_catalog` (unless listed explicitly), then in each
//!   schema of the search_path in order; `$user` stands for the session
//!   user's name;
//! - functions and types also search `pg_catalog` first, but never `pg_temp`
//!   (see [`crate::functions::pg_catalog_searched_first`]);
//! - an object being created goes to the first schema of the path that
//!   exists (TEMP objects to `pg_temp`).
//!
//! Without a catalog, which schemas hold which names is unknown, so the
//! resolver guesses: an unqualified name goes to the first schema of the
//! path that is neither `$user`, `pg_catalog` nor `pg_temp`, except names
//! starting with `pg_`, which go to `pg_catalog` (where the system
//! catalogs are). The guess is marked [`ResolutionBasis::SearchPathGuess`]:
//! it is wrong when the table lives in a later schema of the path, or in
//! `$user`, or is shadowed by a temporary table. A policy that needs
//! certainty should require [`ResolutionBasis::AsWritten`] or
//! [`ResolutionBasis::Catalog`].

use crate::facts::{
    Access, QualifiedName, SettingChange, SettingSource, SettingTarget, SettingValue,
    StatementFacts,
};

/// `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// `r`
    Table,
    /// `p`
    PartitionedTable,
    /// `v`
    View,
    /// `m`
    MaterializedView,
    /// `f`: reading or writing it reaches another server.
    ForeignTable,
    /// `S`
    Sequence,
    /// `i`, `I`
    Index,
    /// `c`
    CompositeType,
    /// `t`
    Toast,
}

impl RelationKind {
    /// Parses `pg_class.relkind`.
    pub fn from_relkind(code: char) -> Option<RelationKind> {
        Some(match code {
            'r' => RelationKind::Table,
            'p' => RelationKind::PartitionedTable,
            'v' => RelationKind::View,
            'm' => RelationKind::MaterializedView,
            'f' => RelationKind::ForeignTable,
            'S' => RelationKind::Sequence,
            'i' | 'I' => RelationKind::Index,
            'c' => RelationKind::CompositeType,
            't' => RelationKind::Toast,
            _ => return None,
        })
    }
}

/// The catalog's view of relations, implemented by the proxy over pg_class,
/// pg_namespace, pg_inherits and pg_rewrite / pg_depend (typically from a
/// per-target cache: this runs on the statement path).
pub trait RelationCatalog {
    /// The schema in which the unqualified relation `name` is found when
    /// searching `search_path` in order. The path given is already complete
    /// (implicit `pg_temp` and `pg_catalog` added, `$user` expanded), so the
    /// implementation only checks each schema in turn. `None` when no schema
    /// of the path has it.
    fn find_relation(&self, name: &str, search_path: &[String]) -> Option<String>;

    /// Whether a schema exists (for the creation target).
    fn schema_exists(&self, schema: &str) -> bool;

    /// The kind of a relation, `None` if it does not exist.
    fn relation_kind(&self, relation: &QualifiedName) -> Option<RelationKind>;

    /// The relations a view's query reads directly (one level: the resolver
    /// recurses).
    fn view_relations(&self, view: &QualifiedName) -> Vec<QualifiedName>;

    /// The direct partitions or inheritance children of a table (one level).
    fn child_relations(&self, table: &QualifiedName) -> Vec<QualifiedName>;
}

/// How a resolved name was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionBasis {
    /// Schema-qualified in the statement.
    AsWritten,
    /// Found by the catalog.
    Catalog,
    /// Guessed from the search_path without a catalog (see the module
    /// documentation).
    SearchPathGuess,
    /// Nowhere to put it: the catalog does not know the name, or the path
    /// is empty. `name.schema` is `None`.
    Unresolved,
}

/// A relation the statement reaches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedRelation {
    /// Schema-qualified (unless `basis` is `Unresolved`).
    pub name: QualifiedName,
    /// How the statement uses it (for relations reached through a view:
    /// the view's read / write / lock use).
    pub access: Access,
    /// How the schema was decided.
    pub basis: ResolutionBasis,
    /// Its kind, when a catalog told.
    pub kind: Option<RelationKind>,
    /// The view or parent table it was reached through; `None` for names in
    /// the statement itself.
    pub reached_through: Option<QualifiedName>,
}

/// Resolves the relations of a statement for one session.
#[derive(Clone, Copy)]
pub struct Resolver<'a> {
    /// The session's search_path, as its items (see [`parse_search_path`]).
    pub search_path: &'a [String],
    /// The session user, for `$user`; without it `$user` is skipped.
    pub session_user: Option<&'a str>,
    /// The catalog, if the proxy has one for this target.
    pub catalog: Option<&'a dyn RelationCatalog>,
}

/// How deep views of views and partitions of partitions are followed.
const MAX_EXPANSION_DEPTH: usize = 16;

impl<'a> Resolver<'a> {
    /// The search path PostgreSQL actually searches for relations: `$user`
    /// expanded, `pg_temp` then `pg_catalog` in front unless listed.
    pub fn effective_relation_path(&self) -> Vec<String> {
        let mut path: Vec<String> = Vec::with_capacity(self.search_path.len() + 2);
        if !self.search_path.iter().any(|s| s == "pg_temp") {
            path.push("pg_temp".to_owned());
        }
        if !self.search_path.iter().any(|s| s == "pg_catalog") {
            path.push("pg_catalog".to_owned());
        }
        for s in self.search_path {
            if s == "$user" {
                if let Some(user) = self.session_user {
                    path.push(user.to_owned());
                }
            } else {
                path.push(s.clone());
            }
        }
        path
    }

    /// Every relation the statement reaches, schema-qualified, with views
    /// and (unless ONLY) partitions and inheritance children expanded when a
    /// catalog is available.
    pub fn resolve(&self, facts: &StatementFacts) -> Vec<ResolvedRelation> {
        let path = self.effective_relation_path();
        let mut out: Vec<ResolvedRelation> = Vec::new();
        for use_ in &facts.relations {
            let (name, basis) = self.qualify(&use_.relation, use_.access, &path);
            let kind = self
                .catalog
                .filter(|_| name.schema.is_some())
                .and_then(|c| c.relation_kind(&name));
            let resolved = ResolvedRelation {
                name,
                access: use_.access,
                basis,
                kind,
                reached_through: None,
            };
            self.expand(&resolved, use_.include_descendants, 0, &mut out);
            push_merged(&mut out, resolved);
        }
        out
    }

    /// The relation a name read in a query reaches, schema-qualified
    /// (`None` when it resolves nowhere).
    pub fn qualify_read(&self, written: &QualifiedName) -> Option<QualifiedName> {
        let path = self.effective_relation_path();
        let read = Access {
            read: true,
            ..Access::default()
        };
        let (name, basis) = self.qualify(written, read, &path);
        (basis != ResolutionBasis::Unresolved && name.schema.is_some()).then_some(name)
    }

    fn qualify(
        &self,
        written: &QualifiedName,
        access: Access,
        path: &[String],
    ) -> (QualifiedName, ResolutionBasis) {
        if written.schema.is_some() {
            return (written.clone(), ResolutionBasis::AsWritten);
        }
        let with_schema = |schema: &str| QualifiedName::new(Some(schema), &written.name);
        match self.catalog {
            Some(catalog) => {
                if let Some(schema) = catalog.find_relation(&written.name, path) {
                    return (with_schema(&schema), ResolutionBasis::Catalog);
                }
                if access.create {
                    let explicit = path
                        .iter()
                        .skip_while(|s| *s == "pg_temp" || *s == "pg_catalog");
                    if let Some(schema) = explicit.clone().find(|s| catalog.schema_exists(s)) {
                        return (with_schema(schema), ResolutionBasis::Catalog);
                    }
                }
                (written.clone(), ResolutionBasis::Unresolved)
            }
            None => {
                if written.name.starts_with("pg_") && !access.create {
                    return (with_schema("pg_catalog"), ResolutionBasis::SearchPathGuess);
                }
                let guess = self
                    .search_path
                    .iter()
                    .find(|s| !matches!(s.as_str(), "$user" | "pg_catalog" | "pg_temp"));
                match guess {
                    Some(schema) => (with_schema(schema), ResolutionBasis::SearchPathGuess),
                    None => (written.clone(), ResolutionBasis::Unresolved),
                }
            }
        }
    }

    fn expand(
        &self,
        parent: &ResolvedRelation,
        descendants: bool,
        depth: usize,
        out: &mut Vec<ResolvedRelation>,
    ) {
        let Some(catalog) = self.catalog else { return };
        if depth >= MAX_EXPANSION_DEPTH || parent.name.schema.is_none() {
            return;
        }
        let reach = |name: QualifiedName, access: Access| ResolvedRelation {
            kind: catalog.relation_kind(&name),
            name,
            access,
            basis: ResolutionBasis::Catalog,
            reached_through: Some(parent.name.clone()),
        };
        let mut next = Vec::new();
        match parent.kind {
            Some(RelationKind::View) => {
                // What the view's query reads; writes through an updatable
                // view land in its base table. Dropping or altering the
                // view does not touch its tables.
                let access = Access {
                    read: parent.access.read || parent.access.write,
                    write: parent.access.write,
                    lock: parent.access.lock,
                    alter: false,
                    create: false,
                };
                if access != Access::default() {
                    for name in catalog.view_relations(&parent.name) {
                        next.push((reach(name, access), true));
                    }
                }
            }
            Some(
                RelationKind::Table | RelationKind::PartitionedTable | RelationKind::ForeignTable,
            ) if descendants => {
                for name in catalog.child_relations(&parent.name) {
                    next.push((reach(name, parent.access), true));
                }
            }
            _ => {}
        }
        for (child, descendants) in next {
            if out
                .iter()
                .any(|r| r.name == child.name && r.reached_through.is_some())
                || child.name == parent.name
            {
                // Already expanded (diamonds, cycles): merge and stop.
                push_merged(out, child);
                continue;
            }
            self.expand(&child, descendants, depth + 1, out);
            push_merged(out, child);
        }
    }
}

fn push_merged(out: &mut Vec<ResolvedRelation>, r: ResolvedRelation) {
    if let Some(existing) = out.iter_mut().find(|e| e.name == r.name) {
        existing.access.merge(r.access);
        if r.reached_through.is_none() {
            // Named directly beats reached indirectly.
            existing.reached_through = None;
            existing.basis = r.basis;
        }
    } else {
        out.push(r);
    }
}

/// Splits a search_path string as PostgreSQL's `SplitIdentifierString`
/// does: comma-separated, unquoted names folded to lower case (ASCII),
/// `"..."` kept verbatim with `""` for a quote, whitespace around names
/// ignored, names truncated to 63 bytes. `None` if malformed (the server
/// would refuse it too).
pub fn parse_search_path(value: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = value.trim_start();
    if rest.is_empty() {
        return Some(out);
    }
    loop {
        let mut name = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        name.push('"');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            rest = quoted.get(end?..)?;
        } else {
            let len = rest
                .find(|c: char| c == ',' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let (raw, tail) = rest.split_at(len);
            if raw.is_empty() {
                return None;
            }
            name = raw.to_ascii_lowercase();
            rest = tail;
        }
        truncate_identifier(&mut name);
        out.push(name);
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(tail) => rest = tail.trim_start(),
            None if rest.is_empty() => return Some(out),
            None => return None,
        }
    }
}

/// NAMEDATALEN - 1 bytes, cut at a character boundary.
fn truncate_identifier(name: &mut String) {
    const MAX: usize = 63;
    if name.len() > MAX {
        let mut cut = MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
}

/// What a setting change does to search_path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchPathChange {
    /// Set to these schemas.
    To(Vec<String>),
    /// Back to the session's default (RESET, DEFAULT, RESET ALL, DISCARD
    /// ALL).
    Default,
    /// Changed to something only known at run time: the proxy can no longer
    /// resolve names until it learns the value (PostgreSQL 18 reports
    /// search_path in ParameterStatus).
    Unknown,
}

/// How `change` affects search_path, or `None` if it does not.
pub fn search_path_change(change: &SettingChange) -> Option<SearchPathChange> {
    if !change.target.may_affect("search_path") {
        return None;
    }
    if change.target == SettingTarget::Unknown {
        return Some(SearchPathChange::Unknown);
    }
    Some(match &change.value {
        SettingValue::Default => SearchPathChange::Default,
        SettingValue::Unknown => SearchPathChange::Unknown,
        // SET search_path = a, 'B': each item is one schema name.
        SettingValue::Values(items) if change.source == SettingSource::Statement => {
            let mut items = items.clone();
            items.iter_mut().for_each(truncate_identifier);
            SearchPathChange::To(items)
        }
        // set_config('search_path', 'a, "B"', ...): one string to split.
        SettingValue::Values(items) => match items.as_slice() {
            [one] => parse_search_path(one).map_or(SearchPathChange::Unknown, SearchPathChange::To),
            _ => SearchPathChange::Unknown,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// schema -> relation -> (kind, children or view sources)
    #[derive(Default)]
    struct Catalog {
        relations: HashMap<(String, String), (RelationKind, Vec<QualifiedName>)>,
    }

    impl Catalog {
        fn with(
            mut self,
            schema: &str,
            name: &str,
            kind: RelationKind,
            reaches: &[(&str, &str)],
        ) -> Self {
            let reaches = reaches
                .iter()
                .map(|(s, n)| QualifiedName::new(Some(s), n))
                .collect();
            self.relations
                .insert((schema.into(), name.into()), (kind, reaches));
            self
        }
    }

    impl RelationCatalog for Catalog {
        fn find_relation(&self, name: &str, search_path: &[String]) -> Option<String> {
            search_path
                .iter()
                .find(|s| {
                    self.relations
                        .contains_key(&((*s).clone(), name.to_owned()))
                })
                .cloned()
        }
        fn schema_exists(&self, schema: &str) -> bool {
            self.relations.keys().any(|(s, _)| s == schema)
        }
        fn relation_kind(&self, r: &QualifiedName) -> Option<RelationKind> {
            self.relations
                .get(&(r.schema.clone()?, r.name.clone()))
                .map(|(k, _)| *k)
        }
        fn view_relations(&self, view: &QualifiedName) -> Vec<QualifiedName> {
            self.reaches(view, RelationKind::View)
        }
        fn child_relations(&self, table: &QualifiedName) -> Vec<QualifiedName> {
            self.reaches(table, RelationKind::PartitionedTable)
        }
    }

    impl Catalog {
        fn reaches(&self, r: &QualifiedName, kind: RelationKind) -> Vec<QualifiedName> {
            match self
                .relations
                .get(&(r.schema.clone().unwrap_or_default(), r.name.clone()))
            {
                Some((k, reaches)) if *k == kind => reaches.clone(),
                _ => Vec::new(),
            }
        }
    }

    fn path(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn resolve(
        sql: &str,
        search_path: &[String],
        catalog: Option<&dyn RelationCatalog>,
    ) -> Vec<ResolvedRelation> {
        let analysis = crate::analyze(sql).expect("parses");
        let resolver = Resolver {
            search_path,
            session_user: Some("alice"),
            catalog,
        };
        resolver.resolve(&analysis.statements[0])
    }

    fn names(resolved: &[ResolvedRelation]) -> Vec<String> {
        resolved.iter().map(|r| r.name.to_string()).collect()
    }

    #[test]
    fn without_a_catalog_the_first_real_schema_is_guessed() {
        let p = path(&["$user", "app", "public"]);
        let r = resolve(
            "SELECT * FROM users JOIN audit.log l ON true JOIN pg_class c ON true",
            &p,
            None,
        );
        assert_eq!(names(&r), ["app.users", "audit.log", "pg_catalog.pg_class"]);
        assert_eq!(r[0].basis, ResolutionBasis::SearchPathGuess);
        assert_eq!(r[1].basis, ResolutionBasis::AsWritten);
        let r = resolve("SELECT * FROM users", &path(&["$user"]), None);
        assert_eq!(r[0].basis, ResolutionBasis::Unresolved);
        let r = resolve("CREATE TEMP TABLE scratch (id int)", &p, None);
        assert_eq!(names(&r), ["pg_temp.scratch"]);
    }

    #[test]
    fn the_catalog_finds_names_through_the_whole_path() {
        let catalog = Catalog::default()
            .with("public", "users", RelationKind::Table, &[])
            .with("alice", "notes", RelationKind::Table, &[]);
        let p = path(&["$user", "app", "public"]);
        let r = resolve("SELECT * FROM users, notes, missing", &p, Some(&catalog));
        assert_eq!(names(&r), ["public.users", "alice.notes", "missing"]);
        assert_eq!(r[0].basis, ResolutionBasis::Catalog);
        assert_eq!(r[2].basis, ResolutionBasis::Unresolved);
        // A new table goes to the first schema that exists.
        let r = resolve("CREATE TABLE fresh (id int)", &p, Some(&catalog));
        assert_eq!(names(&r), ["alice.fresh"]);
    }

    #[test]
    fn views_and_partitions_expand_to_the_tables_they_reach() {
        let catalog = Catalog::default()
            .with(
                "public",
                "active_users",
                RelationKind::View,
                &[("public", "users"), ("public", "v2")],
            )
            .with(
                "public",
                "v2",
                RelationKind::View,
                &[("public", "users"), ("audit", "log")],
            )
            .with("public", "users", RelationKind::Table, &[])
            .with("audit", "log", RelationKind::Table, &[])
            .with(
                "public",
                "events",
                RelationKind::PartitionedTable,
                &[("public", "events_2024")],
            )
            .with(
                "public",
                "events_2024",
                RelationKind::PartitionedTable,
                &[("public", "events_2024_01")],
            )
            .with("public", "events_2024_01", RelationKind::Table, &[]);
        let p = path(&["public"]);
        let r = resolve("SELECT * FROM active_users", &p, Some(&catalog));
        let mut n = names(&r);
        n.sort();
        assert_eq!(
            n,
            [
                "audit.log",
                "public.active_users",
                "public.users",
                "public.v2"
            ]
        );
        let log = r.iter().find(|x| x.name.name == "log").expect("log");
        assert!(log.access.read && !log.access.write);
        assert!(log.reached_through.is_some());

        let r = resolve("DELETE FROM events WHERE id = 1", &p, Some(&catalog));
        let mut n = names(&r);
        n.sort();
        assert_eq!(
            n,
            [
                "public.events",
                "public.events_2024",
                "public.events_2024_01"
            ]
        );
        assert!(r.iter().all(|x| x.access.write));

        let r = resolve("DELETE FROM ONLY events WHERE id = 1", &p, Some(&catalog));
        assert_eq!(names(&r), ["public.events"]);

        // Dropping a view does not touch its tables.
        let r = resolve("DROP VIEW active_users", &p, Some(&catalog));
        assert_eq!(names(&r), ["public.active_users"]);
    }

    #[test]
    fn effective_path_adds_the_implicit_schemas() {
        let p = path(&["$user", "public"]);
        let resolver = Resolver {
            search_path: &p,
            session_user: Some("alice"),
            catalog: None,
        };
        assert_eq!(
            resolver.effective_relation_path(),
            ["pg_temp", "pg_catalog", "alice", "public"]
        );
        let p = path(&["public", "pg_catalog", "pg_temp"]);
        let resolver = Resolver {
            search_path: &p,
            session_user: None,
            catalog: None,
        };
        assert_eq!(
            resolver.effective_relation_path(),
            ["public", "pg_catalog", "pg_temp"]
        );
    }

    #[test]
    fn search_path_changes() {
        let change = |sql: &str| {
            let a = crate::analyze(sql).expect("parses");
            search_path_change(&a.statements[0].settings[0])
        };
        assert_eq!(
            change("SET search_path = a, 'B'"),
            Some(SearchPathChange::To(path(&["a", "B"])))
        );
        assert_eq!(change("RESET search_path"), Some(SearchPathChange::Default));
        assert_eq!(change("RESET ALL"), Some(SearchPathChange::Default));
        assert_eq!(
            change("SELECT set_config('search_path', 'x, \"Y\"', false)"),
            Some(SearchPathChange::To(path(&["x", "Y"])))
        );
        assert_eq!(
            change("SELECT set_config('search_path', $1, false)"),
            Some(SearchPathChange::Unknown)
        );
        assert_eq!(change("SET statement_timeout = 1"), None);
    }

    #[test]
    fn search_path_strings_split_like_the_server() {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            parse_search_path("\"$user\", public"),
            v(&["$user", "public"])
        );
        assert_eq!(parse_search_path("  A ,b,\"C d\"  "), v(&["a", "b", "C d"]));
        assert_eq!(parse_search_path("\"a\"\"b\""), v(&["a\"b"]));
        assert_eq!(parse_search_path(""), v(&[]));
        assert_eq!(parse_search_path("a,,b"), None);
        assert_eq!(parse_search_path("\"open"), None);
        assert_eq!(parse_search_path("a b"), None);
        let long = "x".repeat(70);
        assert_eq!(parse_search_path(&long).unwrap()[0].len(), 63);
    }
}
