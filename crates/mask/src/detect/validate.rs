//! The checks that turn a candidate into a finding.

/// The Luhn checksum of a string of ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether a card number's issuer prefix and length belong to a known
/// network.
pub fn card_network(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| -> u32 {
        d[..k.min(n)]
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    match d.first() {
        Some(b'4') => matches!(n, 13 | 16 | 19),
        Some(b'5') => (51..=55).contains(&prefix(2)) && n == 16,
        Some(b'2') => (2221..=2720).contains(&prefix(4)) && n == 16,
        Some(b'3') => {
            ((prefix(2) == 34 || prefix(2) == 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n))
                || ((prefix(2) == 36 || prefix(2) == 38 || (300..=305).contains(&prefix(3)))
                    && (14..=19).contains(&n))
        }
        Some(b'6') => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&n)
                || prefix(2) == 62 && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// A US SSN (area, group, serial) in the issued ranges.
pub fn ssn(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The length an IBAN of this country has.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c[..] == *country)
        .map(|(_, n)| *n)
}

/// The IBAN check: moved four characters to the end, letters as 10..35,
/// the number mod 97 is 1. `iban` is upper-case alphanumerics only.
pub fn iban_mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Generic top-level domains an email may end in (country codes are in
/// [`CCTLDS`]). The common ones, not the whole root zone: an address at a
/// rare one is still masked when its column is classified.
const GENERIC_TLDS: &[&str] = &[
    "com",
    "org",
    "net",
    "edu",
    "gov",
    "mil",
    "int",
    "info",
    "biz",
    "name",
    "pro",
    "aero",
    "coop",
    "museum",
    "mobi",
    "asia",
    "tel",
    "travel",
    "jobs",
    "cat",
    "post",
    "xxx",
    "io",
    "ai",
    "app",
    "dev",
    "cloud",
    "tech",
    "online",
    "site",
    "store",
    "shop",
    "blog",
    "email",
    "mail",
    "digital",
    "xyz",
    "top",
    "club",
    "live",
    "life",
    "world",
    "today",
    "news",
    "media",
    "agency",
    "solutions",
    "services",
    "company",
    "group",
    "global",
    "network",
    "systems",
    "software",
    "consulting",
    "design",
    "studio",
    "space",
    "website",
    "page",
    "zip",
    "mov",
    "inc",
    "llc",
    "ltd",
    "bank",
    "insurance",
    "health",
    "care",
    "finance",
    "money",
    "capital",
    "law",
    "legal",
    "academy",
    "school",
    "university",
    "foundation",
    "church",
    "family",
    "love",
    "fun",
    "games",
    "art",
    "music",
    "photo",
    "video",
    "tv",
    "me",
    "co",
    "us",
    "uk",
    "eu",
    "berlin",
    "london",
    "nyc",
    "paris",
    "tokyo",
    "amsterdam",
    "wien",
    "swiss",
    "africa",
    "gmbh",
    "ag",
    "sarl",
    "srl",
];

/// Country-code top-level domains (IANA root zone), space-separated.
const CCTLDS: &str = "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st su sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

/// Whether `label` (ASCII, any case) is a top-level domain.
pub fn is_tld(label: &[u8]) -> bool {
    if label.len() < 2 || label.len() > 24 || !label.iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    let lower: Vec<u8> = label.iter().map(u8::to_ascii_lowercase).collect();
    let Ok(lower) = std::str::from_utf8(&lower) else {
        return false;
    };
    if lower.len() == 2 {
        return CCTLDS.split(' ').any(|c| c == lower);
    }
    GENERIC_TLDS.contains(&lower)
}

/// Decodes unpadded base64url, `None` when it is not.
pub fn base64url(s: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// CRC-32 (IEEE), for GitHub's token checksum.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `n` in base 62 (0-9, A-Z, a-z), left-padded with `0` to six digits.
pub fn base62_6(mut n: u32) -> [u8; 6] {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    let mut i = 6;
    while n > 0 && i > 0 {
        i -= 1;
        out[i] = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out
}
