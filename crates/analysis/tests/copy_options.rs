//! The options of COPY ... TO STDOUT, as the proxy needs them to read the
//! output's layout.

use portcullis_analysis::{analyze, CopyOptions};

fn options(sql: &str) -> Option<CopyOptions> {
    analyze(sql).unwrap().statements[0].copy_out.clone()
}

#[test]
fn new_and_old_syntax_give_the_same_options() {
    let new = options("COPY t TO STDOUT (FORMAT csv, HEADER, DELIMITER ';', NULL 'x')").unwrap();
    let old = options("COPY t TO STDOUT WITH CSV HEADER DELIMITER ';' NULL 'x'").unwrap();
    assert_eq!(new, old);
    assert_eq!(new.format.as_deref(), Some("csv"));
    assert_eq!(new.header.as_deref(), Some("true"));
    assert_eq!(new.delimiter.as_deref(), Some(";"));
    assert_eq!(new.null.as_deref(), Some("x"));
    assert!(!new.unknown);
    let binary = options("COPY (SELECT 1) TO STDOUT WITH BINARY").unwrap();
    assert_eq!(binary.format.as_deref(), Some("binary"));
}

#[test]
fn header_values_are_read_as_the_server_reads_them() {
    for (value, header) in [
        ("", Some("true")),
        (" true", Some("true")),
        (" ON", Some("true")),
        (" 1", Some("true")),
        (" off", Some("false")),
        (" 0", Some("false")),
        (" match", Some("match")),
        // parse_bool would take these; COPY's header does not.
        (" 'fals'", None),
        (" yes", None),
    ] {
        let o = options(&format!("COPY t TO STDOUT (FORMAT csv, HEADER{value})")).unwrap();
        assert_eq!(o.header.as_deref(), header, "{value}");
        assert_eq!(o.unknown, header.is_none(), "{value}");
    }
}

#[test]
fn only_copy_to_the_client_has_output_options() {
    assert_eq!(options("COPY t FROM STDIN (FORMAT csv)"), None);
    assert_eq!(options("COPY t TO '/tmp/x' (FORMAT csv)"), None);
    assert_eq!(options("SELECT 1"), None);
    let o = options("COPY t TO STDOUT (FORCE_QUOTE *, ENCODING 'latin1')").unwrap();
    assert_eq!(o.encoding.as_deref(), Some("latin1"));
    assert!(!o.unknown);
    assert!(
        options("COPY t TO STDOUT (SOMETHING_NEW 1)")
            .unwrap()
            .unknown
    );
}
