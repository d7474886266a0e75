//! What the `token` fuzz target runs: arbitrary bytes as a presented
//! password, through everything that reads one before any key or store is
//! involved (the API-key parser, the JWS parser, the unverified peeks,
//! the JWKS parser) and then through full validation against a fixed key
//! set. Shared by the cargo-fuzz target (`fuzz/`) and the randomized test
//! below. Panics only on a bug.

use crate::oidc::{self, IssuerPolicy, Jwks};

pub fn exercise(data: &[u8]) {
    let _ = Jwks::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::keys::parse(text);
    let _ = oidc::looks_like_jws(text);
    let _ = oidc::peek_issuer(text, 1 << 16);
    let _ = oidc::peek_kid(text, 1 << 16);
    let keys = Jwks::parse(JWKS.as_bytes()).unwrap_or_default();
    let policy = IssuerPolicy {
        issuer: "https://issuer.example".into(),
        audience: "portcullis".into(),
        algorithms: oidc::SUPPORTED_ALGORITHMS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        leeway_secs: 60,
        max_token_bytes: 1 << 16,
        user_claim: "email".into(),
        groups_claim: Some("groups".into()),
        agents: vec!["agent".into()],
        services: vec!["service".into()],
        allowed_domains: vec!["example.com".into()],
        hosted_domain: None,
    };
    let _ = oidc::validate(text, "user", 1_800_000_000, &policy, &keys);
}

/// What the `certificate` fuzz target runs: arbitrary bytes as a client
/// certificate's DER, read for every kind of name. Panics only on a bug.
pub fn exercise_certificate(data: &[u8]) {
    use crate::certs::{identify, CertPolicy, NameField};
    for name_field in [
        NameField::CommonName,
        NameField::Email,
        NameField::Dns,
        NameField::Uri,
    ] {
        let policy = CertPolicy {
            name_field,
            uri_prefix: (name_field == NameField::Uri).then(|| "spiffe://x/".into()),
            agents: vec!["agent".into()],
            services: Vec::new(),
            groups_from_ou: true,
        };
        let _ = identify(data, "user", &policy);
    }
}

/// One key of each type, so that every verification path is reachable.
const JWKS: &str = r#"{"keys":[
 {"kty":"EC","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
 {"kty":"OKP","kid":"o","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
]}"#;

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    /// A cheap stand-in for the fuzzer: structured and random inputs.
    #[test]
    fn random_inputs_never_panic() {
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let seeds = [
            format!(
                "{}.{}.",
                b(r#"{"alg":"ES256","kid":"e"}"#),
                b(r#"{"iss":"https://issuer.example","exp":1e300}"#)
            ),
            format!(
                "{}.{}.AAAA",
                b(r#"{"alg":"EdDSA"}"#),
                b(r#"{"exp":-9223372036854775808,"aud":[1,null]}"#)
            ),
            format!(
                "{}.{}.{}",
                b(r#"{"alg":"RS256","kid":7}"#),
                b(r#"{"act":{"sub":[]},"client_id":{}}"#),
                "A".repeat(512)
            ),
            "pck_0011223344556677_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "eyJ..".into(),
            r#"{"keys":[{"kty":"RSA","n":"","e":""},{"kty":"EC","crv":"P-384"}]}"#.into(),
        ];
        for seed in &seeds {
            super::exercise(seed.as_bytes());
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize].as_bytes();
            let mut v = seed.to_vec();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % v.len().max(1);
                match next() % 3 {
                    0 if !v.is_empty() => v[i] = next() as u8,
                    1 => v.insert(i.min(v.len()), b".-_eyJ{}\"0"[(next() % 10) as usize]),
                    _ if !v.is_empty() => {
                        v.remove(i);
                    }
                    _ => {}
                }
            }
            super::exercise(&v);
        }
    }

    /// The certificate reader on mutations of a real certificate with
    /// every kind of name.
    #[test]
    fn random_certificates_never_panic() {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
        let mut params = CertificateParams::new(vec!["db.example".into()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name.push(DnType::CommonName, "user");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "ops");
        params.subject_alt_names.extend([
            SanType::Rfc822Name("user@example.com".try_into().unwrap()),
            SanType::URI("spiffe://x/user".try_into().unwrap()),
        ]);
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        super::exercise_certificate(&der);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut v = der.clone();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
            }
            if next() % 4 == 0 {
                v.truncate((next() as usize) % v.len());
            }
            super::exercise_certificate(&v);
        }
    }
}
