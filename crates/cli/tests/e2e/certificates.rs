//! Client certificates end to end: a certificate from the configured
//! client CA logs in as the name it carries, with no password, through
//! libpq (psql with sslcert/sslkey) and rustls; the identity reaches the
//! database session and the audit trail. A certificate naming someone
//! else, from another CA, or revoked does not log in, and clients without
//! a certificate keep their own methods on the same listener.

use std::process::Command;

use portcullis_audit::record::IdentityKind;
use portcullis_testbed::rcgen::{DnType, SanType, SerialNumber};
use portcullis_testbed::{IssuedCert, RustlsConnect, TestPki};

use crate::harness::{cluster, login_record, pki, sqlstate, Proxy, Setup, ALICE};

const ALPN: &[u8] = b"postgresql";

fn setup(extra: &str) -> Setup {
    Setup {
        extra: format!(
            "[identity.certificates]\nca_file = \"tls/ca.crt\"\nagents = [\"report-bot\"]\n\
             services = [\"nightly-etl\"]\ngroups_from_ou = true\n{extra}"
        ),
        ..Setup::default()
    }
}

fn client_cert(cn: &str, serial: u64) -> IssuedCert {
    pki()
        .issue_client_cert_with(|p| {
            p.distinguished_name.push(DnType::CommonName, cn);
            p.serial_number = Some(SerialNumber::from(serial));
        })
        .unwrap()
}

/// Connects over TLS as `user`, presenting `cert` (signed by `ca`).
async fn connect(
    proxy: &Proxy,
    user: &str,
    password: &str,
    cert: Option<&IssuedCert>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_from(proxy, user, password, cert, pki()).await
}

async fn connect_from(
    proxy: &Proxy,
    user: &str,
    password: &str,
    cert: Option<&IssuedCert>,
    issuer: &TestPki,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    // The proxy's certificate is always the harness's; only the client's
    // certificate comes from `issuer`.
    let config = match cert {
        Some(c) => {
            let mut config = pki().rustls_client_config_with_cert(Some(ALPN), c).unwrap();
            if !std::ptr::eq(issuer, pki()) {
                config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(pki().root_store())
                .with_client_auth_cert(vec![c.cert_der.clone()], c.key_der())
                .unwrap();
                config.alpn_protocols = vec![ALPN.to_vec()];
            }
            config
        }
        None => pki().rustls_client_config(Some(ALPN)),
    };
    let (client, conn) = tokio_postgres::connect(
        &proxy.conn_str((user, password), "sslmode=require"),
        RustlsConnect::new(config),
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

#[track_caller]
fn refused(
    r: Result<tokio_postgres::Client, tokio_postgres::Error>,
    what: &str,
) -> tokio_postgres::Error {
    match r {
        Ok(_) => panic!("logged in: {what}"),
        Err(e) => e,
    }
}

async fn one(c: &tokio_postgres::Client, sql: &str) -> String {
    c.simple_query(sql)
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

const WHO: &str = "SELECT current_setting('portcullis.identity') || '|' || \
                   current_setting('portcullis.identity_kind') || '|' || current_user";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_logs_in_as_the_name_it_carries() {
    let proxy = Proxy::with(setup("")).await;
    let etl = client_cert("nightly-etl", 1001);
    // No password is asked for: a wrong one does not matter.
    let c = connect(&proxy, "nightly-etl", "not-asked", Some(&etl))
        .await
        .expect("the certificate logs in");
    assert_eq!(one(&c, WHO).await, "nightly-etl|service|postgres");
    let bot = client_cert("report-bot", 1002);
    let b = connect(&proxy, "report-bot", "x", Some(&bot))
        .await
        .unwrap();
    assert_eq!(one(&b, WHO).await, "report-bot|agent|postgres");
    drop((c, b));

    let dir = proxy.shutdown().await;
    let c = login_record(dir.path(), "nightly-etl");
    assert_eq!(c.auth_method.as_deref(), Some("certificate"));
    assert_eq!(c.identity.as_ref().unwrap().kind, IdentityKind::Service);
    assert_eq!(
        c.credential.as_deref(),
        Some(
            format!(
                "sha256:{}",
                portcullis_identity::certs::fingerprint(etl.cert_der.as_ref())
            )
            .as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_sslcert_and_sslkey() {
    let proxy = Proxy::with(setup("")).await;
    let files = tempfile::tempdir().unwrap();
    let cert = pki()
        .issue_client_cert_with(|p| {
            p.distinguished_name.push(DnType::CommonName, "dana");
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "engineers");
        })
        .unwrap();
    let (crt, key) = (files.path().join("dana.crt"), files.path().join("dana.key"));
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=app user=dana sslmode=verify-full sslrootcert={} \
         sslcert={} sslkey={}",
        proxy.addr.port(),
        proxy.dir.path().join("tls/ca.crt").display(),
        crt.display(),
        key.display()
    );
    let home = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(cluster().bin("psql"))
            .env_clear()
            .env("HOME", home.path())
            .env("LC_ALL", "C")
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-A", "-t", "-w", "-d", &conninfo, "-c", WHO])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql: {stderr}");
    // -w: psql never had a password to give, so none was asked for.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dana|human|postgres"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let proxy = Proxy::with(setup("")).await;
    let dana = client_cert("dana", 2001);
    for user in ["erin", "Dana", "nightly-etl"] {
        let e = connect(&proxy, user, "x", Some(&dana))
            .await
            .err()
            .unwrap_or_else(|| panic!("dana's certificate logged in as {user}"));
        assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
        let db = e.as_db_error().unwrap();
        assert_eq!(
            db.message(),
            format!("certificate authentication failed for user \"{user}\"")
        );
    }
    // A certificate with no common name names nobody.
    let nameless = pki()
        .issue_client_cert_with(|p| {
            p.subject_alt_names = vec![SanType::DnsName("etl.internal".try_into().unwrap())]
        })
        .unwrap();
    let e = connect(&proxy, "etl.internal", "x", Some(&nameless))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let proxy = Proxy::with(setup("")).await;
    let rogue = TestPki::generate(&["127.0.0.1"]).unwrap();
    let forged = rogue.issue_client_cert("nightly-etl").unwrap();
    let e = connect_from(&proxy, "nightly-etl", "x", Some(&forged), &rogue).await;
    let e = refused(e, "a certificate from another CA is refused");
    // Refused in the TLS handshake: no PostgreSQL message at all.
    assert!(e.as_db_error().is_none(), "{e}");
    // The proxy goes on serving.
    let ok = connect(
        &proxy,
        "nightly-etl",
        "x",
        Some(&client_cert("nightly-etl", 3)),
    )
    .await
    .unwrap();
    ok.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_fails_the_handshake() {
    let crl_dir = tempfile::tempdir().unwrap();
    let crl = crl_dir.path().join("clients.crl");
    std::fs::write(&crl, pki().crl_pem(&[4001]).unwrap()).unwrap();
    let proxy = Proxy::with(setup(&format!("crl_files = [\"{}\"]\n", crl.display()))).await;
    let revoked = client_cert("nightly-etl", 4001);
    let e = connect(&proxy, "nightly-etl", "x", Some(&revoked)).await;
    let e = refused(e, "a revoked certificate is refused");
    assert!(e.as_db_error().is_none(), "{e}");
    let good = client_cert("nightly-etl", 4002);
    connect(&proxy, "nightly-etl", "x", Some(&good))
        .await
        .expect("a certificate the list does not name logs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_keep_their_methods() {
    let proxy = Proxy::with(setup("")).await;
    // A SCRAM user, with no certificate, over TLS and plaintext.
    connect(&proxy, ALICE.0, ALICE.1, None)
        .await
        .expect("SCRAM over TLS");
    proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
        .await
        .expect("SCRAM over plaintext");
    // A SCRAM user presenting a certificate still proves its password:
    // the certificate does not stand in for it.
    let alice_cert = client_cert(ALICE.0, 5001);
    let e = connect(&proxy, ALICE.0, "wrong", Some(&alice_cert)).await;
    let e = refused(e, "a wrong SCRAM password with a certificate");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    connect(&proxy, ALICE.0, ALICE.1, Some(&alice_cert))
        .await
        .expect("the right SCRAM password with a certificate");
    // A certificate's name without the certificate proves nothing.
    let e = connect(&proxy, "nightly-etl", "x", None)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    let e = proxy
        .connect(&proxy.conn_str(("nightly-etl", "x"), "sslmode=disable"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
}
