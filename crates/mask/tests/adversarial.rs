//! The detectors are linear in the value: hostile repetitions of anchors
//! (each a candidate that fails, or hits that overlap) cost about as much
//! per byte as clean text.

use std::time::{Duration, Instant};

use portcullis_mask::{Class, Detectors};

const SIZE: usize = 400_000;

fn repeated(unit: &str) -> Vec<u8> {
    unit.as_bytes().iter().copied().cycle().take(SIZE).collect()
}

#[test]
fn hostile_repetitions_scan_in_linear_time() {
    let d = Detectors::new();
    let units = [
        "sk-",
        "sk-proj-",
        "sk-ant-",
        "xoxb-",
        "ghp_",
        "github_pat_",
        "glpat-",
        "pypi-AgEI",
        "whsec_",
        "SG.",
        "AKIA",
        "aws_secret_access_key=",
        "eyJ",
        "eyJhbGciOi",
        "md5",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "$2b$10$",
        "$argon2id$v=19$m=1,t=1,p=1$",
        "$argon2id$",
        "SCRAM-SHA-256$4096:",
        "$6$",
        "$1$",
        "postgres://u:",
        "://u:p@",
        "a@",
        "@",
        "a.",
        "+1",
        "+",
        "1 ",
        "1-",
        "12-",
        "123-45-",
        "4111 ",
        "GB82",
        "GB82 WEST ",
        "0",
        "9",
        "a",
        "é",
        ".com",
        "x@y.",
        "user@example.com ",
    ];
    // The yardstick: ordinary prose of the same size, in this build
    // (debug builds are many times slower than release).
    let prose = repeated("The quick brown fox jumps over the lazy dog, 42 times. ");
    let t = Instant::now();
    let _ = d.find(&prose, None);
    let clean = t.elapsed();
    let mut worst = (Duration::ZERO, "");
    for unit in units {
        let text = repeated(unit);
        for context in [
            None,
            Some(Class::NationalId),
            Some(Class::Email),
            Some(Class::Card),
        ] {
            let t = Instant::now();
            let _ = d.find(&text, context);
            let took = t.elapsed();
            if took > worst.0 {
                worst = (took, unit);
            }
        }
    }
    // A quadratic case takes thousands of times longer (`sk-` repeated
    // took 14 s in a release build before it was fixed).
    eprintln!("prose: {clean:?}; slowest: {:?} for {:?}", worst.0, worst.1);
    assert!(
        worst.0 < clean * 200 + Duration::from_millis(50),
        "{:?} for 400 KB of {:?}, against {clean:?} for prose",
        worst.0,
        worst.1
    );
}
