//! Tokens signed here with each algorithm, and each way a token can be
//! wrong. The RSA key is a fixed test key (ring cannot generate RSA keys);
//! the others are made per run.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use super::*;

const ISS: &str = "https://login.example.com/tenant";
const NOW: i64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

enum Signer {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Key {
    kid: &'static str,
    signer: Signer,
}

impl Key {
    fn rsa(kid: &'static str) -> Key {
        let der = include_bytes!("testdata/rsa2048.der");
        Key {
            kid,
            signer: Signer::Rsa(RsaKeyPair::from_der(der).unwrap()),
        }
    }
    fn p256(kid: &'static str) -> Key {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Key {
            kid,
            signer: Signer::P256(EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap()),
        }
    }
    fn p384(kid: &'static str) -> Key {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Key {
            kid,
            signer: Signer::P384(EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap()),
        }
    }
    fn ed(kid: &'static str) -> Key {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key {
            kid,
            signer: Signer::Ed(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap()),
        }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(k) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::P256(k) | Signer::P384(k) => {
                let p = k.public_key().as_ref();
                let size = (p.len() - 1) / 2;
                let crv = if size == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "kid": self.kid, "crv": crv, "x": b64(&p[1..1 + size]), "y": b64(&p[1 + size..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(k) => {
                let enc: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(enc, &rng, msg, &mut sig).unwrap();
                sig
            }
            Signer::P256(k) | Signer::P384(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    fn token(&self, alg: &str, claims: &Value) -> String {
        token_with_header(
            self,
            &json!({"alg": alg, "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

fn token_with_header(key: &Key, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let alg = header["alg"].as_str().unwrap_or("");
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn jwks(keys: &[&Key]) -> Jwks {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    Jwks::parse(doc.to_string().as_bytes()).unwrap()
}

fn policy() -> IssuerPolicy {
    IssuerPolicy {
        issuer: ISS.into(),
        audience: "portcullis".into(),
        algorithms: SUPPORTED_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
        leeway_secs: 60,
        max_token_bytes: 8192,
        user_claim: "email".into(),
        groups_claim: Some("groups".into()),
        agents: vec!["report-bot".into()],
        services: vec!["nightly-etl".into(), "etl@project.iam.example".into()],
        allowed_domains: vec![],
        hosted_domain: None,
    }
}

fn person() -> Value {
    json!({
        "iss": ISS,
        "aud": ["portcullis", "other-api"],
        "sub": "00u1abc",
        "email": "alice@example.com",
        "groups": ["engineering", "oncall"],
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "jti": "tok-1",
    })
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

#[test]
fn every_supported_algorithm_validates() {
    let rsa = Key::rsa("r1");
    let p256 = Key::p256("e1");
    let p384 = Key::p384("e2");
    let ed = Key::ed("o1");
    let set = jwks(&[&rsa, &p256, &p384, &ed]);
    let cases: [(&Key, &str); 9] = [
        (&rsa, "RS256"),
        (&rsa, "RS384"),
        (&rsa, "RS512"),
        (&rsa, "PS256"),
        (&rsa, "PS384"),
        (&rsa, "PS512"),
        (&p256, "ES256"),
        (&p384, "ES384"),
        (&ed, "EdDSA"),
    ];
    for (key, alg) in cases {
        let t = key.token(alg, &person());
        let id = validate(&t, "alice@example.com", NOW, &policy(), &set)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.kind, Kind::Human);
        assert_eq!(id.subject, "alice@example.com");
        assert_eq!(id.groups, ["engineering", "oncall"]);
        assert_eq!(id.on_behalf_of, None);
        assert_eq!(id.proof.method(), "oidc");
        assert_eq!(
            id.proof.credential().as_deref(),
            Some("https://login.example.com/tenant#tok-1")
        );
    }
}

#[test]
fn forged_and_confused_signatures_are_refused() {
    let rsa = Key::rsa("r1");
    let p256 = Key::p256("e1");
    let set = jwks(&[&rsa, &p256]);
    let user = "alice@example.com";
    let p = policy();

    // alg none, with or without a signature.
    let header = b64(json!({"alg": "none", "kid": "r1"}).to_string().as_bytes());
    let payload = b64(person().to_string().as_bytes());
    for t in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        assert_eq!(
            validate(&t, user, NOW, &p, &set),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }
    // HS256 "signed" with the issuer's public RSA key as the HMAC secret.
    let input = format!(
        "{}.{payload}",
        b64(json!({"alg": "HS256", "kid": "r1"}).to_string().as_bytes())
    );
    let n = rsa.jwk()["n"].as_str().unwrap().to_owned();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, n.as_bytes()),
        input.as_bytes(),
    );
    let t = format!("{input}.{}", b64(mac.as_ref()));
    assert_eq!(
        validate(&t, user, NOW, &p, &set),
        Err(TokenError::AlgorithmNotAllowed)
    );

    // A tampered payload (another email) under the original signature.
    let good = rsa.token("RS256", &person());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = b64(with(person(), "email", json!("mallory@example.com"))
        .to_string()
        .as_bytes());
    let t = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(
        validate(&t, "mallory@example.com", NOW, &p, &set),
        Err(TokenError::BadSignature)
    );

    // An ES256 header naming the RSA key; an RS256 header naming the EC key.
    let t = token_with_header(&p256, &json!({"alg": "ES256", "kid": "r1"}), &person());
    assert_eq!(
        validate(&t, user, NOW, &p, &set),
        Err(TokenError::KeyMismatch)
    );
    let t = token_with_header(&rsa, &json!({"alg": "RS256", "kid": "e1"}), &person());
    assert_eq!(
        validate(&t, user, NOW, &p, &set),
        Err(TokenError::KeyMismatch)
    );

    // A key the issuer never published.
    let stranger = Key::p256("e1");
    let t = stranger.token("ES256", &person());
    assert_eq!(
        validate(&t, user, NOW, &p, &set),
        Err(TokenError::BadSignature)
    );
    let t = Key::p256("nobody").token("ES256", &person());
    assert_eq!(
        validate(&t, user, NOW, &p, &set),
        Err(TokenError::UnknownKey)
    );

    // An algorithm this issuer is not allowed, though supported.
    let only_es = IssuerPolicy {
        algorithms: vec!["ES256".into()],
        ..policy()
    };
    assert_eq!(
        validate(&good, user, NOW, &only_es, &set),
        Err(TokenError::AlgorithmNotAllowed)
    );

    // A JWK that names its algorithm checks only that one.
    let mut doc = json!({"keys": [rsa.jwk()]});
    doc["keys"][0]["alg"] = json!("PS256");
    let pinned = Jwks::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(
        validate(&good, user, NOW, &p, &pinned),
        Err(TokenError::KeyMismatch)
    );
    // An encryption key never checks a signature.
    doc["keys"][0]["alg"] = json!("RS256");
    doc["keys"][0]["use"] = json!("enc");
    let enc = Jwks::parse(doc.to_string().as_bytes()).unwrap();
    assert!(enc.keys.is_empty());
}

#[test]
fn claims_are_checked() {
    let key = Key::p256("e1");
    let set = jwks(&[&key]);
    let p = policy();
    let user = "alice@example.com";
    let check = |claims: Value| validate(&key.token("ES256", &claims), user, NOW, &p, &set);

    assert!(check(person()).is_ok());
    assert_eq!(
        check(with(
            person(),
            "iss",
            json!("https://login.example.com/tenant/")
        )),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        check(without(person(), "iss")),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        check(with(person(), "aud", json!("other-api"))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        check(with(person(), "aud", json!(["a", "b"]))),
        Err(TokenError::WrongAudience)
    );
    assert!(check(with(person(), "aud", json!("portcullis"))).is_ok());
    assert_eq!(
        check(without(person(), "aud")),
        Err(TokenError::WrongAudience)
    );

    // exp: required; within leeway still accepted.
    assert_eq!(
        check(without(person(), "exp")),
        Err(TokenError::MissingClaim("exp"))
    );
    assert!(check(with(person(), "exp", json!(NOW - 59))).is_ok());
    assert_eq!(
        check(with(person(), "exp", json!(NOW - 60))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(with(person(), "exp", json!("soon"))),
        Err(TokenError::Malformed("a time claim is not a number"))
    );
    assert!(check(with(person(), "exp", json!((NOW + 10) as f64 + 0.5))).is_ok());
    // nbf and iat in the future.
    assert!(check(with(person(), "nbf", json!(NOW + 60))).is_ok());
    assert_eq!(
        check(with(person(), "nbf", json!(NOW + 61))),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        check(with(person(), "iat", json!(NOW + 61))),
        Err(TokenError::IssuedInFuture)
    );

    // The user claim must name the user the client gave.
    assert_eq!(
        validate(
            &key.token("ES256", &person()),
            "bob@example.com",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::OtherUser)
    );
    assert_eq!(
        check(without(person(), "email")),
        Err(TokenError::MissingClaim("user"))
    );
    // sub is not a fallback for a missing user claim.
    assert_eq!(
        validate(
            &key.token("ES256", &without(person(), "email")),
            "00u1abc",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::MissingClaim("user"))
    );
    // Groups as one string; no groups claim.
    assert_eq!(
        check(with(person(), "groups", json!("solo")))
            .unwrap()
            .groups,
        ["solo"]
    );
    assert!(check(without(person(), "groups"))
        .unwrap()
        .groups
        .is_empty());

    // Oversized.
    let big = with(person(), "pad", json!("x".repeat(9000)));
    assert_eq!(check(big), Err(TokenError::TooLarge));
}

#[test]
fn agents_and_services_are_told_by_their_client() {
    let key = Key::ed("o1");
    let set = jwks(&[&key]);
    let p = policy();
    // A client-credentials token: no person, the client is the principal.
    let service = json!({"iss": ISS, "aud": "portcullis", "sub": "nightly-etl", "client_id": "nightly-etl", "exp": NOW + 60});
    let id = validate(&key.token("EdDSA", &service), "nightly-etl", NOW, &p, &set).unwrap();
    assert_eq!(
        (id.kind, id.subject.as_str(), id.on_behalf_of),
        (Kind::Service, "nightly-etl", None)
    );

    // An agent's token that carries the person it acts for.
    let agent = json!({"iss": ISS, "aud": "portcullis", "azp": "report-bot", "email": "alice@example.com", "exp": NOW + 60});
    let id = validate(&key.token("EdDSA", &agent), "report-bot", NOW, &p, &set).unwrap();
    assert_eq!(id.kind, Kind::Agent);
    assert_eq!(id.subject, "report-bot");
    assert_eq!(id.on_behalf_of.as_deref(), Some("alice@example.com"));
    // ... which cannot log in as the person.
    assert_eq!(
        validate(
            &key.token("EdDSA", &agent),
            "alice@example.com",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::OtherUser)
    );

    // RFC 8693 delegation: the actor acts for the subject.
    let delegated = with(person(), "act", json!({"sub": "report-bot"}));
    let id = validate(&key.token("EdDSA", &delegated), "report-bot", NOW, &p, &set).unwrap();
    assert_eq!(
        (id.kind, id.on_behalf_of.as_deref()),
        (Kind::Agent, Some("alice@example.com"))
    );
    let unknown = with(person(), "act", json!({"sub": "stranger"}));
    assert_eq!(
        validate(
            &key.token("EdDSA", &unknown),
            "alice@example.com",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::UnknownActor)
    );

    // A client that is not configured as an agent or service is just the
    // app a person used; without a person the token names nobody.
    let unlisted = json!({"iss": ISS, "aud": "portcullis", "sub": "alice@example.com", "client_id": "alice@example.com", "exp": NOW + 60});
    assert_eq!(
        validate(
            &key.token("EdDSA", &unlisted),
            "alice@example.com",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::MissingClaim("user"))
    );
}

#[test]
fn keys_are_selected_by_kid_or_uniquely() {
    let a = Key::p256("a");
    let b = Key::p256("b");
    let set = jwks(&[&a, &b]);
    let no_kid = token_with_header(&a, &json!({"alg": "ES256"}), &person());
    assert!(matches!(
        validate(&no_kid, "alice@example.com", NOW, &policy(), &set),
        Err(TokenError::Malformed(_))
    ));
    let one = jwks(&[&a]);
    assert!(validate(&no_kid, "alice@example.com", NOW, &policy(), &one).is_ok());
    assert_eq!(
        peek_kid(&a.token("ES256", &person()), 8192).as_deref(),
        Some("a")
    );
    assert_eq!(
        peek_issuer(&a.token("ES256", &person()), 8192).as_deref(),
        Some(ISS)
    );
}

#[test]
fn refreshes_are_bounded() {
    let a = Key::p256("a");
    let set = jwks(&[&a]);
    // Nothing yet: fetch, but not more than every 5 s while failing.
    assert!(refresh_due(None, None, None, None, NOW, 3600));
    assert!(!refresh_due(None, None, Some(NOW - 4), None, NOW, 3600));
    assert!(refresh_due(None, None, Some(NOW - 5), None, NOW, 3600));
    // Known kid, fresh keys: no fetch.
    assert!(!refresh_due(
        Some(&set),
        Some(NOW - 10),
        Some(NOW - 10),
        Some("a"),
        NOW,
        3600
    ));
    // Unknown kid: at most once a minute.
    assert!(!refresh_due(
        Some(&set),
        Some(NOW - 10),
        Some(NOW - 10),
        Some("z"),
        NOW,
        3600
    ));
    assert!(refresh_due(
        Some(&set),
        Some(NOW - 60),
        Some(NOW - 60),
        Some("z"),
        NOW,
        3600
    ));
    // Stale keys.
    assert!(refresh_due(
        Some(&set),
        Some(NOW - 3600),
        Some(NOW - 3600),
        Some("a"),
        NOW,
        3600
    ));
}

#[test]
fn hostile_key_sets_do_not_become_keys() {
    for doc in [
        json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}),
        json!({"keys": [{"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])}]}),
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "RSA"}]}),
        json!({"keys": ["x", 1, null]}),
    ] {
        assert!(
            Jwks::parse(doc.to_string().as_bytes())
                .unwrap()
                .keys
                .is_empty(),
            "{doc}"
        );
    }
    assert!(Jwks::parse(b"{}").is_err());
    assert!(Jwks::parse(b"[]").is_err());
    assert!(Jwks::parse(b"\xff").is_err());
}

#[test]
fn client_ids_come_from_every_providers_claim_and_accounts_by_name() {
    let key = Key::ed("o1");
    let set = jwks(&[&key]);
    let p = policy();
    for claim in ["client_id", "azp", "appid", "cid"] {
        let t = json!({"iss": ISS, "aud": "portcullis", "sub": "x", claim: "report-bot", "exp": NOW + 60});
        let id = validate(&key.token("EdDSA", &t), "report-bot", NOW, &p, &set).unwrap();
        assert_eq!(id.kind, Kind::Agent, "{claim}");
    }
    // A service account named by its email (Google), listed by name.
    let sa = json!({"iss": ISS, "aud": "portcullis", "sub": "1234", "email": "etl@project.iam.example", "exp": NOW + 60, "groups": ["admins"]});
    let id = validate(
        &key.token("EdDSA", &sa),
        "etl@project.iam.example",
        NOW,
        &p,
        &set,
    )
    .unwrap();
    assert_eq!((id.kind, id.on_behalf_of.as_deref()), (Kind::Service, None));
    assert!(id.groups.is_empty(), "groups are a person's");
    // Not by an unverified email, nor by a claim users choose themselves.
    let unverified = with(sa.clone(), "email_verified", json!(false));
    assert_eq!(
        validate(
            &key.token("EdDSA", &unverified),
            "etl@project.iam.example",
            NOW,
            &p,
            &set
        ),
        Err(TokenError::EmailNotVerified)
    );
    let chosen = IssuerPolicy {
        user_claim: "preferred_username".into(),
        ..policy()
    };
    let squatter = json!({"iss": ISS, "aud": "portcullis", "preferred_username": "nightly-etl", "exp": NOW + 60});
    let id = validate(
        &key.token("EdDSA", &squatter),
        "nightly-etl",
        NOW,
        &chosen,
        &set,
    )
    .unwrap();
    assert_eq!(
        id.kind,
        Kind::Human,
        "a chosen name never makes a service account"
    );
    // An agent acting for a person does not get the person's groups.
    let agent = json!({"iss": ISS, "aud": "portcullis", "azp": "report-bot", "email": "alice@example.com", "groups": ["dba"], "exp": NOW + 60});
    let id = validate(&key.token("EdDSA", &agent), "report-bot", NOW, &p, &set).unwrap();
    assert!(id.groups.is_empty());
}

#[test]
fn people_must_be_vouched_for_by_the_organisation() {
    let key = Key::ed("o1");
    let set = jwks(&[&key]);
    let scoped = IssuerPolicy {
        allowed_domains: vec!["example.com".into()],
        hosted_domain: Some("example.com".into()),
        ..policy()
    };
    let alice = with(person(), "hd", json!("example.com"));
    assert!(validate(
        &key.token("EdDSA", &alice),
        "alice@example.com",
        NOW,
        &scoped,
        &set
    )
    .is_ok());
    // Another domain, no hd, a wrong hd, an unverified email.
    let outsider = with(
        with(person(), "email", json!("eve@evil.example")),
        "hd",
        json!("example.com"),
    );
    assert_eq!(
        validate(
            &key.token("EdDSA", &outsider),
            "eve@evil.example",
            NOW,
            &scoped,
            &set
        ),
        Err(TokenError::DomainNotAllowed)
    );
    assert_eq!(
        validate(
            &key.token("EdDSA", &person()),
            "alice@example.com",
            NOW,
            &scoped,
            &set
        ),
        Err(TokenError::DomainNotAllowed)
    );
    let unverified = with(alice.clone(), "email_verified", json!(false));
    assert_eq!(
        validate(
            &key.token("EdDSA", &unverified),
            "alice@example.com",
            NOW,
            &scoped,
            &set
        ),
        Err(TokenError::EmailNotVerified)
    );
    // A look-alike domain is not the domain.
    let lookalike = with(
        with(person(), "email", json!("alice@notexample.com")),
        "hd",
        json!("example.com"),
    );
    assert_eq!(
        validate(
            &key.token("EdDSA", &lookalike),
            "alice@notexample.com",
            NOW,
            &scoped,
            &set
        ),
        Err(TokenError::DomainNotAllowed)
    );
}
