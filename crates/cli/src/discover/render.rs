//! The reviewable file: `[[column]]` entries, as `[masking] include`
//! reads them, with the evidence for each as comments. Pure: no I/O.
//!
//! Only names and counts reach this module (see `tally`), so no sampled
//! value can be written. Names are the database's and may hold anything;
//! they are escaped wherever they are written, so a name cannot end a
//! comment or a string and add entries of its own.

use std::fmt::Write;

use portcullis_mask::Strategy;

use super::tally::{Basis, Evidence, Finding};

/// One sampled column and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub finding: Finding,
    /// Values over the size cap, not scanned.
    pub oversized: u64,
}

impl ColumnReport {
    /// `schema.table.column`, or `None` when a name holds a dot (the
    /// configuration cannot name such a column).
    fn configured_name(&self) -> Option<String> {
        let parts = [&self.schema, &self.table, &self.column];
        (!parts.iter().any(|p| p.contains('.')))
            .then(|| format!("{}.{}.{}", self.schema, self.table, self.column))
    }

    fn shown(&self) -> String {
        comment_safe(&format!("{}.{}.{}", self.schema, self.table, self.column))
    }
}

/// A relation or column that could not be sampled, and why (never the
/// server's message, which could quote a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `schema.table` or `schema.table.column`.
    pub what: String,
    pub reason: &'static str,
    pub sqlstate: String,
}

/// Everything the file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub target: String,
    pub rows: u64,
    pub min_share: f64,
    pub max_value_bytes: usize,
    pub relations: usize,
    pub columns: Vec<ColumnReport>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// How many entries the file proposes.
    pub fn proposals(&self) -> usize {
        self.columns
            .iter()
            .filter(|c| matches!(c.finding, Finding::Propose(_)) && c.configured_name().is_some())
            .count()
    }
}

/// The file's text. Entries and notes are sorted by schema, table and
/// column, so two runs over the same data give the same file.
pub fn render(report: &Report) -> String {
    let mut columns: Vec<&ColumnReport> = report.columns.iter().collect();
    columns.sort_by(|a, b| (&a.schema, &a.table, &a.column).cmp(&(&b.schema, &b.table, &b.column)));
    let mut skipped: Vec<&Skipped> = report.skipped.iter().collect();
    skipped.sort_by(|a, b| a.what.cmp(&b.what));

    let mut out = String::new();
    header(&mut out, report);

    let mut proposed = 0;
    let mut unnamed = Vec::new();
    for c in &columns {
        let Finding::Propose(e) = &c.finding else {
            continue;
        };
        let Some(name) = c.configured_name() else {
            unnamed.push(*c);
            continue;
        };
        proposed += 1;
        let _ = writeln!(
            out,
            "\n# {}: {}{}",
            c.shown(),
            evidence(e),
            oversized(c.oversized)
        );
        let _ = writeln!(out, "[[column]]");
        let _ = writeln!(out, "target = {}", toml_string(&report.target));
        let _ = writeln!(out, "column = {}", toml_string(&name));
        let _ = writeln!(out, "class = {}", toml_string(e.class.name()));
        let _ = writeln!(
            out,
            "# strategy = \"{}\"   # the class's default; or redact, partial, keyed, nullify, generalise",
            Strategy::default_for(e.class).name()
        );
    }
    if proposed == 0 {
        out.push_str("\n# Nothing to propose.\n");
    }

    let mut section = |title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n# {title}");
        for l in lines {
            let _ = writeln!(out, "#   {l}");
        }
    };
    section(
        "Already classified (no entry needed):",
        columns
            .iter()
            .filter_map(|c| match &c.finding {
                Finding::Classified {
                    class,
                    basis,
                    content,
                } => Some(format!(
                    "{}: {class}, {}{}",
                    c.shown(),
                    from(*basis),
                    judged(Some(*class), content.as_ref())
                )),
                Finding::NotSensitive { basis, content } => Some(format!(
                    "{}: not sensitive, {}{}",
                    c.shown(),
                    from(*basis),
                    judged(None, content.as_ref())
                )),
                _ => None,
            })
            .collect(),
    );
    section(
        "Found in fewer values than the minimum share (no entry):",
        columns
            .iter()
            .filter_map(|c| match &c.finding {
                Finding::Below(e) => Some(format!("{}: {}", c.shown(), evidence(e))),
                _ => None,
            })
            .collect(),
    );
    section(
        "Cannot be named as schema.table.column (a name holds a dot); classify it with a column comment such as 'pii:email':",
        unnamed
            .iter()
            .filter_map(|c| match &c.finding {
                Finding::Propose(e) => Some(format!("{}: {}", c.shown(), evidence(e))),
                _ => None,
            })
            .collect(),
    );
    section(
        "Not sampled:",
        skipped
            .iter()
            .map(|s| {
                format!(
                    "{}: {} (SQLSTATE {})",
                    comment_safe(&s.what),
                    s.reason,
                    comment_safe(&s.sqlstate)
                )
            })
            .collect(),
    );
    out
}

fn header(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "# Column classifications proposed by `portcullis discover` for target {}.",
        comment_safe(&toml_string(&r.target))
    );
    out.push_str(
        "#\n\
         # Review every entry, then name this file in the configuration:\n\
         #\n\
         #   [masking]\n\
         #   include = [\"<this file, relative to the configuration's folder>\"]\n\
         #\n\
         # The evidence is counts only: no sampled value is written here.\n",
    );
    let _ = writeln!(
        out,
        "# Sampled: up to {} non-null values of each text column of {} relation(s); values\n\
         # over {} bytes are counted, not scanned. An entry is proposed when one class is\n\
         # found in at least {} of a column's values and nothing classifies it yet.",
        r.rows,
        r.relations,
        r.max_value_bytes,
        percent(r.min_share)
    );
}

fn evidence(e: &Evidence) -> String {
    format!(
        "{} in {} of {} values ({})",
        e.class,
        e.hits,
        e.values,
        percent(e.share())
    )
}

fn oversized(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("; {n} oversized value(s) not scanned")
    }
}

fn from(basis: Basis) -> &'static str {
    match basis {
        Basis::Configuration => "by the configuration",
        Basis::Catalog => "by its name or comment",
    }
}

/// What the values say about a classified column, when one class reached
/// the minimum share.
fn judged(class: Option<portcullis_mask::Class>, content: Option<&Evidence>) -> String {
    match content {
        None => String::new(),
        Some(e) if Some(e.class) == class => format!("; the values agree: {}", evidence(e)),
        Some(e) => format!("; CHECK IT, the values say: {}", evidence(e)),
    }
}

/// Rounded down, so 99.9% never reads as 100%.
fn percent(share: f64) -> String {
    let tenths = (share * 1000.0).floor() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}%")
    } else {
        format!("{tenths:.1}%")
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a comment line: control characters (a newline would end the
/// comment) are written escaped.
fn comment_safe(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_mask::Class;

    fn col(table: &str, column: &str, finding: Finding) -> ColumnReport {
        ColumnReport {
            schema: "public".into(),
            table: table.into(),
            column: column.into(),
            finding,
            oversized: 0,
        }
    }

    fn ev(class: Class, hits: u64, values: u64) -> Evidence {
        Evidence {
            class,
            hits,
            values,
        }
    }

    fn report(columns: Vec<ColumnReport>) -> Report {
        Report {
            target: "shop".into(),
            rows: 1000,
            min_share: 0.5,
            max_value_bytes: 8192,
            relations: 2,
            columns,
            skipped: vec![Skipped {
                what: "public.secret".into(),
                reason: "permission denied",
                sqlstate: "42501".into(),
            }],
        }
    }

    #[test]
    fn proposals_are_entries_sorted_and_the_rest_are_comments() {
        let r = report(vec![
            col("t", "z", Finding::Propose(ev(Class::Card, 2, 3))),
            col("t", "a", Finding::Propose(ev(Class::Email, 3, 3))),
            col(
                "t",
                "email",
                Finding::Classified {
                    class: Class::Email,
                    basis: Basis::Catalog,
                    content: Some(ev(Class::Email, 3, 3)),
                },
            ),
            col(
                "t",
                "contact",
                Finding::Classified {
                    class: Class::Email,
                    basis: Basis::Configuration,
                    content: Some(ev(Class::Card, 2, 3)),
                },
            ),
            col(
                "t",
                "misc",
                Finding::NotSensitive {
                    basis: Basis::Configuration,
                    content: None,
                },
            ),
            col("t", "remarks", Finding::Below(ev(Class::Phone, 1, 9))),
            col("t", "clean", Finding::Clean),
        ]);
        let text = render(&r);
        assert_eq!(r.proposals(), 2);
        let a = text.find("column = \"public.t.a\"").unwrap();
        let z = text.find("column = \"public.t.z\"").unwrap();
        assert!(a < z, "{text}");
        assert!(text.contains("# public.t.a: email in 3 of 3 values (100%)\n[[column]]\ntarget = \"shop\"\ncolumn = \"public.t.a\"\nclass = \"email\"\n# strategy = \"partial\""), "{text}");
        assert!(text.contains("card in 2 of 3 values (66.6%)"), "{text}");
        assert!(
            text.contains("#   public.t.email: email, by its name or comment; the values agree"),
            "{text}"
        );
        assert!(
            text.contains(
                "#   public.t.contact: email, by the configuration; CHECK IT, the values say: card"
            ),
            "{text}"
        );
        assert!(
            text.contains("#   public.t.misc: not sensitive, by the configuration\n"),
            "{text}"
        );
        assert!(
            text.contains("#   public.t.remarks: phone in 1 of 9 values (11.1%)"),
            "{text}"
        );
        assert!(!text.contains("clean"), "{text}");
        assert!(
            text.contains("#   public.secret: permission denied (SQLSTATE 42501)"),
            "{text}"
        );
        // The same report renders the same, whatever the input order.
        let mut reversed = r.clone();
        reversed.columns.reverse();
        assert_eq!(render(&reversed), text);
    }

    #[test]
    fn nothing_found_says_so() {
        let text = render(&report(vec![col("t", "c", Finding::Clean)]));
        assert!(text.contains("# Nothing to propose."), "{text}");
        assert!(!text.contains("[[column]]"), "{text}");
    }

    #[test]
    fn hostile_names_stay_inside_their_string_or_comment() {
        let r = report(vec![
            col(
                "t",
                "x\"\n[[column]]\nclass = \"none",
                Finding::Propose(ev(Class::Email, 1, 1)),
            ),
            col("t", "y\n[[column]]", Finding::Below(ev(Class::Email, 1, 9))),
            col("a.b", "c", Finding::Propose(ev(Class::Email, 1, 1))),
        ]);
        let text = render(&r);
        // Every line is a comment, a table header or one of the three keys
        // of an entry; there is exactly one entry.
        for line in text.lines() {
            assert!(
                line.is_empty()
                    || line.starts_with('#')
                    || line == "[[column]]"
                    || line.starts_with("target = ")
                    || line.starts_with("column = ")
                    || line.starts_with("class = "),
                "{line:?} in\n{text}"
            );
        }
        assert_eq!(text.matches("[[column]]\n").count(), 1, "{text}");
        assert!(
            text.contains("column = \"public.t.x\\\"\\u000A[[column]]\\u000Aclass = \\\"none\""),
            "{text}"
        );
        assert!(
            text.contains("public.a.b.c: email in 1 of 1 values"),
            "{text}"
        );
        assert_eq!(r.proposals(), 1);
    }

    #[test]
    fn percentages_round_down() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.9999), "99.9%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.0), "0%");
    }
}
