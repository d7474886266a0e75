//! A chunk: the records of one commit to the SQLite store, kept as one
//! compressed value (pure: no I/O).
//!
//! Why: a row per record cost the writer a B-tree insert and a kilobyte of
//! WAL per statement, and the checkpointer that kilobyte again; records of
//! one commit are mostly the same bytes (the same sessions, statements,
//! keys), so LZ4 keeps about a tenth of them and the commit writes one row.
//!
//! The value is a format byte ([`FORMAT_LZ4`]), the uncompressed length
//! (u32 LE), then an LZ4 block. Uncompressed, it is the records in seq
//! order, each:
//!
//! ```text
//! seq u64 | ts i64 | flags u8 | [refers_to u64] | hash [32]
//! | kind | [subject] | [decision] | terms | envelope      (each u32 LE length + bytes)
//! ```
//!
//! `flags` bit 0: a subject follows; bit 1: a decision; bit 2: refers_to.
//! Only the envelope is trusted (verification hashes it); the rest are
//! search copies, as the columns of the per-record rows were. A chunk is
//! read from a file anyone with access could have edited: decoding checks
//! every length and never panics.

use crate::AuditError;

/// The only format written so far.
pub const FORMAT_LZ4: u8 = 1;

/// Most records in one chunk: a large commit is cut into several, so that
/// reading one record never decompresses more than this many.
pub const CHUNK_RECORDS: usize = 512;

/// The largest uncompressed chunk accepted when reading (a tampered length
/// must not make the reader allocate without bound).
const MAX_RAW: usize = 256 << 20;

const HAS_SUBJECT: u8 = 1;
const HAS_DECISION: u8 = 2;
const HAS_REFERS_TO: u8 = 4;

/// One record as the store keeps it, borrowed from a decoded chunk (or
/// from the caller, when writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    /// The position the store holds it at (its seq, unless tampered with).
    pub seq: u64,
    pub ts: i64,
    pub kind: &'a str,
    pub subject: Option<&'a str>,
    pub decision: Option<&'a str>,
    pub refers_to: Option<u64>,
    /// The record's search terms, each followed by a newline, the whole
    /// starting with one (see [`crate::store::IndexFields`]).
    pub terms: &'a str,
    pub hash: &'a [u8; 32],
    /// The exact bytes that were hashed.
    pub envelope: &'a [u8],
}

/// Builds chunks, keeping its buffers from one to the next.
#[derive(Debug, Default)]
pub struct Encoder {
    raw: Vec<u8>,
    out: Vec<u8>,
}

impl Encoder {
    /// Starts a chunk.
    pub fn begin(&mut self) {
        self.raw.clear();
    }

    pub fn push(&mut self, row: &Row<'_>) {
        let raw = &mut self.raw;
        raw.extend_from_slice(&row.seq.to_le_bytes());
        raw.extend_from_slice(&row.ts.to_le_bytes());
        let mut flags = 0;
        if row.subject.is_some() {
            flags |= HAS_SUBJECT;
        }
        if row.decision.is_some() {
            flags |= HAS_DECISION;
        }
        if row.refers_to.is_some() {
            flags |= HAS_REFERS_TO;
        }
        raw.push(flags);
        if let Some(r) = row.refers_to {
            raw.extend_from_slice(&r.to_le_bytes());
        }
        raw.extend_from_slice(row.hash);
        put(raw, row.kind.as_bytes());
        if let Some(s) = row.subject {
            put(raw, s.as_bytes());
        }
        if let Some(d) = row.decision {
            put(raw, d.as_bytes());
        }
        put(raw, row.terms.as_bytes());
        put(raw, row.envelope);
    }

    /// The chunk's stored value.
    pub fn finish(&mut self) -> &[u8] {
        let max = lz4_flex::block::get_maximum_output_size(self.raw.len());
        self.out.clear();
        self.out.resize(5 + max, 0);
        self.out[0] = FORMAT_LZ4;
        // Records are small and a commit holds at most CHUNK_RECORDS of
        // them: far below 4 GiB.
        let len = u32::try_from(self.raw.len()).unwrap_or(u32::MAX);
        self.out[1..5].copy_from_slice(&len.to_le_bytes());
        let n = lz4_flex::block::compress_into(&self.raw, &mut self.out[5..])
            .expect("the output holds the maximum compressed size");
        self.out.truncate(5 + n);
        &self.out
    }
}

fn put(raw: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    raw.extend_from_slice(&len.to_le_bytes());
    raw.extend_from_slice(bytes);
}

/// A chunk's records, uncompressed.
#[derive(Debug, Default)]
pub struct Decoded {
    raw: Vec<u8>,
}

impl Decoded {
    /// Decompresses a stored value (into this buffer, reused).
    pub fn load(&mut self, stored: &[u8]) -> Result<(), AuditError> {
        let corrupt = |why: &str| AuditError::Corrupt {
            what: "chunk",
            why: why.to_owned(),
        };
        let [format, a, b, c, d, body @ ..] = stored else {
            return Err(corrupt("shorter than its header"));
        };
        if *format != FORMAT_LZ4 {
            return Err(corrupt("unknown format"));
        }
        let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
        if len > MAX_RAW {
            return Err(corrupt("claims an implausible size"));
        }
        self.raw.clear();
        self.raw.resize(len, 0);
        let n = lz4_flex::block::decompress_into(body, &mut self.raw)
            .map_err(|_| corrupt("does not decompress"))?;
        if n != len {
            return Err(corrupt("decompresses to another size than it claims"));
        }
        Ok(())
    }

    /// The records in stored order.
    pub fn rows(&self) -> Rows<'_> {
        Rows { rest: &self.raw }
    }
}

/// Iterates a decoded chunk's records; stops at the first malformed one
/// with an error.
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<Row<'a>, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut r = Reader(self.rest);
        let row = r.row();
        match row {
            Some(row) => {
                self.rest = r.0;
                Some(Ok(row))
            }
            None => {
                self.rest = &[];
                Some(Err(AuditError::Corrupt {
                    what: "chunk",
                    why: "a record in it is malformed".into(),
                }))
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn row(&mut self) -> Option<Row<'a>> {
        let seq = self.u64()?;
        let ts = self.u64()? as i64;
        let flags = *self.take(1)?.first()?;
        if flags & !(HAS_SUBJECT | HAS_DECISION | HAS_REFERS_TO) != 0 {
            return None;
        }
        let refers_to = if flags & HAS_REFERS_TO != 0 {
            Some(self.u64()?)
        } else {
            None
        };
        let hash: &[u8; 32] = self.take(32)?.try_into().ok()?;
        let kind = self.str()?;
        let subject = if flags & HAS_SUBJECT != 0 {
            Some(self.str()?)
        } else {
            None
        };
        let decision = if flags & HAS_DECISION != 0 {
            Some(self.str()?)
        } else {
            None
        };
        let terms = self.str()?;
        let envelope = self.bytes()?;
        Some(Row {
            seq,
            ts,
            kind,
            subject,
            decision,
            refers_to,
            terms,
            hash,
            envelope,
        })
    }
}

/// For the fuzz target (`fuzz/fuzz_targets/audit_chunk.rs`): `data` read
/// as a stored chunk, and as the records of one (compressed here, so that
/// the record parser sees arbitrary bytes too). Nothing may panic.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let mut decoded = Decoded::default();
    if decoded.load(data).is_ok() {
        for row in decoded.rows() {
            let _ = row.map(|r| r.envelope.len());
        }
    }
    let mut stored = vec![FORMAT_LZ4];
    stored.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    stored.extend_from_slice(&lz4_flex::block::compress(data));
    decoded
        .load(&stored)
        .expect("a chunk compressed here loads");
    for row in decoded.rows() {
        let _ = row.map(|r| r.envelope.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, hash: &[u8; 32]) -> Row<'_> {
        Row {
            seq,
            ts: 1_700_000_000_000_000 + seq as i64,
            kind: "statement",
            subject: seq.is_multiple_of(2).then_some("alice"),
            decision: seq.is_multiple_of(3).then_some("denied"),
            refers_to: seq.is_multiple_of(5).then_some(seq - 1),
            terms: "\nk:statement\ns:alice\n",
            hash,
            envelope: b"{\"log\":\"x\",\"seq\":1}",
        }
    }

    #[test]
    fn records_come_back_as_they_went_in() {
        let hashes: Vec<[u8; 32]> = (0..300u32).map(|i| [(i % 251) as u8; 32]).collect();
        let rows: Vec<Row<'_>> = (1..=300u64)
            .map(|s| row(s, &hashes[s as usize - 1]))
            .collect();
        let mut enc = Encoder::default();
        enc.begin();
        for r in &rows {
            enc.push(r);
        }
        let stored = enc.finish().to_vec();
        assert!(stored.len() < 300 * 100, "compressed: {}", stored.len());
        let mut dec = Decoded::default();
        dec.load(&stored).unwrap();
        let back: Vec<Row<'_>> = dec.rows().map(Result::unwrap).collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let hash = [7u8; 32];
        let mut enc = Encoder::default();
        enc.begin();
        for s in 1..=20 {
            enc.push(&row(s, &hash));
        }
        let stored = enc.finish().to_vec();
        let mut dec = Decoded::default();
        // Every truncation, and every single-byte change, either fails to
        // load, yields an error row, or yields rows: never a panic.
        for cut in 0..stored.len() {
            if dec.load(&stored[..cut]).is_ok() {
                let _ = dec.rows().count();
            }
        }
        for i in 0..stored.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = stored.clone();
                bad[i] ^= flip;
                if dec.load(&bad).is_ok() {
                    let _ = dec.rows().collect::<Vec<_>>();
                }
            }
        }
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(dec.load(&huge).is_err());
        assert!(dec.load(&[9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_fuzz_entry_survives_arbitrary_bytes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            exercise(&data);
        }
    }
}
