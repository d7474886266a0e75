//! PEM private keys (`-----BEGIN [RSA |EC |DSA |ENCRYPTED |OPENSSH ]PRIVATE
//! KEY-----` … `-----END …-----`, and PGP private key blocks). The hit is
//! the whole block; a block with no END line runs to the end of the text,
//! since a truncated key is still a key.

use memchr::memmem;

const BEGIN: &[u8] = b"-----BEGIN ";
const DASHES: &[u8] = b"-----";
const MAX_LABEL: usize = 40;

/// A block whose BEGIN line starts at `start`: its end.
pub(super) fn at(text: &[u8], start: usize) -> Option<usize> {
    let label_start = start + BEGIN.len();
    let rest = text.get(label_start..)?;
    let label_len = memmem::find(&rest[..rest.len().min(MAX_LABEL + DASHES.len())], DASHES)?;
    let label = &rest[..label_len];
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
        || !label.iter().all(|&b| b.is_ascii_uppercase() || b == b' ')
    {
        return None;
    }
    let body = label_start + label_len + DASHES.len();
    let mut end_line = Vec::with_capacity(label_len + 14);
    end_line.extend_from_slice(b"-----END ");
    end_line.extend_from_slice(label);
    end_line.extend_from_slice(DASHES);
    Some(match memmem::find(&text[body..], &end_line) {
        Some(p) => body + p + end_line.len(),
        None => text.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        for label in [
            "RSA PRIVATE KEY",
            "PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
            "PGP PRIVATE KEY BLOCK",
        ] {
            let block = format!("-----BEGIN {label}-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END {label}-----");
            let text = format!("key: {block}\ntrailer");
            assert_eq!(at(text.as_bytes(), 5), Some(5 + block.len()), "{label}");
        }
    }

    #[test]
    fn truncated_block_runs_to_the_end() {
        let text = b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJB";
        assert_eq!(at(text, 0), Some(text.len()));
    }

    #[test]
    fn not_private_keys() {
        for text in [
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN RSA PRIVATE KEY",
            "-----BEGIN ",
        ] {
            assert_eq!(at(text.as_bytes(), 0), None, "{text}");
        }
    }
}
