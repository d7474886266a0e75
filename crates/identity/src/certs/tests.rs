use rcgen::{CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, KeyPair, SanType};

use super::*;

fn policy(field: NameField) -> CertPolicy {
    CertPolicy {
        name_field: field,
        uri_prefix: None,
        agents: vec!["report-bot".into()],
        services: vec!["nightly-etl".into()],
        groups_from_ou: false,
    }
}

fn cert(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // rcgen names every certificate "rcgen self signed cert" unless told.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn with_cn(cn: &str) -> Vec<u8> {
    cert(|p| p.distinguished_name.push(DnType::CommonName, cn))
}

fn san(names: Vec<SanType>) -> Vec<u8> {
    cert(|p| p.subject_alt_names = names)
}

fn ia5(s: &str) -> rcgen::Ia5String {
    s.try_into().unwrap()
}

#[test]
fn the_common_name_names_the_user() {
    let der = with_cn("dana");
    let id = identify(&der, "dana", &policy(NameField::CommonName)).unwrap();
    assert_eq!(id.subject, "dana");
    assert_eq!(id.kind, Kind::Human);
    assert!(id.groups.is_empty());
    assert_eq!(id.on_behalf_of, None);
    assert_eq!(
        id.proof,
        Proof::Certificate {
            fingerprint: fingerprint(&der)
        }
    );
    assert_eq!(id.proof.method(), "certificate");
    assert_eq!(
        id.proof.credential().unwrap(),
        format!("sha256:{}", fingerprint(&der))
    );
}

#[test]
fn names_are_compared_exactly() {
    let p = policy(NameField::CommonName);
    let der = with_cn("dana");
    for other in ["Dana", "dana ", "dan", "dana\0", "erin", ""] {
        assert_eq!(
            identify(&der, other, &p),
            Err(Refused::OtherUser {
                user: other.to_owned()
            }),
            "{other:?}"
        );
    }
}

#[test]
fn listed_names_are_agents_and_services() {
    let p = policy(NameField::CommonName);
    let id = identify(&with_cn("report-bot"), "report-bot", &p).unwrap();
    assert_eq!(id.kind, Kind::Agent);
    let id = identify(&with_cn("nightly-etl"), "nightly-etl", &p).unwrap();
    assert_eq!(id.kind, Kind::Service);
}

#[test]
fn two_common_names_are_ambiguous() {
    let der = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        // The same attribute type again, under another key of rcgen's map.
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "erin");
    });
    let p = policy(NameField::CommonName);
    assert_eq!(identify(&der, "dana", &p), Err(Refused::AmbiguousName));
    assert_eq!(identify(&der, "erin", &p), Err(Refused::AmbiguousName));
}

#[test]
fn a_certificate_without_the_field_names_nobody() {
    let der = san(vec![SanType::DnsName(ia5("db.example"))]);
    assert_eq!(
        identify(&der, "dana", &policy(NameField::CommonName)),
        Err(Refused::NoName("subject common name"))
    );
    assert_eq!(
        identify(&der, "dana@example.com", &policy(NameField::Email)),
        Err(Refused::NoName("email subjectAltName"))
    );
    let none = cert(|_| {});
    assert_eq!(
        identify(&none, "x", &policy(NameField::Uri)),
        Err(Refused::NoName("URI subjectAltName"))
    );
}

#[test]
fn subject_alt_names_of_the_configured_type_only() {
    let der = san(vec![
        SanType::Rfc822Name(ia5("dana@example.com")),
        SanType::DnsName(ia5("etl.internal")),
        SanType::URI(ia5("spiffe://corp.example/ns/etl/sa/nightly-etl")),
    ]);
    let email = policy(NameField::Email);
    assert!(identify(&der, "dana@example.com", &email).is_ok());
    assert!(identify(&der, "etl.internal", &email).is_err());
    let dns = policy(NameField::Dns);
    assert!(identify(&der, "etl.internal", &dns).is_ok());
    assert!(identify(&der, "dana@example.com", &dns).is_err());
    let uri = policy(NameField::Uri);
    assert!(identify(&der, "spiffe://corp.example/ns/etl/sa/nightly-etl", &uri).is_ok());
    // The common name is not a fallback for a missing alt name.
    let cn = cert(|p| {
        p.distinguished_name
            .push(DnType::CommonName, "dana@example.com")
    });
    assert_eq!(
        identify(&cn, "dana@example.com", &email),
        Err(Refused::NoName("email subjectAltName"))
    );
}

#[test]
fn every_alt_name_of_the_type_is_vouched_for() {
    let der = san(vec![
        SanType::Rfc822Name(ia5("dana@example.com")),
        SanType::Rfc822Name(ia5("dana@corp.example")),
    ]);
    let p = policy(NameField::Email);
    assert!(identify(&der, "dana@example.com", &p).is_ok());
    assert!(identify(&der, "dana@corp.example", &p).is_ok());
}

#[test]
fn a_uri_prefix_is_required_and_stripped() {
    let der = san(vec![
        SanType::URI(ia5("spiffe://corp.example/ns/etl/sa/nightly-etl")),
        SanType::URI(ia5("spiffe://other.example/ns/etl/sa/dana")),
        SanType::URI(ia5("spiffe://corp.example/ns/etl/sa/")),
    ]);
    let p = CertPolicy {
        uri_prefix: Some("spiffe://corp.example/ns/etl/sa/".into()),
        ..policy(NameField::Uri)
    };
    let id = identify(&der, "nightly-etl", &p).unwrap();
    assert_eq!(
        (id.subject.as_str(), id.kind),
        ("nightly-etl", Kind::Service)
    );
    // Another trust domain's name, the whole URI, and the empty rest do
    // not count.
    assert!(identify(&der, "dana", &p).is_err());
    assert!(identify(&der, "spiffe://corp.example/ns/etl/sa/nightly-etl", &p).is_err());
    assert!(identify(&der, "", &p).is_err());
}

#[test]
fn organizational_units_become_groups_when_asked() {
    let der = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "engineers");
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "oncall");
    });
    let mut p = policy(NameField::CommonName);
    assert!(identify(&der, "dana", &p).unwrap().groups.is_empty());
    p.groups_from_ou = true;
    assert_eq!(
        identify(&der, "dana", &p).unwrap().groups,
        vec!["engineers".to_owned(), "oncall".to_owned()]
    );
}

#[test]
fn printable_and_utf8_names_are_read_and_legacy_encodings_refused() {
    let printable = cert(|p| {
        p.distinguished_name.push(
            DnType::CommonName,
            DnValue::PrintableString("nightly-etl".try_into().unwrap()),
        )
    });
    assert!(identify(&printable, "nightly-etl", &policy(NameField::CommonName)).is_ok());
    let utf8 = with_cn("zoë");
    assert!(identify(&utf8, "zoë", &policy(NameField::CommonName)).is_ok());
    let bmp = cert(|p| {
        p.distinguished_name.push(
            DnType::CommonName,
            DnValue::BmpString("dana".try_into().unwrap()),
        )
    });
    assert!(matches!(
        identify(&bmp, "dana", &policy(NameField::CommonName)),
        Err(Refused::Malformed(_))
    ));
}

#[test]
fn only_certificates_for_client_authentication_prove_a_login() {
    let p = policy(NameField::CommonName);
    let none = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.extended_key_usages.clear();
    });
    assert_eq!(identify(&none, "dana", &p), Err(Refused::NotForClients));
    let server = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert_eq!(identify(&server, "dana", &p), Err(Refused::NotForClients));
    let any = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
    });
    assert_eq!(identify(&any, "dana", &p), Err(Refused::NotForClients));
    let both = cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    });
    assert!(identify(&both, "dana", &p).is_ok());
}

#[test]
fn garbage_is_refused_without_panicking() {
    let der = with_cn("dana");
    let p = policy(NameField::CommonName);
    for cut in 0..der.len() {
        assert!(identify(&der[..cut], "dana", &p).is_err());
    }
    let mut flipped = der.clone();
    for i in 0..flipped.len() {
        flipped[i] ^= 0x55;
        let _ = identify(&flipped, "dana", &p);
        flipped[i] ^= 0x55;
    }
}

#[test]
fn field_words() {
    assert_eq!(NameField::parse("cn"), Some(NameField::CommonName));
    assert_eq!(NameField::parse("email"), Some(NameField::Email));
    assert_eq!(NameField::parse("dns"), Some(NameField::Dns));
    assert_eq!(NameField::parse("uri"), Some(NameField::Uri));
    assert_eq!(NameField::parse("CN"), None);
}
