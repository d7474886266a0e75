//! One entry point that builds a plan from untrusted bytes and feeds it
//! untrusted rows, values and COPY data, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/mask.rs`) and the randomized test below. Besides
//! "no input panics" it checks the rewriters' promise: a masked value is a
//! valid value of its type in its format, NULL exactly where it should be,
//! passed columns untouched.

use crate::copy::{csv_encode, text_encode};
use crate::kind::{oid, Kind, Scalar};
use crate::validate;
use crate::{
    mask_value, Class, ColumnSpec, ColumnType, CopyFormat, CopyRows, Detectors, Format,
    MaskSettings, Masked, Masker, Plan, Rewrite, Rule, Strategy,
};

/// An OID the fuzzer's settings declare text-like (as citext would be).
const TEXT_LIKE: u32 = 90_001;

const OIDS: [u32; 27] = [
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
    oid::NAME,
    oid::UNKNOWN,
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::NUMERIC,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::BOOL,
    oid::DATE,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::TIME,
    oid::UUID,
    oid::JSON,
    oid::JSONB,
    oid::INET,
    oid::CIDR,
    oid::BYTEA,
    1007,
    1015,
    1009,
    TEXT_LIKE,
    90_002,
];

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

fn spec(r: &mut Reader<'_>) -> ColumnSpec {
    let oid = r.pick(&OIDS);
    let typmod = match r.byte() % 4 {
        0 => -1,
        1 => 4 + i32::from(r.byte() % 12),
        2 => ((i32::from(r.byte() % 20) + 1) << 16 | i32::from(r.byte()) & 0x7ff) + 4,
        _ => i32::from_be_bytes([r.byte(), r.byte(), r.byte(), r.byte()]),
    };
    let format = if r.byte() & 1 == 0 {
        Format::Text
    } else {
        Format::Binary
    };
    let rule = match r.byte() % 5 {
        0 => Rule::Pass,
        1 => Rule::Derived,
        2 => Rule::Scan {
            context: (r.byte() & 1 == 0).then(|| r.pick(&Class::ALL)),
        },
        _ => Rule::Mask {
            class: r.pick(&Class::ALL),
            strategy: r.pick(&Strategy::ALL),
        },
    };
    ColumnSpec {
        ty: ColumnType { oid, typmod },
        format,
        rule,
    }
}

/// Runs `data` through a plan built from its first bytes. Panics only on
/// a bug.
pub fn exercise(data: &[u8]) {
    // The detectors on the raw input: in order, in bounds, disjoint.
    crate::detect::exercise_detectors(data);
    let mut r = Reader { data };
    let count = 1 + usize::from(r.byte() % 5);
    let with_key = r.byte() & 1 == 0;
    let max_value_bytes = 8 + usize::from(r.byte()) * 4;
    let specs: Vec<ColumnSpec> = (0..count).map(|_| spec(&mut r)).collect();
    let key = with_key.then(|| b"fuzz key".to_vec());
    let settings = MaskSettings {
        key: key.clone(),
        max_value_bytes,
        text_oids: vec![TEXT_LIKE],
    };
    let masker = Masker::new(settings, Detectors::new());
    let keyed = specs.iter().any(|s| {
        matches!(
            s.rule,
            Rule::Mask {
                strategy: Strategy::Keyed,
                ..
            }
        )
    });
    let plan = match masker.plan(&specs) {
        Ok(plan) => plan,
        Err(_) => {
            assert!(
                keyed && !with_key,
                "only keyed masking without a key is refused"
            );
            return;
        }
    };
    let rest = r.data;

    // The rest as a DataRow body, then a well-formed row cut from it.
    check_row(&plan, &specs, rest);
    let values = cut_values(count, rest);
    let row = data_row_body(&values);
    check_row(&plan, &specs, &row);

    // The same values one by one through the single-value door.
    for (spec, v) in specs.iter().zip(&values) {
        if let (Rule::Mask { class, strategy }, Some(v)) = (spec.rule, v) {
            if let Ok(m) = mask_value(
                spec.ty,
                spec.format,
                Some(class),
                strategy,
                key.as_deref(),
                v,
            ) {
                let kind = Kind::of(spec.ty, &[TEXT_LIKE]);
                match m {
                    Masked::Null => assert!(
                        strategy == Strategy::Nullify
                            || is_unknown(kind)
                            || spec.ty.oid == TEXT_LIKE
                    ),
                    Masked::Value(m) => {
                        let _ = validate::check(kind, spec.format, &m)
                            .map_err(|e| panic!("{spec:?}: {e}"));
                    }
                }
            }
        }
    }

    check_copy(&masker, &specs, &values, rest);
}

fn is_unknown(kind: Kind) -> bool {
    kind == Kind::Scalar(Scalar::Unknown)
}

/// Cuts `data` into `count` values: a length byte (255: NULL) then bytes.
fn cut_values(count: usize, data: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut r = Reader { data };
    (0..count)
        .map(|_| {
            let len = r.byte();
            if len == 255 {
                return None;
            }
            let len = usize::from(len).min(r.data.len());
            let (v, rest) = r.data.split_at(len);
            r.data = rest;
            Some(v.to_vec())
        })
        .collect()
}

fn data_row_body(values: &[Option<Vec<u8>>]) -> Vec<u8> {
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

/// The fields of a DataRow body; None when it does not read as one.
fn fields(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let count = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut pos = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        out.push(Some(body.get(pos..pos + len)?));
        pos += len;
    }
    (pos == body.len()).then_some(out)
}

fn check_row(plan: &Plan, specs: &[ColumnSpec], body: &[u8]) {
    let mut out = b"x".to_vec();
    let result = plan.data_row(body, &mut out);
    let Ok(rewrite) = result else {
        assert_eq!(out, b"x", "an error leaves the buffer as it was");
        return;
    };
    let before = fields(body).expect("an accepted row reads as one");
    if rewrite == Rewrite::Unchanged {
        assert_eq!(out, b"x");
        for (spec, v) in specs.iter().zip(&before) {
            check_value(spec, Kind::of(spec.ty, &[TEXT_LIKE]), *v, *v);
        }
        return;
    }
    let message = &out[1..];
    assert_eq!(message[0], b'D');
    let len = i32::from_be_bytes(message[1..5].try_into().unwrap());
    assert_eq!(len as usize, message.len() - 1, "DataRow length");
    let after = fields(&message[5..]).expect("the rewritten row reads as one");
    assert_eq!(after.len(), before.len());
    for ((spec, b), a) in specs.iter().zip(&before).zip(&after) {
        check_value(spec, Kind::of(spec.ty, &[TEXT_LIKE]), *b, *a);
    }
}

/// One column's value before and after masking.
fn check_value(spec: &ColumnSpec, kind: Kind, before: Option<&[u8]>, after: Option<&[u8]>) {
    let Some(b) = before else {
        assert_eq!(after, None, "NULL stays NULL");
        return;
    };
    match spec.rule {
        Rule::Pass => assert_eq!(after, Some(b), "passed columns are untouched"),
        Rule::Mask {
            strategy: Strategy::Nullify,
            ..
        } => assert_eq!(after, None, "Nullify"),
        Rule::Mask { .. } | Rule::Derived => match after {
            None => assert!(is_unknown(kind), "only unknown types are nulled: {spec:?}"),
            Some(a) => {
                if let Err(e) = validate::check(kind, spec.format, a) {
                    panic!("{spec:?}: {e}: {a:?} from {b:?}");
                }
                if matches!(kind, Kind::Scalar(Scalar::Text(_))) && std::str::from_utf8(b).is_ok() {
                    assert!(std::str::from_utf8(a).is_ok(), "valid UTF-8 stays valid");
                }
            }
        },
        Rule::Scan { .. } => {
            if let Some(a) = after {
                if validate::check(kind, spec.format, b).is_ok() {
                    assert!(
                        validate::check(kind, spec.format, a).is_ok(),
                        "{spec:?}: {a:?} from {b:?}"
                    );
                }
            }
        }
    }
}

/// COPY: the values as a text, csv and binary row of a plan with the same
/// rules; the output must read back as a row of as many fields.
fn check_copy(masker: &Masker, specs: &[ColumnSpec], values: &[Option<Vec<u8>>], raw: &[u8]) {
    for format in [CopyFormat::text(), CopyFormat::csv(), CopyFormat::binary()] {
        let value_format = if format.kind == crate::CopyKind::Binary {
            Format::Binary
        } else {
            Format::Text
        };
        let specs: Vec<ColumnSpec> = specs
            .iter()
            .map(|s| ColumnSpec {
                format: value_format,
                ..*s
            })
            .collect();
        let pass: Vec<ColumnSpec> = specs
            .iter()
            .map(|s| ColumnSpec {
                rule: Rule::Pass,
                ..*s
            })
            .collect();
        let (Ok(plan), Ok(reader)) = (masker.plan(&specs), masker.plan(&pass)) else {
            continue;
        };
        let mut row = Vec::new();
        match format.kind {
            crate::CopyKind::Binary => row = data_row_body(values),
            _ => {
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        row.push(format.delimiter);
                    }
                    match v {
                        None => row.extend_from_slice(&format.null),
                        Some(v) if format.kind == crate::CopyKind::Csv => {
                            csv_encode(&format, v, &mut row)
                        }
                        Some(v) => text_encode(format.delimiter, v, &mut row),
                    }
                }
                row.push(b'\n');
            }
        }
        let mut out = Vec::new();
        let rewrite = plan
            .copy_row(&format, &row, &mut out)
            .expect("a well-formed COPY row is accepted");
        if rewrite == Rewrite::Rewritten {
            let payload = &out[5..];
            assert_eq!(
                i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
                out.len() - 1
            );
            assert!(
                reader.copy_row(&format, payload, &mut Vec::new()).is_ok(),
                "the rewritten row reads back"
            );
        }
        // Arbitrary bytes as a row, and as a whole binary COPY.
        let _ = plan.copy_row(&format, raw, &mut Vec::new());
        let mut rows = CopyRows::new(format.clone());
        for piece in raw.split(|&b| b == b'\n') {
            let _ = rows.copy_data(&plan, piece, &mut Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    /// xorshift: the same inputs on every run.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_inputs() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let len = (next(&mut state) % 200) as usize;
            let data: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            super::exercise(&data);
        }
    }

    /// Random values are mostly not valid values of their type; these
    /// often are, and every type, format and strategy meets each of them.
    #[test]
    fn typed_inputs() {
        let samples: [&[u8]; 13] = [
            b"alice@example.com",
            b"1234",
            b"-12345.678",
            b"1985-04-12",
            b"1985-04-12 10:11:12+02",
            b"13:45:10",
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            br#"{"a": "b@c.d"}"#,
            b"192.168.1.5/24",
            b"\\x01ff",
            b"{1,NULL,\"x y\"}",
            b"t",
            &[0, 0, 0, 0, 0, 0, 0, 42],
        ];
        for oid in 0..super::OIDS.len() as u8 {
            for typmod in [[0, 0], [1, 3]] {
                for format in [0, 1] {
                    for strategy in 0..5 {
                        for sample in samples {
                            // One column, keyed, 1 KiB values; oid, typmod,
                            // format, Mask rule, class Email, strategy.
                            let mut data = vec![0, 0, 255, oid, typmod[0]];
                            if typmod[0] == 1 {
                                data.push(typmod[1]);
                            }
                            data.extend_from_slice(&[format, 3, 0, strategy, sample.len() as u8]);
                            data.extend_from_slice(sample);
                            super::exercise(&data);
                        }
                    }
                }
            }
        }
    }
}
