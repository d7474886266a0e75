//! Which startup parameters a client may send, and what reaches the server.
//!
//! The `options` parameter carries server command-line switches. Through it a
//! client could set any setting at session start (`-c role=admin`), so each
//! switch is checked against an allow-list of harmless settings. Plain
//! startup parameters set the same settings and pass the same allow-list.
//! `search_path` is on it: drivers send it openly (JDBC's currentSchema,
//! Npgsql's SearchPath, libpq only through `options`), and the session
//! reads the path the server ended up with (`SHOW search_path`) before its
//! first statement is judged. Anything else is refused: the upstream role
//! may be a superuser, so a parameter such as `session_replication_role`
//! would otherwise switch off triggers for the whole session.

use portcullis_identity::Identity;
use portcullis_wire::{sqlstate, Refusal};

/// Settings a client may set through `-c` or `--` in `options`. Lowercase.
pub const OPTIONS_ALLOWED: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    // Only its safe value ("on"): see `lexer_value`.
    "standard_conforming_strings",
    "datestyle",
    "default_transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "geqo",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "jit",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "search_path",
    "statement_timeout",
    "timezone",
    "timezone_abbreviations",
    "work_mem",
    "xmlbinary",
    "xmloption",
];

fn param_allowed(lower: &str) -> bool {
    OPTIONS_ALLOWED.contains(&lower)
}

/// client_encoding and standard_conforming_strings decide how the server
/// reads every later statement: only values the analysis reads the same
/// way pass (see `portcullis_guard::lexer`).
fn lexer_value(lower: &str, value: &str) -> Result<(), Refusal> {
    if portcullis_guard::lexer::safe_startup_setting(lower, value) {
        return Ok(());
    }
    Err(refuse(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("Portcullis does not allow {lower} to be set to this value"),
        "Keep standard_conforming_strings on, and use UTF8 or another encoding the server supports (not SJIS, BIG5, GBK, GB18030, UHC, JOHAB or SHIFT_JIS_2004).",
    ))
}

/// Parameters Portcullis consumes itself and never passes on as sent.
const PARAMS_CONSUMED: &[&str] = &["user", "database", "replication"];

/// The checked startup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    pub user: String,
    /// The target the client asked for (the `database` parameter, or the user
    /// name when absent, as PostgreSQL does).
    pub target: String,
    /// Parameters to pass on to the server, in the client's order.
    pub forward: Vec<(String, String)>,
    /// `_pq_.` protocol options, none of which Portcullis supports yet.
    pub protocol_options: Vec<String>,
}

fn refuse(code: &'static str, message: String, hint: &str) -> Refusal {
    Refusal::fatal(code, message).hint(hint)
}

/// Checks the parameters of a StartupMessage.
pub fn check<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ClientParams, Refusal> {
    let mut user = None;
    let mut database = None;
    let mut forward = Vec::new();
    let mut protocol_options = Vec::new();
    for (name, value) in params {
        let lower = name.to_ascii_lowercase();
        if name.starts_with(portcullis_wire::startup::PROTOCOL_OPTION_PREFIX) {
            protocol_options.push(name.to_owned());
            continue;
        }
        match lower.as_str() {
            "user" => user = Some(value.to_owned()),
            "database" => database = Some(value.to_owned()),
            "replication" => {
                if !is_false(value) {
                    return Err(refuse(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "replication connections are not supported through Portcullis".into(),
                        "Connect for replication directly to the database server, or remove the replication parameter.",
                    ));
                }
            }
            "options" => {
                check_options(value)?;
                forward.push((name.to_owned(), value.to_owned()));
            }
            _ if param_allowed(&lower) => {
                lexer_value(&lower, value)?;
                forward.push((name.to_owned(), value.to_owned()));
            }
            _ => {
                let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
                return Err(refuse(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("startup parameter \"{shown}\" is not allowed through Portcullis"),
                    "Portcullis passes on only harmless session settings (application_name, client_encoding, DateStyle, TimeZone, search_path, timeouts, ...) and decides the database role itself; remove this parameter or SET it after connecting.",
                ));
            }
        }
    }
    debug_assert!(forward
        .iter()
        .all(|(k, _)| !PARAMS_CONSUMED.contains(&k.as_str())));
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        refuse(
            sqlstate::INVALID_AUTHORIZATION,
            "no user name specified in startup packet".into(),
            "Set the user in the connection string, for example user=alice.",
        )
    })?;
    let target = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(ClientParams {
        user,
        target,
        forward,
        protocol_options,
    })
}

/// What the server reads as the longest application_name (NAMEDATALEN - 1
/// bytes); it cuts longer values.
const MAX_APPLICATION_NAME: usize = 63;

/// The startup parameters the server gets: the client's, with
/// `application_name` naming who is connected (the client's own value
/// kept in front of it), and the identity in `portcullis.identity`,
/// `portcullis.identity_kind` and `portcullis.on_behalf_of` (empty when
/// nobody), so that server logs, pgaudit and row-level security see who
/// it is. Startup parameters outrank role and database defaults, and
/// RESET ALL returns to them; the guard refuses every other change.
///
/// With a statement_timeout limit (`max_timeout_ms`), `statement_timeout`
/// is set too: the client's own value when it is shorter, else the limit
/// (a plain parameter outranks `options`, so the client's `-c` cannot
/// raise it).
pub fn upstream_params(
    forward: &[(String, String)],
    identity: &Identity,
    max_timeout_ms: Option<u64>,
) -> Vec<(String, String)> {
    let is_app = |k: &str| k.eq_ignore_ascii_case("application_name");
    let client_app = forward
        .iter()
        .rev()
        .find(|(k, _)| is_app(k))
        .map(|(_, v)| v.as_str());
    let mut out: Vec<(String, String)> = forward
        .iter()
        .filter(|(k, _)| !is_app(k))
        .cloned()
        .collect();
    out.push((
        "application_name".into(),
        application_name(&identity.subject, client_app),
    ));
    out.push(("portcullis.identity".into(), no_nul(&identity.subject)));
    out.push((
        "portcullis.identity_kind".into(),
        identity.kind.as_str().into(),
    ));
    out.push((
        "portcullis.on_behalf_of".into(),
        identity
            .on_behalf_of
            .as_deref()
            .map(no_nul)
            .unwrap_or_default(),
    ));
    if let Some(max) = max_timeout_ms {
        let is_timeout = |k: &str| k.eq_ignore_ascii_case("statement_timeout");
        let asked = client_timeouts(forward)
            .filter_map(|v| portcullis_guard::limits::milliseconds(&v))
            .filter(|&ms| ms > 0)
            .min();
        out.retain(|(k, _)| !is_timeout(k));
        out.push((
            "statement_timeout".into(),
            format!("{}ms", asked.map_or(max, |a| a.min(max))),
        ));
    }
    out
}

/// Every statement_timeout the client asked for at startup: as a plain
/// parameter or as `-c` / `--` in `options`.
fn client_timeouts(forward: &[(String, String)]) -> impl Iterator<Item = String> + '_ {
    forward.iter().flat_map(|(k, v)| {
        let mut found = Vec::new();
        if k.eq_ignore_ascii_case("statement_timeout") {
            found.push(v.clone());
        } else if k.eq_ignore_ascii_case("options") {
            let args = split_options(v);
            let mut i = 0;
            while i < args.len() {
                let setting = if args[i] == "-c" {
                    i += 1;
                    args.get(i).cloned()
                } else {
                    args[i]
                        .strip_prefix("--")
                        .or_else(|| args[i].strip_prefix("-c"))
                        .map(str::to_owned)
                };
                if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
                    if name
                        .replace('-', "_")
                        .eq_ignore_ascii_case("statement_timeout")
                    {
                        found.push(value.to_owned());
                    }
                }
                i += 1;
            }
        }
        found
    })
}

/// `<client's application_name> (portcullis: <subject>)`, in printable
/// ASCII as the server keeps it, and cut so that the identity is never
/// what the server's 63-byte limit removes: the client's part is
/// shortened first.
fn application_name(subject: &str, client: Option<&str>) -> String {
    let suffix = format!("(portcullis: {})", printable_ascii(subject));
    let client = client.map(printable_ascii).filter(|c| !c.is_empty());
    let Some(client) = client else {
        return cut(&suffix, MAX_APPLICATION_NAME);
    };
    let room = MAX_APPLICATION_NAME.saturating_sub(suffix.len() + 1);
    if room == 0 {
        return cut(&suffix, MAX_APPLICATION_NAME);
    }
    format!("{} {suffix}", cut(&client, room))
}

/// As the server cleans application_name (pg_clean_ascii): every character
/// outside printable ASCII becomes `?`.
fn printable_ascii(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// The first `n` bytes of ASCII text.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Startup values end at a NUL: one inside would cut the value short.
fn no_nul(s: &str) -> String {
    s.replace('\0', "?")
}

/// PostgreSQL's boolean spellings for "off" (parse_bool), which make
/// `replication=false` an ordinary connection.
fn is_false(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "0" | "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "of" | "off"
    )
}

/// Splits `options` the way the server does (`pg_split_opts`: whitespace
/// separates arguments, a backslash makes the next character literal).
pub fn split_options(options: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            if c.is_ascii_whitespace() {
                break;
            }
            if c == '\\' {
                if let Some(n) = chars.next() {
                    arg.push(n);
                }
                continue;
            }
            arg.push(c);
        }
        args.push(arg);
    }
    args
}

/// Every switch in `options` must be `-c name=value`, `-cname=value` or
/// `--name=value` with an allowed name.
pub fn check_options(options: &str) -> Result<(), Refusal> {
    let args = split_options(options);
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let setting = if let Some(rest) = arg.strip_prefix("--") {
            rest.to_owned()
        } else if arg == "-c" {
            i += 1;
            match args.get(i) {
                Some(next) => next.clone(),
                None => return Err(bad_option("-c without a setting")),
            }
        } else if let Some(rest) = arg.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(bad_option(arg));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(bad_option(&setting));
        };
        // The server folds '-' to '_' in long option names and compares
        // setting names case-insensitively.
        let name = name.replace('-', "_").to_ascii_lowercase();
        if name == "application_name" {
            // The server would let the plain parameter Portcullis sends win
            // over this one, and the client's value would be lost unseen.
            return Err(refuse(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "application_name may not be set through the options startup parameter".into(),
                "Send it as the application_name connection parameter: Portcullis shows it, after who you are, to the database.",
            ));
        }
        if !OPTIONS_ALLOWED.contains(&name.as_str()) {
            return Err(refuse(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("setting \"{name}\" may not be set through the options startup parameter"),
                "Portcullis allows only harmless session settings in options (for example -c statement_timeout=5s); set others with SET after connecting.",
            ));
        }
        lexer_value(&name, value)?;
        i += 1;
    }
    Ok(())
}

fn bad_option(arg: &str) -> Refusal {
    // The argument is echoed only in a shortened, printable form.
    let shown: String = arg
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    refuse(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("unsupported switch \"{shown}\" in the options startup parameter"),
        "Only -c name=value and --name=value settings are accepted in options.",
    )
}

#[cfg(test)]
mod tests {
    fn who(subject: &str, on_behalf_of: Option<&str>) -> Identity {
        Identity {
            kind: portcullis_identity::Kind::Agent,
            subject: subject.into(),
            groups: vec![],
            on_behalf_of: on_behalf_of.map(str::to_owned),
            proof: portcullis_identity::Proof::Scram {
                channel_binding: false,
            },
        }
    }

    #[test]
    fn the_server_is_told_who_is_connected() {
        let forward = vec![
            ("Application_Name".to_owned(), "psql".to_owned()),
            ("TimeZone".to_owned(), "UTC".to_owned()),
        ];
        let out = upstream_params(&forward, &who("etl", Some("alice")), None);
        assert_eq!(
            out,
            [
                ("TimeZone", "UTC"),
                ("application_name", "psql (portcullis: etl)"),
                ("portcullis.identity", "etl"),
                ("portcullis.identity_kind", "agent"),
                ("portcullis.on_behalf_of", "alice"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let out = upstream_params(&[], &who("bob", None), None);
        assert_eq!(out[0].1, "(portcullis: bob)");
        assert_eq!(out[3].1, "");
    }

    #[test]
    fn a_statement_timeout_limit_is_set_and_only_shortened() {
        let timeout = |forward: &[(&str, &str)], max| {
            let forward: Vec<(String, String)> = forward
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let out = upstream_params(&forward, &who("bob", None), max);
            let found: Vec<_> = out
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("statement_timeout"))
                .collect();
            assert!(found.len() <= 1, "{out:?}");
            found.first().map(|(_, v)| v.clone())
        };
        assert_eq!(timeout(&[], Some(30_000)), Some("30000ms".into()));
        assert_eq!(
            timeout(&[("statement_timeout", "5s")], Some(30_000)),
            Some("5000ms".into())
        );
        assert_eq!(
            timeout(&[("Statement_Timeout", "0")], Some(30_000)),
            Some("30000ms".into())
        );
        assert_eq!(
            timeout(&[("statement_timeout", "1h")], Some(30_000)),
            Some("30000ms".into())
        );
        assert_eq!(
            timeout(&[("options", "-c statement_timeout=2s")], Some(30_000)),
            Some("2000ms".into())
        );
        assert_eq!(
            timeout(&[("options", "--statement-timeout=0")], Some(30_000)),
            Some("30000ms".into())
        );
        assert_eq!(
            timeout(&[("statement_timeout", "5s")], None),
            Some("5s".into())
        );
    }

    #[test]
    fn the_identity_survives_the_servers_cut() {
        let long_app = "x".repeat(100);
        let name = application_name("alice@example.com", Some(&long_app));
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("(portcullis: alice@example.com)"), "{name}");
        let long_subject = "s".repeat(70);
        let name = application_name(&long_subject, Some("psql"));
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("(portcullis: sss"), "{name}");
        assert_eq!(
            application_name("bj\u{f6}rk", Some("caf\u{e9}\n")),
            "caf?? (portcullis: bj?rk)"
        );
        assert_eq!(no_nul("a\0b"), "a?b");
    }

    #[test]
    fn application_name_in_options_is_refused() {
        assert!(check_options("-c application_name=x").is_err());
        assert!(check_options("--application-name=x").is_err());
        assert!(check_options("-c statement_timeout=5s").is_ok());
    }

    use super::*;

    fn params<'a>(p: &'a [(&'a str, &'a str)]) -> Result<ClientParams, Refusal> {
        check(p.iter().copied())
    }

    #[test]
    fn ordinary_startup_passes() {
        let p = params(&[
            ("user", "alice"),
            ("database", "shop"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            ("search_path", "app"),
            (
                "options",
                "-c statement_timeout=5s --DateStyle=ISO -cextra_float_digits=3",
            ),
            ("_pq_.test", "1"),
        ])
        .unwrap();
        assert_eq!(p.user, "alice");
        assert_eq!(p.target, "shop");
        assert_eq!(p.protocol_options, vec!["_pq_.test"]);
        assert_eq!(
            p.forward
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            vec![
                "application_name",
                "client_encoding",
                "search_path",
                "options"
            ]
        );
    }

    #[test]
    fn database_defaults_to_user() {
        assert_eq!(params(&[("user", "bob")]).unwrap().target, "bob");
        assert!(params(&[("database", "x")]).is_err());
    }

    #[test]
    fn smuggling_through_options_is_refused() {
        for o in [
            "-c role=postgres",
            "-crole=postgres",
            "--role=postgres",
            "-c session_authorization=postgres",
            "-c statement_timeout=1 -c role=x",
            "-c\\ role=x",
            "-c",
            "-D /tmp",
            "-c statement_timeout",
            "-c session_replication_role=replica",
        ] {
            let r = params(&[("user", "a"), ("options", o)]);
            assert!(r.is_err(), "{o} should be refused");
            assert_eq!(r.unwrap_err().sqlstate, "42501");
        }
    }

    #[test]
    fn search_path_may_come_in_options() {
        for o in [
            "-c search_path=public",
            "--search-path=app,public",
            "-c SEARCH_PATH=app",
        ] {
            assert!(params(&[("user", "a"), ("options", o)]).is_ok(), "{o}");
        }
    }

    #[test]
    fn lexer_settings_pass_only_with_safe_values() {
        for o in [
            "-c standard_conforming_strings=off",
            "--standard-conforming-strings=false",
            "-c client_encoding=SJIS",
            "-c client_encoding=Win-950",
        ] {
            let r = params(&[("user", "a"), ("options", o)]);
            assert_eq!(r.unwrap_err().sqlstate, "0A000", "{o}");
        }
        for (k, v) in [
            ("client_encoding", "sjis"),
            ("client_encoding", "windows_936"),
            ("standard_conforming_strings", "off"),
        ] {
            assert_eq!(
                params(&[("user", "a"), (k, v)]).unwrap_err().sqlstate,
                "0A000"
            );
        }
        for o in [
            "-c standard_conforming_strings=on",
            "-c client_encoding=LATIN1",
        ] {
            assert!(params(&[("user", "a"), ("options", o)]).is_ok(), "{o}");
        }
        assert!(params(&[("user", "a"), ("client_encoding", "UTF8")]).is_ok());
        assert!(params(&[("user", "a"), ("standard_conforming_strings", "on")]).is_ok());
    }

    #[test]
    fn identity_parameters_are_refused() {
        for p in [
            "role",
            "session_authorization",
            "ROLE",
            "session_replication_role",
            "log_min_error_statement",
            "made_up",
        ] {
            assert!(params(&[("user", "a"), (p, "postgres")]).is_err());
        }
        let r = params(&[("user", "a"), ("replication", "database")]).unwrap_err();
        assert_eq!(r.sqlstate, "0A000");
        assert!(params(&[("user", "a"), ("replication", "false")]).is_ok());
    }

    #[test]
    fn split_follows_server_rules() {
        assert_eq!(
            split_options("  -c a=b\\ c   --x=y "),
            vec!["-c", "a=b c", "--x=y"]
        );
        assert!(split_options("   ").is_empty());
    }
}
