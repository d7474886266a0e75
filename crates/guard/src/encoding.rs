//! Text and names exactly as the server reads them.
//!
//! The server converts every string a client sends (statement text,
//! statement and portal names) from the client encoding to the server
//! encoding before it looks at it, and then keys names by their first
//! [`NAME_BYTES`] bytes. The proxy must do the same, or two spellings that
//! are one name to the server are two names to the proxy (or the other way
//! round). So:
//!
//! - text is *transcoded*, never decoded lossily: UTF-8 (and SQL_ASCII,
//!   which a UTF-8 server checks as UTF-8) is validated, LATIN1 maps each
//!   byte to the code point of the same value; any other client encoding is
//!   accepted only for pure ASCII text, which reads the same in every
//!   encoding the server accepts from clients (the client-only encodings
//!   are refused as settings: see `lexer.rs`);
//! - a name's key is its server-encoding bytes cut to [`NAME_BYTES`], even
//!   in the middle of a character: that is the key size of the server's
//!   hash tables of prepared statements and portals
//!   (`src/backend/utils/hash/dynahash.c`, `HASH_STRINGS` with
//!   `keysize = NAMEDATALEN`, compared with `strncmp(.., keysize - 1)`).
//!
//! SQL identifiers (PREPARE, EXECUTE, DEALLOCATE, cursor names) are cut by
//! the server's scanner on a character boundary instead; the analysis uses
//! the same scanner, whose database encoding is UTF-8, so the names it
//! reports are already cut as a UTF-8 server cuts them.

use std::borrow::Cow;

/// NAMEDATALEN - 1 (`src/include/pg_config_manual.h`).
pub const NAME_BYTES: usize = 63;

/// An encoding as far as the proxy can convert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// No conversion at all: the server takes the bytes as they come.
    SqlAscii,
    /// ISO 8859-1: byte N is code point N.
    Latin1,
    /// Any other encoding, by its canonical name: pure ASCII only.
    Other(String),
}

impl Encoding {
    /// From the name ParameterStatus reports (canonical names).
    pub fn from_reported(name: &str) -> Encoding {
        match canonical(name) {
            Some("UTF8") => Encoding::Utf8,
            Some("SQL_ASCII") => Encoding::SqlAscii,
            Some("LATIN1") => Encoding::Latin1,
            Some(other) => Encoding::Other(other.to_owned()),
            None => Encoding::Other(name.to_ascii_uppercase()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Encoding::Utf8 => "UTF8",
            Encoding::SqlAscii => "SQL_ASCII",
            Encoding::Latin1 => "LATIN1",
            Encoding::Other(n) => n,
        }
    }
}

/// Why text or a name cannot be read exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodingError {
    /// Not valid in the client encoding.
    Invalid { encoding: String },
    /// Valid, but the proxy cannot convert it exactly.
    Unsupported { encoding: String },
    /// A character the server encoding cannot hold.
    NoEquivalent { encoding: String },
}

/// The client's and the server's encodings for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encodings {
    pub client: Encoding,
    pub server: Encoding,
}

impl Default for Encodings {
    fn default() -> Self {
        Encodings {
            client: Encoding::Utf8,
            server: Encoding::Utf8,
        }
    }
}

impl Encodings {
    /// Client bytes as the text the server reads (in Unicode, for the
    /// analysis).
    pub fn text<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, EncodingError> {
        match &self.client {
            // One pass: ASCII is valid UTF-8.
            Encoding::Utf8 | Encoding::SqlAscii => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| EncodingError::Invalid {
                    encoding: "UTF8".into(),
                }),
            // ASCII reads the same in every encoding accepted here.
            _ if bytes.is_ascii() => Ok(Cow::Borrowed(
                std::str::from_utf8(bytes).unwrap_or_default(),
            )),
            Encoding::Latin1 => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
            Encoding::Other(name) => Err(EncodingError::Unsupported {
                encoding: name.clone(),
            }),
        }
    }

    /// The server's key for a protocol statement or portal name sent as
    /// `bytes`.
    pub fn protocol_name(&self, bytes: &[u8]) -> Result<NameKey, EncodingError> {
        if bytes.is_ascii() || self.client == self.server || self.server == Encoding::SqlAscii {
            // No conversion changes these bytes (a SQL_ASCII client's bytes
            // are checked, not converted, by a UTF-8 server).
            if self.client == Encoding::SqlAscii
                && self.server == Encoding::Utf8
                && std::str::from_utf8(bytes).is_err()
            {
                return Err(EncodingError::Invalid {
                    encoding: "UTF8".into(),
                });
            }
            return Ok(NameKey::cut(bytes));
        }
        let text = self.text(bytes)?;
        Ok(NameKey::cut(&self.server_bytes(&text)?))
    }

    /// The server's key for a name the analysis read from SQL (already cut
    /// on a character boundary, as a UTF-8 server cuts it).
    pub fn sql_name(&self, name: &str) -> Result<NameKey, EncodingError> {
        if !name.is_ascii() && self.server == Encoding::Latin1 && name.len() > NAME_BYTES - 4 {
            // The analysis cut a long name where a UTF-8 server would; a
            // LATIN1 server cuts it later (one byte a character), so a
            // name that may have been cut cannot be keyed exactly.
            return Err(EncodingError::Unsupported {
                encoding: "LATIN1".into(),
            });
        }
        Ok(NameKey::cut(&self.server_bytes(name)?))
    }

    /// `text` in the server encoding.
    fn server_bytes<'a>(&self, text: &'a str) -> Result<Cow<'a, [u8]>, EncodingError> {
        if text.is_ascii() {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        match &self.server {
            Encoding::Utf8 | Encoding::SqlAscii => Ok(Cow::Borrowed(text.as_bytes())),
            Encoding::Latin1 => text
                .chars()
                .map(|c| {
                    u8::try_from(u32::from(c)).map_err(|_| EncodingError::NoEquivalent {
                        encoding: "LATIN1".into(),
                    })
                })
                .collect::<Result<Vec<u8>, _>>()
                .map(Cow::Owned),
            Encoding::Other(name) => Err(EncodingError::Unsupported {
                encoding: name.clone(),
            }),
        }
    }
}

/// A statement or portal name as the server keys it: at most
/// [`NAME_BYTES`] bytes of the server encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(Box<[u8]>);

impl NameKey {
    fn cut(bytes: &[u8]) -> NameKey {
        NameKey(bytes[..bytes.len().min(NAME_BYTES)].into())
    }

    /// The unnamed statement or portal.
    pub fn unnamed() -> NameKey {
        NameKey(Box::default())
    }

    pub fn is_unnamed(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// For messages: printable, bounded.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.0)
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect()
    }
}

/// Reduces an encoding name as PostgreSQL does before looking it up
/// (`clean_encoding_name` in `src/common/encnames.c`): ASCII letters and
/// digits only, lower case.
fn cleaned(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// PostgreSQL's encoding names and aliases (`pg_encname_tbl` in
/// `src/common/encnames.c`, PostgreSQL 15–18), cleaned, with the encoding
/// each stands for.
const ALIASES: &[(&str, &str)] = &[
    ("abc", "WIN1258"),
    ("alt", "WIN866"),
    ("big5", "BIG5"),
    ("euccn", "EUC_CN"),
    ("eucjis2004", "EUC_JIS_2004"),
    ("eucjp", "EUC_JP"),
    ("euckr", "EUC_KR"),
    ("euctw", "EUC_TW"),
    ("gb18030", "GB18030"),
    ("gbk", "GBK"),
    ("iso88591", "LATIN1"),
    ("iso885910", "LATIN6"),
    ("iso885913", "LATIN7"),
    ("iso885914", "LATIN8"),
    ("iso885915", "LATIN9"),
    ("iso885916", "LATIN10"),
    ("iso88592", "LATIN2"),
    ("iso88593", "LATIN3"),
    ("iso88594", "LATIN4"),
    ("iso88595", "ISO_8859_5"),
    ("iso88596", "ISO_8859_6"),
    ("iso88597", "ISO_8859_7"),
    ("iso88598", "ISO_8859_8"),
    ("iso88599", "LATIN5"),
    ("johab", "JOHAB"),
    ("koi8", "KOI8R"),
    ("koi8r", "KOI8R"),
    ("koi8u", "KOI8U"),
    ("latin1", "LATIN1"),
    ("latin10", "LATIN10"),
    ("latin2", "LATIN2"),
    ("latin3", "LATIN3"),
    ("latin4", "LATIN4"),
    ("latin5", "LATIN5"),
    ("latin6", "LATIN6"),
    ("latin7", "LATIN7"),
    ("latin8", "LATIN8"),
    ("latin9", "LATIN9"),
    ("mskanji", "SJIS"),
    ("muleinternal", "MULE_INTERNAL"),
    ("shiftjis", "SJIS"),
    ("shiftjis2004", "SHIFT_JIS_2004"),
    ("sjis", "SJIS"),
    ("sqlascii", "SQL_ASCII"),
    ("tcvn", "WIN1258"),
    ("tcvn5712", "WIN1258"),
    ("uhc", "UHC"),
    ("unicode", "UTF8"),
    ("utf8", "UTF8"),
    ("vscii", "WIN1258"),
    ("win", "WIN1251"),
    ("win1250", "WIN1250"),
    ("win1251", "WIN1251"),
    ("win1252", "WIN1252"),
    ("win1253", "WIN1253"),
    ("win1254", "WIN1254"),
    ("win1255", "WIN1255"),
    ("win1256", "WIN1256"),
    ("win1257", "WIN1257"),
    ("win1258", "WIN1258"),
    ("win866", "WIN866"),
    ("win874", "WIN874"),
    ("win932", "SJIS"),
    ("win936", "GBK"),
    ("win949", "UHC"),
    ("win950", "BIG5"),
    ("windows1250", "WIN1250"),
    ("windows1251", "WIN1251"),
    ("windows1252", "WIN1252"),
    ("windows1253", "WIN1253"),
    ("windows1254", "WIN1254"),
    ("windows1255", "WIN1255"),
    ("windows1256", "WIN1256"),
    ("windows1257", "WIN1257"),
    ("windows1258", "WIN1258"),
    ("windows866", "WIN866"),
    ("windows874", "WIN874"),
    ("windows932", "SJIS"),
    ("windows936", "GBK"),
    ("windows949", "UHC"),
    ("windows950", "BIG5"),
];

/// The canonical name of an encoding name or alias, as the server resolves
/// it; `None` for a name the server does not know.
pub fn canonical(name: &str) -> Option<&'static str> {
    let c = cleaned(name);
    ALIASES.iter().find(|(a, _)| *a == c).map(|(_, e)| *e)
}

/// PostgreSQL's client-only encodings (`PG_ENCODING_IS_CLIENT_ONLY`): a
/// quote or backslash byte can be the second byte of a character, so text
/// splits differently for a reader that does not know the encoding.
pub const CLIENT_ONLY: &[&str] = &[
    "BIG5",
    "GB18030",
    "GBK",
    "JOHAB",
    "SHIFT_JIS_2004",
    "SJIS",
    "UHC",
];

/// Whether `name` (any alias) is a client-only encoding.
pub fn is_client_only(name: &str) -> bool {
    canonical(name).is_some_and(|c| CLIENT_ONLY.contains(&c))
}

/// Whether `name` is an encoding the server knows in which every ASCII
/// byte is that character (never part of a multibyte one), so delimiters,
/// quotes and backslashes can be found byte by byte.
pub fn is_ascii_safe(name: &str) -> bool {
    canonical(name).is_some_and(|c| !CLIENT_ONLY.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_as_the_server_resolves_them() {
        assert_eq!(canonical("Win-950"), Some("BIG5"));
        assert_eq!(canonical("shift_jis"), Some("SJIS"));
        assert_eq!(canonical("MS_KANJI"), Some("SJIS"));
        assert_eq!(canonical("unicode"), Some("UTF8"));
        assert_eq!(canonical("ISO-8859-1"), Some("LATIN1"));
        assert_eq!(canonical("klingon"), None);
        assert!(is_client_only("windows_936"));
        assert!(!is_client_only("EUC_JP"));
        assert!(
            ALIASES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no repeats"
        );
    }

    #[test]
    fn latin1_transcodes_exactly() {
        let e = Encodings {
            client: Encoding::Latin1,
            server: Encoding::Utf8,
        };
        let a = e.protocol_name(b"s\xff").unwrap();
        let b = e.protocol_name(b"s\xfe").unwrap();
        assert_ne!(a, b, "no lossy decoding");
        assert_eq!(a.as_bytes(), "sÿ".as_bytes());
        assert_eq!(e.text(b"SELECT '\xe9'").unwrap(), "SELECT 'é'");
    }

    #[test]
    fn protocol_names_are_cut_at_63_bytes_even_mid_character() {
        let e = Encodings::default();
        let long1 = format!("{}1", "A".repeat(63));
        let long2 = format!("{}2", "A".repeat(63));
        assert_eq!(
            e.protocol_name(long1.as_bytes()).unwrap(),
            e.protocol_name(long2.as_bytes()).unwrap()
        );
        let mid = format!("{}éx", "A".repeat(62));
        let key = e.protocol_name(mid.as_bytes()).unwrap();
        assert_eq!(key.as_bytes().len(), 63);
        assert_eq!(key.as_bytes()[62], 0xc3, "cut inside é");
        // Cut after conversion: LATIN1 é is one byte on the wire, two in UTF-8.
        let l = Encodings {
            client: Encoding::Latin1,
            server: Encoding::Utf8,
        };
        let mut a = b"A".repeat(62);
        a.extend_from_slice(b"\xe91");
        let mut b = b"A".repeat(62);
        b.extend_from_slice(b"\xe92");
        assert_eq!(l.protocol_name(&a).unwrap(), l.protocol_name(&b).unwrap());
    }

    /// Any bytes, under any pair of encodings: an answer, never a panic,
    /// and keys never longer than the server's.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let encodings = [
            Encoding::Utf8,
            Encoding::SqlAscii,
            Encoding::Latin1,
            Encoding::Other("EUC_JP".into()),
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for client in &encodings {
                for server in &encodings {
                    let e = Encodings {
                        client: client.clone(),
                        server: server.clone(),
                    };
                    if let Ok(k) = e.protocol_name(&bytes) {
                        assert!(k.as_bytes().len() <= NAME_BYTES);
                    }
                    if let Ok(text) = e.text(&bytes) {
                        if let Ok(k) = e.sql_name(&text) {
                            assert!(k.as_bytes().len() <= NAME_BYTES);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn what_cannot_be_converted_is_refused() {
        let e = Encodings::default();
        assert!(e.text(b"SELECT '\xff'").is_err());
        let euc = Encodings {
            client: Encoding::Other("EUC_JP".into()),
            server: Encoding::Utf8,
        };
        assert!(euc.text(b"SELECT 1").is_ok());
        assert!(euc.text(b"SELECT '\xa4\xa2'").is_err());
        let latin_server = Encodings {
            client: Encoding::Utf8,
            server: Encoding::Latin1,
        };
        assert!(latin_server.sql_name("ŝ").is_err());
        assert_eq!(latin_server.sql_name("é").unwrap().as_bytes(), b"\xe9");
    }
}
