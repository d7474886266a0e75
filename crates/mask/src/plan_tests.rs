use super::*;

const TEXT: u32 = 25;
const INT4: u32 = 23;
const VARCHAR: u32 = 1043;

fn col(oid: u32, typmod: i32, format: Format, rule: Rule) -> ColumnSpec {
    ColumnSpec {
        ty: ColumnType { oid, typmod },
        format,
        rule,
    }
}

fn masker(key: Option<&[u8]>) -> Masker {
    Masker::new(
        MaskSettings {
            key: key.map(<[u8]>::to_vec),
            ..MaskSettings::default()
        },
        Detectors::new(),
    )
}

/// A DataRow body from values (None: NULL).
fn body(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

const EMAIL: Rule = Rule::Mask {
    class: Class::Email,
    strategy: Strategy::Partial,
};

#[test]
fn masks_nothing_only_when_every_column_passes() {
    let m = masker(None);
    let pass = m
        .plan(&[
            col(TEXT, -1, Format::Text, Rule::Pass),
            col(INT4, -1, Format::Binary, Rule::Pass),
        ])
        .unwrap();
    assert!(pass.masks_nothing());
    let mut out = vec![9];
    let row = body(&[Some(b"x"), Some(&[0, 0, 0, 1])]);
    assert_eq!(pass.data_row(&row, &mut out), Ok(Rewrite::Unchanged));
    assert_eq!(out, [9]);
    for rule in [EMAIL, Rule::Derived, Rule::Scan { context: None }] {
        let plan = m
            .plan(&[
                col(TEXT, -1, Format::Text, Rule::Pass),
                col(TEXT, -1, Format::Text, rule),
            ])
            .unwrap();
        assert!(!plan.masks_nothing(), "{rule:?}");
    }
}

#[test]
fn rewrites_masked_columns_and_keeps_the_rest() {
    let m = masker(None);
    let plan = m
        .plan(&[
            col(INT4, -1, Format::Binary, Rule::Pass),
            col(TEXT, -1, Format::Text, EMAIL),
            col(INT4, -1, Format::Binary, Rule::Derived),
            col(
                VARCHAR,
                8,
                Format::Text,
                Rule::Mask {
                    class: Class::Secret,
                    strategy: Strategy::Nullify,
                },
            ),
        ])
        .unwrap();
    let mut out = b"prev".to_vec();
    let row = body(&[
        Some(&[0, 0, 0, 7]),
        Some(b"alice@example.com"),
        Some(&[0, 0, 0, 9]),
        Some(b"pw"),
    ]);
    assert_eq!(plan.data_row(&row, &mut out), Ok(Rewrite::Rewritten));
    let want = body(&[
        Some(&[0, 0, 0, 7]),
        Some(b"a****@example.com"),
        Some(&[0, 0, 0, 0]),
        None,
    ]);
    assert_eq!(&out[..4], b"prev");
    assert_eq!(out[4..], message(b'D', &want));
}

#[test]
fn rows_that_need_no_change_are_unchanged() {
    let m = masker(None);
    let plan = m
        .plan(&[
            col(TEXT, -1, Format::Text, EMAIL),
            col(TEXT, -1, Format::Text, Rule::Scan { context: None }),
        ])
        .unwrap();
    let mut out = Vec::new();
    // NULL hides nothing; the (placeholder) detectors find nothing.
    assert_eq!(
        plan.data_row(&body(&[None, Some(b"hello")]), &mut out),
        Ok(Rewrite::Unchanged)
    );
    // A value already masked masks to itself.
    assert_eq!(
        plan.data_row(&body(&[Some(b"a****@x.org"), None]), &mut out),
        Ok(Rewrite::Unchanged)
    );
    assert!(out.is_empty());
}

#[test]
fn malformed_rows_are_errors_and_leave_out_alone() {
    let m = masker(None);
    let plan = m
        .plan(&[
            col(TEXT, -1, Format::Text, EMAIL),
            col(INT4, -1, Format::Text, Rule::Derived),
        ])
        .unwrap();
    let mut out = b"keep".to_vec();
    assert_eq!(
        plan.data_row(&body(&[Some(b"a@b")]), &mut out),
        Err(MaskError::ColumnCount {
            expected: 2,
            got: 1
        })
    );
    let good = body(&[Some(b"a@b"), Some(b"1")]);
    for bad in [
        &good[..good.len() - 1],
        &[good.clone(), vec![0]].concat()[..],
        &good[..1],
        &[0xff, 0xff][..],
    ] {
        assert!(plan.data_row(bad, &mut out).is_err(), "{bad:?}");
    }
    // A negative length other than -1.
    let mut neg = good.clone();
    neg[2..6].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(plan.data_row(&neg, &mut out), Err(MaskError::Malformed));
    assert_eq!(out, b"keep");
}

#[test]
fn keyed_needs_a_key() {
    let keyed = [col(
        TEXT,
        -1,
        Format::Text,
        Rule::Mask {
            class: Class::Email,
            strategy: Strategy::Keyed,
        },
    )];
    assert!(masker(None).plan(&keyed).is_err());
    let plan = masker(Some(b"k")).plan(&keyed).unwrap();
    let mut a = Vec::new();
    let mut b = Vec::new();
    plan.data_row(&body(&[Some(b"x@y.z")]), &mut a).unwrap();
    masker(Some(b"k"))
        .plan(&keyed)
        .unwrap()
        .data_row(&body(&[Some(b"x@y.z")]), &mut b)
        .unwrap();
    assert_eq!(a, b, "same key, same token across plans");
}

#[test]
fn oversized_values_get_the_constant_unread() {
    let m = Masker::new(
        MaskSettings {
            max_value_bytes: 4,
            ..MaskSettings::default()
        },
        Detectors::new(),
    );
    let plan = m
        .plan(&[col(TEXT, -1, Format::Text, Rule::Scan { context: None })])
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        plan.data_row(&body(&[Some(b"1234")]), &mut out),
        Ok(Rewrite::Unchanged)
    );
    assert_eq!(
        plan.data_row(&body(&[Some(b"12345")]), &mut out),
        Ok(Rewrite::Rewritten)
    );
    assert_eq!(out, message(b'D', &body(&[Some(b"****")])));
}

/// Rows per second through a plan with three masked columns of five (a
/// rough number; run with `cargo test --release -p portcullis-mask --
/// --ignored --nocapture throughput`).
#[test]
#[ignore]
fn throughput() {
    let m = masker(Some(b"k"));
    let plan = m
        .plan(&[
            col(INT4, -1, Format::Binary, Rule::Pass),
            col(TEXT, -1, Format::Text, EMAIL),
            col(
                TEXT,
                -1,
                Format::Text,
                Rule::Mask {
                    class: Class::Card,
                    strategy: Strategy::Partial,
                },
            ),
            col(
                TEXT,
                -1,
                Format::Text,
                Rule::Mask {
                    class: Class::PersonName,
                    strategy: Strategy::Redact,
                },
            ),
            col(TEXT, -1, Format::Text, Rule::Pass),
        ])
        .unwrap();
    let rows: Vec<Vec<u8>> = (0..1000)
        .map(|i: i32| {
            let email = format!("user{i}@example.com");
            let card = format!("4111 1111 1111 {i:04}");
            body(&[
                Some(&i.to_be_bytes()),
                Some(email.as_bytes()),
                Some(card.as_bytes()),
                Some(b"Jane Q. Public"),
                Some(b"some other text in the row"),
            ])
        })
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let n = 1_000_000;
    let start = std::time::Instant::now();
    for i in 0..n {
        if out.len() > 1 << 19 {
            out.clear();
        }
        plan.data_row(&rows[i % rows.len()], &mut out).unwrap();
    }
    let masked = start.elapsed();
    let start = std::time::Instant::now();
    for i in 0..n {
        if out.len() > 1 << 19 {
            out.clear();
        }
        out.extend_from_slice(&rows[i % rows.len()]);
    }
    let copied = start.elapsed();
    eprintln!(
        "{n} rows: masked in {masked:?} ({:.0} rows/s), plain copy {copied:?}",
        n as f64 / masked.as_secs_f64()
    );
}
