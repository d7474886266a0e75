//! Every supported type × format × strategy, decoded back and checked.

use super::*;
use crate::datetime::{days_from_civil, PG_EPOCH_DAYS, USECS_PER_DAY};
use crate::kind::oid;
use crate::validate;

const KEY: &[u8] = b"test key";

fn ty(oid: u32, typmod: i32) -> ColumnType {
    ColumnType { oid, typmod }
}

fn numeric_typmod(p: i32, s: i32) -> i32 {
    ((p << 16) | s) + 4
}

fn mask(t: ColumnType, f: Format, class: Option<Class>, s: Strategy, v: &[u8]) -> Masked {
    mask_value(t, f, class, s, Some(KEY), v).unwrap()
}

fn value(m: Masked) -> Vec<u8> {
    match m {
        Masked::Value(v) => v,
        Masked::Null => panic!("expected a value, got NULL"),
    }
}

fn text(t: ColumnType, class: Class, s: Strategy, v: &str) -> String {
    String::from_utf8(value(mask(t, Format::Text, Some(class), s, v.as_bytes()))).unwrap()
}

fn bin(t: ColumnType, class: Class, s: Strategy, v: &[u8]) -> Vec<u8> {
    value(mask(t, Format::Binary, Some(class), s, v))
}

fn date_bin(y: i64, m: u32, d: u32) -> Vec<u8> {
    ((days_from_civil(y, m, d) - PG_EPOCH_DAYS) as i32)
        .to_be_bytes()
        .to_vec()
}

fn ts_bin(y: i64, m: u32, d: u32, secs: i64) -> Vec<u8> {
    ((days_from_civil(y, m, d) - PG_EPOCH_DAYS) * USECS_PER_DAY + secs * 1_000_000)
        .to_be_bytes()
        .to_vec()
}

fn numeric_bin(t: &str) -> Vec<u8> {
    let mut out = Vec::new();
    crate::numeric::text_to_binary(t.as_bytes(), &mut out).unwrap();
    out
}

fn int_array_bin(elems: &[Option<i32>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&1i32.to_be_bytes());
    v.extend_from_slice(&i32::from(elems.iter().any(Option::is_none)).to_be_bytes());
    v.extend_from_slice(&oid::INT4.to_be_bytes());
    v.extend_from_slice(&(elems.len() as i32).to_be_bytes());
    v.extend_from_slice(&1i32.to_be_bytes());
    for e in elems {
        match e {
            Some(n) => {
                v.extend_from_slice(&4i32.to_be_bytes());
                v.extend_from_slice(&n.to_be_bytes());
            }
            None => v.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    v
}

/// One sample per supported type: (type, text form, binary form).
fn samples() -> Vec<(ColumnType, &'static str, Vec<u8>)> {
    let uuid = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ];
    let json = r#"{"email": "alice@example.com", "n": [1, 2]}"#;
    vec![
        (
            ty(oid::TEXT, -1),
            "alice@example.com",
            b"alice@example.com".to_vec(),
        ),
        (ty(oid::VARCHAR, 8), "abcd", b"abcd".to_vec()),
        (
            ty(oid::VARCHAR, 34),
            "4111 1111 1111 1234",
            b"4111 1111 1111 1234".to_vec(),
        ),
        (ty(oid::BPCHAR, 10), "ab12  ", b"ab12  ".to_vec()),
        (ty(oid::NAME, -1), "someone", b"someone".to_vec()),
        (ty(oid::UNKNOWN, -1), "literal", b"literal".to_vec()),
        (ty(oid::INT2, -1), "1234", 1234i16.to_be_bytes().to_vec()),
        (
            ty(oid::INT4, -1),
            "123456",
            123_456i32.to_be_bytes().to_vec(),
        ),
        (
            ty(oid::INT8, -1),
            "4111111111111111",
            4_111_111_111_111_111i64.to_be_bytes().to_vec(),
        ),
        (ty(oid::NUMERIC, -1), "12345.678", numeric_bin("12345.678")),
        (
            ty(oid::NUMERIC, numeric_typmod(7, 2)),
            "12345.67",
            numeric_bin("12345.67"),
        ),
        (
            ty(oid::NUMERIC, numeric_typmod(3, 5)),
            "0.00123",
            numeric_bin("0.00123"),
        ),
        (
            ty(oid::FLOAT4, -1),
            "1234.5",
            1234.5f32.to_be_bytes().to_vec(),
        ),
        (
            ty(oid::FLOAT8, -1),
            "98765.4321",
            98765.4321f64.to_be_bytes().to_vec(),
        ),
        (ty(oid::BOOL, -1), "t", vec![1]),
        (ty(oid::DATE, -1), "1985-04-12", date_bin(1985, 4, 12)),
        (
            ty(oid::TIMESTAMP, -1),
            "1985-04-12 10:11:12.5",
            ts_bin(1985, 4, 12, 36_672),
        ),
        (
            ty(oid::TIMESTAMPTZ, -1),
            "1985-04-12 10:11:12+02",
            ts_bin(1985, 4, 12, 29_472),
        ),
        (
            ty(oid::TIME, -1),
            "13:45:10",
            (49_510i64 * 1_000_000).to_be_bytes().to_vec(),
        ),
        (
            ty(oid::UUID, -1),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            uuid.to_vec(),
        ),
        (ty(oid::JSON, -1), json, json.as_bytes().to_vec()),
        (
            ty(oid::JSONB, -1),
            json,
            [&[1u8][..], json.as_bytes()].concat(),
        ),
        (
            ty(oid::INET, -1),
            "192.168.17.5",
            vec![2, 32, 0, 4, 192, 168, 17, 5],
        ),
        (
            ty(oid::INET, -1),
            "2001:db8::1/64",
            [
                &[3u8, 64, 0, 16][..],
                &"2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ]
            .concat(),
        ),
        (
            ty(oid::CIDR, -1),
            "10.1.2.0/24",
            vec![2, 24, 1, 4, 10, 1, 2, 0],
        ),
        (ty(oid::BYTEA, -1), "\\x0102ff", vec![1, 2, 255]),
        (
            ty(1007, -1),
            "{1,NULL,3}",
            int_array_bin(&[Some(1), None, Some(3)]),
        ),
        (ty(1015, 7), "{abc,NULL,\"x y\"}", Vec::new()),
        (ty(1009, -1), "{\"a,b\",\"\\\"q\\\"\"}", Vec::new()),
    ]
}

#[test]
fn every_type_format_and_strategy_gives_a_valid_value() {
    for (t, text_form, bin_form) in samples() {
        let kind = Kind::of(t, &[]);
        for (format, v) in [
            (Format::Text, text_form.as_bytes()),
            (Format::Binary, &bin_form[..]),
        ] {
            if format == Format::Binary && v.is_empty() {
                continue;
            }
            // The sample itself is valid, so the validator is not trivially
            // failing everything.
            validate::check(kind, format, v)
                .unwrap_or_else(|e| panic!("sample {t:?} {format:?}: {e}"));
            for class in [
                Some(Class::Email),
                Some(Class::Card),
                Some(Class::DateOfBirth),
                None,
            ] {
                for strategy in Strategy::ALL {
                    let out = mask(t, format, class, strategy, v);
                    let what = format!("{t:?} {format:?} {class:?} {strategy:?}");
                    match out {
                        Masked::Null => {
                            assert!(
                                strategy == Strategy::Nullify && class.is_some(),
                                "unexpected NULL: {what}"
                            )
                        }
                        Masked::Value(m) => {
                            assert!(
                                strategy != Strategy::Nullify || class.is_none(),
                                "Nullify gave a value: {what}"
                            );
                            validate::check(kind, format, &m).unwrap_or_else(|e| {
                                panic!("{what}: {e}: {:?}", String::from_utf8_lossy(&m))
                            });
                            if format == Format::Text || kind_is_text(kind) {
                                assert!(std::str::from_utf8(&m).is_ok(), "{what}");
                            }
                            // Redact and keyed never give the value back.
                            if matches!(strategy, Strategy::Redact | Strategy::Keyed)
                                || class.is_none()
                            {
                                assert_ne!(m, v, "{what}");
                            }
                        }
                    }
                }
            }
        }
    }
}

fn kind_is_text(kind: Kind) -> bool {
    matches!(kind, Kind::Scalar(s) if s.is_text())
}

#[test]
fn text_limits_hold() {
    let varchar4 = ty(oid::VARCHAR, 8);
    assert_eq!(
        text(varchar4, Class::Email, Strategy::Keyed, "a@b.c")
            .chars()
            .count(),
        4
    );
    assert_eq!(
        text(
            ty(oid::VARCHAR, 6),
            Class::Secret,
            Strategy::Redact,
            "abcdef"
        ),
        "**"
    );
    let char6 = ty(oid::BPCHAR, 10);
    assert_eq!(
        text(char6, Class::Secret, Strategy::Redact, "abcdef"),
        "****  "
    );
    assert_eq!(
        text(char6, Class::Secret, Strategy::Keyed, "ab    ").len(),
        6
    );
    assert_eq!(
        text(char6, Class::Phone, Strategy::Partial, "12 34 "),
        "** ** "
    );
    assert_eq!(
        text(ty(oid::TEXT, -1), Class::Token, Strategy::Keyed, "x").len(),
        28
    );
}

#[test]
fn partial_text() {
    let t = ty(oid::TEXT, -1);
    assert_eq!(
        text(t, Class::Email, Strategy::Partial, "alice@example.com"),
        "a****@example.com"
    );
    assert_eq!(
        text(t, Class::Card, Strategy::Partial, "4111-1111-1111-1234"),
        "****-****-****-1234"
    );
    assert_eq!(
        text(
            t,
            Class::Iban,
            Strategy::Partial,
            "GB82 WEST 1234 5698 7654 32"
        ),
        "**** **** **** **** **54 32"
    );
    assert_eq!(
        text(t, Class::Password, Strategy::Partial, "hunter22hunter"),
        "**************"
    );
    // Invalid UTF-8 is starred byte by byte and comes out valid.
    assert_eq!(
        value(mask(
            t,
            Format::Text,
            Some(Class::Secret),
            Strategy::Partial,
            b"a\xff\xfeb"
        )),
        b"****"
    );
    // Partial of a non-text type is its constant.
    assert_eq!(
        bin(
            ty(oid::INT8, -1),
            Class::Card,
            Strategy::Partial,
            &5i64.to_be_bytes()
        ),
        [0; 8]
    );
}

#[test]
fn redacted_constants() {
    let r = |o, f, v: &[u8]| value(mask(ty(o, -1), f, Some(Class::Secret), Strategy::Redact, v));
    assert_eq!(r(oid::INT4, Format::Text, b"42"), b"0");
    assert_eq!(r(oid::INT2, Format::Binary, &[0, 42]), [0, 0]);
    assert_eq!(r(oid::DATE, Format::Text, b"1985-04-12"), b"1970-01-01");
    assert_eq!(
        r(oid::DATE, Format::Binary, &[0; 4]),
        (-10_957i32).to_be_bytes()
    );
    assert_eq!(
        r(oid::TIMESTAMPTZ, Format::Text, b"x"),
        b"1970-01-01 00:00:00+00"
    );
    assert_eq!(r(oid::UUID, Format::Binary, &[7; 16]), [0; 16]);
    assert_eq!(r(oid::JSONB, Format::Binary, b"\x01{}"), b"\x01\"****\"");
    assert_eq!(r(oid::JSON, Format::Text, b"{}"), b"\"****\"");
    assert_eq!(
        r(oid::INET, Format::Binary, &[2, 32, 0, 4, 1, 2, 3, 4]),
        [2, 32, 0, 4, 0, 0, 0, 0]
    );
    assert_eq!(r(oid::CIDR, Format::Text, b"1.2.3.0/24"), b"0.0.0.0/32");
    assert_eq!(r(oid::BYTEA, Format::Text, b"\\x01"), b"\\x");
    assert_eq!(r(oid::BYTEA, Format::Binary, &[1]), b"");
    assert_eq!(r(oid::BOOL, Format::Text, b"t"), b"f");
    // Numeric binary zero: ndigits 0, weight 0, positive, dscale 0.
    assert_eq!(r(oid::NUMERIC, Format::Binary, &numeric_bin("5")), [0; 8]);
}

#[test]
fn derived_and_unknown() {
    // Derived: the type's constant whatever the strategy.
    let d = |o, s| mask(ty(o, -1), Format::Text, None, s, b"1985-04-12");
    assert_eq!(
        d(oid::DATE, Strategy::Nullify),
        Masked::Value(b"1970-01-01".to_vec())
    );
    assert_eq!(
        d(oid::TEXT, Strategy::Keyed),
        Masked::Value(b"****".to_vec())
    );
    // Unknown OIDs (enums, domains, extension types) are nulled.
    for s in Strategy::ALL {
        assert_eq!(
            mask(ty(123_456, -1), Format::Text, Some(Class::Email), s, b"x"),
            Masked::Null
        );
        assert_eq!(
            mask(ty(123_456, -1), Format::Binary, None, s, b"x"),
            Masked::Null
        );
    }
}

#[test]
fn generalised_values() {
    let g = Strategy::Generalise;
    let c = Class::DateOfBirth;
    assert_eq!(text(ty(oid::DATE, -1), c, g, "1985-04-12"), "1985-01-01");
    assert_eq!(
        text(ty(oid::DATE, -1), c, g, "0044-03-15 BC"),
        "0044-01-01 BC"
    );
    assert_eq!(text(ty(oid::DATE, -1), c, g, "infinity"), "infinity");
    // Another DateStyle is not read: the constant.
    assert_eq!(text(ty(oid::DATE, -1), c, g, "12.04.1985"), "1970-01-01");
    assert_eq!(
        bin(ty(oid::DATE, -1), c, g, &date_bin(1985, 4, 12)),
        date_bin(1985, 1, 1)
    );
    assert_eq!(
        bin(ty(oid::TIMESTAMPTZ, -1), c, g, &ts_bin(1985, 4, 12, 999)),
        ts_bin(1985, 1, 1, 0)
    );
    assert_eq!(
        text(ty(oid::TIMESTAMPTZ, -1), c, g, "1985-04-12 10:11:12+02"),
        "1985-01-01 00:00:00+00"
    );
    assert_eq!(
        text(ty(oid::TIMESTAMP, -1), c, g, "1985-04-12 10:11:12"),
        "1985-01-01 00:00:00"
    );
    assert_eq!(text(ty(oid::TIME, -1), c, g, "13:45:10.5"), "13:00:00");
    assert_eq!(text(ty(oid::TEXT, -1), c, g, "1985-04-12"), "1985-01-01");
    assert_eq!(text(ty(oid::TEXT, -1), c, g, "Main Street"), "****");
    assert_eq!(text(ty(oid::INT4, -1), c, g, "-123456"), "-100000");
    assert_eq!(
        bin(ty(oid::INT2, -1), c, g, &999i16.to_be_bytes()),
        100i16.to_be_bytes()
    );
    assert_eq!(text(ty(oid::NUMERIC, -1), c, g, "12345.678"), "10000");
    let mut back = Vec::new();
    crate::numeric::binary_to_text(
        &bin(ty(oid::NUMERIC, -1), c, g, &numeric_bin("0.0345")),
        &mut back,
    )
    .unwrap();
    assert_eq!(back, b"0.01");
    assert_eq!(
        bin(ty(oid::FLOAT8, -1), c, g, &98765.4321f64.to_be_bytes()),
        10000f64.to_be_bytes()
    );
    assert_eq!(text(ty(oid::FLOAT4, -1), c, g, "NaN"), "NaN");
    assert_eq!(
        text(ty(oid::INET, -1), c, g, "192.168.17.5"),
        "192.168.17.0/24"
    );
    let v6 = bin(
        ty(oid::INET, -1),
        c,
        g,
        &[
            &[3u8, 128, 0, 16][..],
            &[0x20, 1, 0x0d, 0xb8, 0xab, 0xcd, 0x12, 0x34],
            &[9; 8],
        ]
        .concat(),
    );
    assert_eq!(
        v6,
        [
            &[3u8, 48, 0, 16][..],
            &[0x20, 1, 0x0d, 0xb8, 0xab, 0xcd],
            &[0; 10]
        ]
        .concat()
    );
    assert_eq!(
        bin(ty(oid::CIDR, -1), c, g, &[2, 28, 1, 4, 10, 1, 2, 16]),
        [2, 24, 1, 4, 10, 1, 2, 0]
    );
}

#[test]
fn keyed_values_are_deterministic_and_typed() {
    let k = Strategy::Keyed;
    let c = Class::Email;
    let t = ty(oid::TEXT, -1);
    assert_eq!(
        text(t, c, k, "alice@example.com"),
        text(t, c, k, "alice@example.com")
    );
    assert_ne!(
        text(t, c, k, "alice@example.com"),
        text(t, c, k, "bob@example.com")
    );
    assert!(text(t, c, k, "alice").starts_with("tok_"));
    // char(n) padding does not change the token: it meets varchar in joins.
    let padded = text(ty(oid::BPCHAR, 4 + 40), c, k, "ab");
    assert_eq!(padded.trim_end(), text(t, c, k, "ab"));
    // int4 text and int8 binary of the same number give the same token.
    let i4: i64 = text(ty(oid::INT4, -1), c, k, "42").parse().unwrap();
    let i8 = i64::from_be_bytes(
        bin(ty(oid::INT8, -1), c, k, &42i64.to_be_bytes())
            .try_into()
            .unwrap(),
    );
    assert!(i4 >= 0 && i4 <= i64::from(i32::MAX));
    assert_eq!(
        crate::keyed::number(&crate::keyed::Keyer::new(KEY).digest(b"42")) % (1 << 31),
        i4 as u64
    );
    assert_eq!(
        (crate::keyed::number(&crate::keyed::Keyer::new(KEY).digest(b"42")) >> 1) as i64,
        i8
    );
    // uuid text and binary give the same token.
    let u_text = text(
        ty(oid::UUID, -1),
        c,
        k,
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    );
    let u_bin = bin(
        ty(oid::UUID, -1),
        c,
        k,
        &[
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ],
    );
    let mut hex = Vec::new();
    crate::textmask::write_hex(&u_bin, &mut hex);
    assert_eq!(u_text.replace('-', "").as_bytes(), hex);
    assert_eq!(u_bin[6] >> 4, 4);
    // numeric(7,2): at most 5 integer digits and exactly 2 decimals.
    let n = text(ty(oid::NUMERIC, numeric_typmod(7, 2)), c, k, "12345.67");
    let (int, frac) = n.split_once('.').unwrap();
    assert!(int.len() <= 5 && frac.len() == 2, "{n}");
    let nb = bin(
        ty(oid::NUMERIC, numeric_typmod(7, 2)),
        c,
        k,
        &numeric_bin("12345.67"),
    );
    assert_eq!(u16::from_be_bytes([nb[6], nb[7]]), 2, "dscale");
    // Keyed addresses keep their family.
    assert_eq!(
        bin(ty(oid::INET, -1), c, k, &[2, 32, 0, 4, 1, 2, 3, 4])[..5],
        [2, 32, 0, 4, 10]
    );
    assert_eq!(
        bin(
            ty(oid::INET, -1),
            c,
            k,
            &[&[3u8, 128, 0, 16][..], &[1; 16]].concat()
        )
        .len(),
        20
    );
    // No key: refused, never passed through.
    let refused = mask_value(t, Format::Text, Some(c), k, None, b"x");
    assert!(refused.is_err());
}

#[test]
fn arrays_mask_each_element() {
    let int4s = ty(1007, -1);
    assert_eq!(
        text(int4s, Class::Secret, Strategy::Redact, "{1,NULL,3}"),
        "{0,NULL,0}"
    );
    assert_eq!(
        text(
            int4s,
            Class::Secret,
            Strategy::Generalise,
            "{{15,NULL},{-250,7}}"
        ),
        "{{10,NULL},{-100,1}}"
    );
    let b = bin(
        int4s,
        Class::Secret,
        Strategy::Redact,
        &int_array_bin(&[Some(1), None, Some(3)]),
    );
    assert_eq!(b, int_array_bin(&[Some(0), None, Some(0)]));
    // The whole array is nulled, not each element.
    assert_eq!(
        mask(
            int4s,
            Format::Text,
            Some(Class::Secret),
            Strategy::Nullify,
            b"{1}"
        ),
        Masked::Null
    );
    // varchar(3)[]: each element within three characters, quoting redone.
    let v = text(
        ty(1015, 7),
        Class::Card,
        Strategy::Keyed,
        "{abc,NULL,\"x y\"}",
    );
    let kind = Kind::of(ty(1015, 7), &[]);
    validate::check(kind, Format::Text, v.as_bytes()).unwrap();
    assert!(v.starts_with("{tok,NULL,tok}"), "{v}");
    assert_eq!(
        text(
            ty(1009, -1),
            Class::Phone,
            Strategy::Partial,
            "{\"a,b\",\"1 2\"}"
        ),
        "{\"*,*\",\"* *\"}"
    );
    // A malformed array becomes the empty array.
    assert_eq!(text(int4s, Class::Secret, Strategy::Redact, "{1,"), "{}");
}
