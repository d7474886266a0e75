//! A Bind message's parameter section, read once for everyone who needs
//! it whole (the approval request shows the values, the dry run binds them
//! again): its format codes, then its values, then its result formats.

/// The parameters of a Bind, as sent.
pub(crate) struct BindValues<'a> {
    /// Each value's format code (0 text, 1 binary), one per value.
    pub formats: Vec<i16>,
    /// The values, `None` for NULL.
    pub values: Vec<Option<&'a [u8]>>,
    /// Where the values end (the result formats follow).
    pub end: usize,
}

impl<'a> BindValues<'a> {
    /// Reads `section` (a Bind's body after its two names); `None` if it
    /// is cut short or malformed (the server refuses such a Bind).
    pub fn read(section: &'a [u8]) -> Option<BindValues<'a>> {
        let i16_at = |at: usize| -> Option<i16> {
            let b = section.get(at..at.checked_add(2)?)?;
            Some(i16::from_be_bytes([b[0], b[1]]))
        };
        let n_codes = usize::try_from(i16_at(0)?).ok()?;
        let codes: Vec<i16> = (0..n_codes)
            .map(|i| i16_at(2 + 2 * i))
            .collect::<Option<_>>()?;
        let mut at = 2 + 2 * n_codes;
        let count = usize::try_from(i16_at(at)?).ok()?;
        at += 2;
        let mut values = Vec::with_capacity(count.min(section.len() / 4));
        for _ in 0..count {
            let b = section.get(at..at + 4)?;
            let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            at += 4;
            values.push(match usize::try_from(len) {
                Err(_) => None,
                Ok(len) => {
                    let v = section.get(at..at.checked_add(len)?)?;
                    at += len;
                    Some(v)
                }
            });
        }
        let formats = (0..count)
            .map(|i| match codes.as_slice() {
                [] => 0,
                [all] => *all,
                each => each.get(i).copied().unwrap_or(0),
            })
            .collect();
        Some(BindValues {
            formats,
            values,
            end: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_codes() {
        // No codes: all text; one code: all of them; else one each.
        let b = BindValues::read(&[0, 0, 0, 2, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0]).unwrap();
        assert_eq!(b.formats, [0, 0]);
        assert_eq!(b.values, [Some(&[][..]), None]);
        assert_eq!(b.end, 12);
        let b = BindValues::read(&[0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 7]).unwrap();
        assert_eq!((b.formats, b.values), (vec![1], vec![Some(&[7u8][..])]));
        let b = BindValues::read(&[
            0, 2, 0, 0, 0, 1, 0, 2, 255, 255, 255, 255, 255, 255, 255, 255,
        ]);
        assert_eq!(b.unwrap().formats, [0, 1]);
        // Cut short anywhere: nothing.
        assert!(BindValues::read(&[0, 0, 0, 1, 0, 0, 0, 9]).is_none());
        assert!(BindValues::read(&[0]).is_none());
        assert!(BindValues::read(&[]).is_none());
    }

    #[test]
    fn any_bytes_read_without_panicking() {
        // A client's bytes: every prefix of many pseudo-random sections,
        // biased toward small counts and lengths.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut b = Vec::new();
            for _ in 0..(x % 40) {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                b.push(match x >> 61 {
                    0..=3 => 0,
                    4 => 1,
                    5 => 2,
                    _ => (x >> 24) as u8,
                });
            }
            for end in 0..=b.len() {
                if let Some(v) = BindValues::read(&b[..end]) {
                    assert!(v.end <= end);
                    assert_eq!(v.formats.len(), v.values.len());
                }
            }
        }
    }
}
