//! Content detectors: what in a value looks sensitive, whatever its column.
//!
//! Two kinds of detector live here. The *strong* ones fire anywhere because
//! their shape carries its own proof: a checksum (cards: Luhn; IBAN: mod 97;
//! GitHub tokens: CRC32), a registry (email TLDs, IBAN lengths, card issuer
//! ranges, SSN ranges), a decodable structure (a JWT header naming its
//! `alg`) or a vendor prefix. The *weak* ones fire only when the column's
//! catalog classification (`context`) says what to expect, because without
//! it a nine-digit number or a name is just a number or a word
//! ([`context`] lists them).
//!
//! # How a value is scanned
//!
//! No detector runs over every byte. Three linear passes find anchors, and
//! validators run only at an anchor:
//!
//! - `memchr3` for `@` (emails, URL passwords), `$` (password hashes) and
//!   `+` (international phone numbers);
//! - a word-at-a-time search for ASCII digits; each digit run's start is
//!   tried as a card, a delimited SSN or (after two capitals) an IBAN;
//! - two Aho-Corasick automata (SIMD prefiltered) for the literal prefixes:
//!   `eyJ` (JWT), `-----BEGIN ` (PEM), `md5` and the vendor token prefixes,
//!   the three-byte ones apart from the longer ones (see [`Detectors::new`]).
//!
//! Every validator reads a bounded number of bytes or skips past what it
//! reads, so the whole scan is linear in the value's length.

mod card;
mod context;
mod email;
mod hash;
mod iban;
mod jwt;
mod pem;
mod phone;
mod scan;
mod ssn;
mod tld;
mod token;
mod url;

use aho_corasick::{AhoCorasick, Input, MatchKind};

use crate::Class;

pub use token::github_token;

/// One finding: `text[start..end]` looks like `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// Detector hits counted per class while a result set is masked (for the
/// statement's outcome record). Atomic because a plan is shared behind an
/// `Arc`; the counts are touched only on a hit, so the cost is nil on
/// clean data.
#[derive(Debug, Default)]
pub struct HitTally([std::sync::atomic::AtomicU64; Class::ALL.len()]);

impl HitTally {
    pub fn add(&self, hits: &[Hit]) {
        for h in hits {
            if let Some(i) = Class::ALL.iter().position(|c| *c == h.class) {
                self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// The counts so far, per class, and zero again.
    pub fn take(&self) -> Vec<(Class, u64)> {
        Class::ALL
            .iter()
            .zip(&self.0)
            .filter_map(|(c, n)| {
                let n = n.swap(0, std::sync::atomic::Ordering::Relaxed);
                (n > 0).then_some((*c, n))
            })
            .collect()
    }
}

/// What an Aho-Corasick pattern stands for.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    Jwt,
    Pem,
    Md5,
    /// An index into `token::PREFIXES`.
    Token(usize),
}

/// One automaton and what each of its patterns stands for.
#[derive(Debug, Clone)]
struct Literals {
    automaton: AhoCorasick,
    anchors: Vec<Anchor>,
}

impl Literals {
    fn new(literals: Vec<(&'static str, Anchor)>) -> Literals {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(literals.iter().map(|(literal, _)| literal))
            .expect("the prefix literals form a valid automaton");
        let anchors = literals.into_iter().map(|(_, anchor)| anchor).collect();
        Literals { automaton, anchors }
    }
}

/// Every literal prefix and what it stands for.
fn literals() -> impl Iterator<Item = (&'static str, Anchor)> {
    [
        ("eyJ", Anchor::Jwt),
        ("-----BEGIN ", Anchor::Pem),
        ("md5", Anchor::Md5),
    ]
    .into_iter()
    .chain(
        token::PREFIXES
            .iter()
            .enumerate()
            .map(|(i, prefix)| (prefix.literal, Anchor::Token(i))),
    )
}

/// The shortest finding without a column context: an email, `a@b.co`.
const MIN_FINDING: usize = 6;

/// The shortest finding other than an email: a phone, `+` and eight
/// digits.
const MIN_FINDING_WITHOUT_AT: usize = 9;

/// The shortest finding a literal anchors: a JWT whose header is
/// `{"alg"}` with a one-character payload and no signature,
/// `eyJhbGcifQ.x.` (tokens need at least 15 bytes, `xoxb-` and ten).
const MIN_LITERAL_FINDING: usize = 13;

/// The detector set. Build once (it compiles its automata) and share;
/// clones share the automata.
#[derive(Debug, Clone)]
pub struct Detectors {
    /// The literals of four bytes or more.
    long: Literals,
    /// The three-byte ones (`eyJ`, `md5`, `sk-`, `SG.`, `hf_`).
    short: Literals,
}

impl Default for Detectors {
    fn default() -> Detectors {
        Detectors::new()
    }
}

impl Detectors {
    pub fn new() -> Detectors {
        // Two automata, because Teddy (the automaton's SIMD prefilter)
        // fingerprints as many leading bytes as its shortest literal has, up
        // to four. With the three-byte literals among the others, common
        // text (`task_id`, `risk-based`, `md5sum`) matches a fingerprint
        // every few dozen bytes; apart, the long literals are rare and the
        // five short ones spread over five of Teddy's eight buckets.
        let (long, short): (Vec<_>, Vec<_>) =
            literals().partition(|(literal, _)| literal.len() >= 4);
        debug_assert!(long.len() <= 64, "more literals than fat Teddy takes");
        Detectors {
            long: Literals::new(long),
            short: Literals::new(short),
        }
    }

    /// Every sensitive span in `text`, in order, not overlapping.
    /// `context` is the column's classification when the catalog has one
    /// (weak detectors fire only then). Where spans overlap the one that
    /// starts first wins, and of those the longest.
    pub fn find(&self, text: &[u8], context: Option<Class>) -> Vec<Hit> {
        // Short values (a status, a code, a first name) are the common case
        // in scanned columns: without a context nothing shorter than an
        // email (`a@b.co`) is a finding, and below nine bytes (E.164's
        // shortest phone) only an email can be.
        if context.is_none()
            && (text.len() < MIN_FINDING
                || (text.len() < MIN_FINDING_WITHOUT_AT && memchr::memchr(b'@', text).is_none()))
        {
            return Vec::new();
        }
        let mut hits = Vec::new();
        punctuation(text, context, &mut hits);
        digits(text, context, &mut hits);
        // The automata cost more to start than a short value costs to
        // scan, and no literal-anchored finding is that short.
        if text.len() >= MIN_LITERAL_FINDING {
            literal_prefixes(&self.long, text, &mut hits);
            literal_prefixes(&self.short, text, &mut hits);
        }
        if let Some(class) = context {
            context::find(text, class, &mut hits);
        }
        settle(hits)
    }
}

/// The hits that start at one of `literals`. After a literal that is not
/// the start of a hit the search goes on from its second byte, so that a
/// literal ending where another starts (`xoxb-` and `-----BEGIN `) does
/// not hide it.
fn literal_prefixes(literals: &Literals, text: &[u8], hits: &mut Vec<Hit>) {
    let mut from = 0;
    while let Some(m) = literals.automaton.find(Input::new(text).range(from..)) {
        let anchor = literals.anchors[m.pattern().as_usize()];
        from = match literal_hit(text, m.start(), anchor) {
            Some(hit) => {
                hits.push(hit);
                hit.end.max(m.start() + 1)
            }
            None => m.start() + 1,
        };
    }
}

/// The hit that starts at a literal standing for `anchor`, if any.
fn literal_hit(text: &[u8], start: usize, anchor: Anchor) -> Option<Hit> {
    let (start, end, class) = match anchor {
        Anchor::Jwt => jwt::at(text, start).map(|end| (start, end, Class::Token)),
        Anchor::Pem => pem::at(text, start).map(|end| (start, end, Class::Secret)),
        Anchor::Md5 => hash::md5_verifier(text, start).map(|end| (start, end, Class::PasswordHash)),
        Anchor::Token(i) => token::at(text, start, i),
    }?;
    Some(Hit { start, end, class })
}

/// `@`, `$` and `+`: emails and URL passwords, password hashes, phones.
fn punctuation(text: &[u8], context: Option<Class>, hits: &mut Vec<Hit>) {
    let mut from = 0;
    while let Some(offset) = memchr::memchr3(b'@', b'$', b'+', &text[from..]) {
        let i = from + offset;
        let found = match text[i] {
            b'@' => url::password_at(text, i)
                .map(|(s, e)| (s, e, Class::Password))
                .or_else(|| {
                    email::at(text, i, context == Some(Class::Email))
                        .map(|(s, e)| (s, e, Class::Email))
                }),
            b'$' => hash::at_dollar(text, i).map(|(s, e)| (s, e, Class::PasswordHash)),
            _ => phone::international(text, i).map(|e| (i, e, Class::Phone)),
        };
        from = match found {
            Some((start, end, class)) => {
                hits.push(Hit { start, end, class });
                end.max(i + 1)
            }
            None => i + 1,
        };
    }
}

/// Digit runs: cards, IBANs, delimited SSNs, and with a national-id
/// context nine bare digits. Digits are found 64 bytes at a time as
/// bitmaps, and run lengths come from shifting them: only a run whose
/// length fits one of those shapes reaches a validator, which keeps
/// timestamps, ids and prices cheap.
fn digits(text: &[u8], context: Option<Class>, hits: &mut Vec<Hit>) {
    let digit_bits = |from| scan::range_bits(text, from, b'0', b'9');
    let bare_ids = context == Some(Class::NationalId);
    let mut resume = 0;
    let mut carry_digit = 0u64;
    let mut current = digit_bits(0);
    for block in (0..text.len()).step_by(64) {
        let next = if block + 64 < text.len() {
            digit_bits(block + 64)
        } else {
            0
        };
        let starts = current & !((current << 1) | carry_digit);
        carry_digit = current >> 63;
        if starts == 0 {
            current = next;
            continue;
        }
        // `min_n`: a run of at least n digits starts at this bit. A run
        // from the block's last bytes continues into `next`, where the
        // longest shape asked about (12) still fits.
        let window = u128::from(next) << 64 | u128::from(current);
        let min_2 = window & window >> 1;
        let min_3 = min_2 & window >> 2;
        let min_4 = min_2 & min_2 >> 2;
        let min_5 = min_4 & window >> 4;
        let min_8 = min_4 & min_4 >> 4;
        let min_12 = min_8 & min_4 >> 8;
        let mut candidates = starts & (min_12 | min_3 & !min_5) as u64;
        if bare_ids {
            let exactly_9 = min_8 & window >> 8 & !(min_8 & min_2 >> 8);
            candidates |= starts & exactly_9 as u64;
        }
        // An IBAN's check digits (a run of at least two) follow two
        // capitals.
        let pairs = starts & min_2 as u64 & !candidates;
        if pairs != 0 {
            let upper = scan::range_bits(text, block, b'A', b'Z');
            let upper_before =
                |back: usize| u64::from(block >= back && text[block - back].is_ascii_uppercase());
            let after_capitals = (upper << 1 | upper_before(1))
                & (upper << 2 | upper_before(2) | upper_before(1) << 1);
            candidates |= pairs & after_capitals;
        }
        while candidates != 0 {
            let bit = candidates.trailing_zeros();
            candidates &= candidates - 1;
            let start = block + bit as usize;
            if start < resume {
                continue;
            }
            let run = (!(window >> bit)).trailing_zeros() as usize;
            let run_end = if run < 128 - bit as usize {
                start + run
            } else {
                scan::digits_end(text, block + 128)
            };
            if let Some(hit) = digit_run(text, start, run_end, context) {
                resume = hit.end;
                hits.push(hit);
            }
        }
        current = next;
    }
}

/// The shapes a digit run can start, cheapest tests first.
fn digit_run(text: &[u8], start: usize, run_end: usize, context: Option<Class>) -> Option<Hit> {
    let hit = |(start, end), class| Hit { start, end, class };
    let len = run_end - start;
    if start >= 2 && text[start - 1].is_ascii_uppercase() {
        return text[start - 2]
            .is_ascii_uppercase()
            .then(|| iban::at(text, start))
            .flatten()
            .map(|span| hit(span, Class::Iban));
    }
    let next = scan::at(text, run_end);
    let separated = matches!(next, Some(b' ' | b'-'));
    // A card is 12+ digits at once or a four-digit group, a separator and
    // at least four more digits.
    let card_shaped = len >= 12
        || (len == 4
            && separated
            && text
                .get(run_end + 1..run_end + 5)
                .is_some_and(|g| g.iter().all(u8::is_ascii_digit)));
    if card_shaped {
        if let Some(end) = card::at(text, start, context == Some(Class::Card)) {
            return Some(hit((start, end), Class::Card));
        }
    }
    if len == 3 && separated {
        if let Some(end) = ssn::delimited(text, start) {
            return Some(hit((start, end), Class::NationalId));
        }
    }
    if len == 9 && context == Some(Class::NationalId) {
        return ssn::bare(text, start, run_end).map(|end| hit((start, end), Class::NationalId));
    }
    None
}

/// Sorts hits and drops each one that overlaps a hit kept before it.
fn settle(mut hits: Vec<Hit>) -> Vec<Hit> {
    if hits.len() < 2 {
        return hits;
    }
    hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut kept_end = 0;
    hits.retain(|h| {
        let keep = h.start >= kept_end;
        if keep {
            kept_end = h.end;
        }
        keep
    });
    hits
}

/// A fuzzing entry point: runs every detector, with and without each
/// context, over `data` and checks what [`Detectors::find`] promises (hits
/// within bounds, non-empty, in order, not overlapping). Panics otherwise.
pub fn exercise_detectors(data: &[u8]) {
    let detectors = Detectors::new();
    for context in std::iter::once(None).chain(Class::ALL.into_iter().map(Some)) {
        check_hits(data, &detectors.find(data, context));
    }
}

fn check_hits(text: &[u8], hits: &[Hit]) {
    let mut last_end = 0;
    for hit in hits {
        assert!(hit.start < hit.end, "empty hit {hit:?}");
        assert!(
            hit.end <= text.len(),
            "hit {hit:?} past the end ({})",
            text.len()
        );
        assert!(
            hit.start >= last_end,
            "hit {hit:?} overlaps or precedes the one before"
        );
        last_end = hit.end;
    }
}

#[cfg(test)]
mod tests;
