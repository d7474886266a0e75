//! Server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677,
//! RFC 5929 `tls-server-end-point`), as PostgreSQL speaks it:
//!
//! * the user name in client-first-message is ignored (libpq sends `n=`); the
//!   user is the one from the startup packet;
//! * no SASLprep on our side (the verifier was computed from the password);
//! * no authorization identity (`a=`), no mandatory extensions (`m=`).
//!
//! A pure state machine with no I/O: the caller sends AuthenticationSASL with
//! [`mechanisms`], passes SASLInitialResponse to [`ScramServer::client_first`]
//! and SASLResponse to [`ScramServer::client_final`], and replies with
//! AuthenticationSASLContinue / AuthenticationSASLFinal holding the returned
//! bytes. Any error ends the exchange: the caller should answer with a generic
//! authentication failure (errors never carry secrets, but a client should not
//! learn more than "failed" from the wire anyway).
//!
//! An unknown user runs the whole exchange against a fake verifier derived
//! from the user name and a server secret, so the server-first-message looks
//! like a real one (and is stable across attempts) and the exchange fails only
//! at the proof, with the same error as a wrong password.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use portcullis_config::ScramVerifier;
use sha2::{Digest, Sha256};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Iteration count of the fake verifier used for unknown users
/// (PostgreSQL's default, which is what real verifiers usually have).
const MOCK_ITERATIONS: u32 = 4096;
/// Salt length of the fake verifier (PostgreSQL's default).
const MOCK_SALT_LEN: usize = 16;
/// Raw bytes of the server's part of the nonce.
const SERVER_NONCE_LEN: usize = 18;
/// Longest client message accepted. Real ones are well under 200 bytes.
const MAX_MESSAGE_LEN: usize = 4096;
/// The only channel binding type supported.
const TLS_SERVER_END_POINT: &[u8] = b"tls-server-end-point";

/// What the TLS layer can offer for channel binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Plaintext connection.
    NoTls,
    /// TLS, but the certificate hash is unavailable (e.g. an Ed25519
    /// certificate): SCRAM-SHA-256-PLUS is not offered.
    TlsWithoutBinding,
    /// TLS with `tls-server-end-point` data (see
    /// [`super::channel_binding::tls_server_end_point`]).
    TlsServerEndPoint(Vec<u8>),
}

/// The mechanisms to advertise in AuthenticationSASL, best first.
pub fn mechanisms(binding: &Binding) -> &'static [&'static str] {
    match binding {
        Binding::TlsServerEndPoint(_) => &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256],
        Binding::NoTls | Binding::TlsWithoutBinding => &[SCRAM_SHA_256],
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("unsupported SASL mechanism")]
    UnsupportedMechanism,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// SCRAM-SHA-256-PLUS was selected but the client did not send binding.
    #[error("SCRAM-SHA-256-PLUS selected without channel binding")]
    ChannelBindingRequired,
    /// The client asked for binding with SCRAM-SHA-256 (not -PLUS), or used a
    /// binding type other than tls-server-end-point.
    #[error("unsupported or unexpected SCRAM channel binding")]
    ChannelBindingUnsupported,
    /// The channel binding data (c=) does not match this connection.
    #[error("SCRAM channel binding check failed")]
    ChannelBindingMismatch,
    /// The client says it supports binding but thinks the server does not,
    /// although SCRAM-SHA-256-PLUS was offered: a possible downgrade attack.
    #[error("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, although it was offered")]
    DowngradeAttack,
    #[error("unsupported SCRAM extension or authorization identity")]
    ExtensionsUnsupported,
    /// Wrong password or unknown user: deliberately one variant.
    #[error("password authentication failed")]
    InvalidProof,
    #[error("SCRAM messages out of order")]
    OutOfOrder,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Equality that takes the same time wherever the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The gs2 channel-binding flag the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CbFlag {
    /// `n`: client does not support binding.
    No,
    /// `y`: client supports binding but thinks the server does not.
    ClientOnly,
    /// `p=tls-server-end-point`.
    TlsServerEndPoint,
}

struct Secrets {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl Secrets {
    /// A plausible verifier for a user that does not exist. Deterministic in
    /// (`mock_secret`, `user`) so repeated probes see the same salt.
    fn mock(user: &str, mock_secret: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| {
            hmac(
                mock_secret,
                &[b"portcullis-scram-mock\0", label, b"\0", user.as_bytes()],
            )
        };
        Secrets {
            iterations: MOCK_ITERATIONS,
            salt: derive(b"salt")[..MOCK_SALT_LEN].to_vec(),
            stored_key: derive(b"stored-key"),
            server_key: derive(b"server-key"),
        }
    }
}

enum State {
    Initial,
    /// Server-first sent; waiting for client-final.
    First {
        flag: CbFlag,
        /// gs2-header exactly as the client sent it (for c=).
        gs2_header: Vec<u8>,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        /// client nonce + server nonce.
        nonce: Vec<u8>,
    },
    Done,
    Failed,
}

pub struct ScramServer {
    secrets: Secrets,
    /// Unknown user: the proof can never be accepted.
    doomed: bool,
    binding: Binding,
    state: State,
    channel_bound: bool,
}

// Keys stay out of logs.
impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::First { .. } => "server-first sent",
            State::Done => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .field("channel_bound", &self.channel_bound)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// `verifier` None = unknown user: run the whole exchange with a fake
    /// verifier derived deterministically from the user name and
    /// `mock_secret` (a per-process or configured random secret), so the reply
    /// is indistinguishable and fails only at the end (no user enumeration).
    pub fn new(
        verifier: Option<ScramVerifier>,
        user: &str,
        mock_secret: &[u8; 32],
        binding: Binding,
    ) -> Self {
        let (secrets, doomed) = match verifier {
            Some(v) => (
                Secrets {
                    iterations: v.iterations,
                    salt: v.salt,
                    stored_key: v.stored_key,
                    server_key: v.server_key,
                },
                false,
            ),
            None => (Secrets::mock(user, mock_secret), true),
        };
        ScramServer {
            secrets,
            doomed,
            binding,
            state: State::Initial,
            channel_bound: false,
        }
    }

    /// Handles SASLInitialResponse: mechanism name and data. Returns the
    /// server-first-message bytes.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Failed;
            return Err(ScramError::OutOfOrder);
        }
        let result = self.client_first_inner(mechanism, data);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn client_first_inner(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !mechanisms(&self.binding).contains(&mechanism) {
            return Err(ScramError::UnsupportedMechanism);
        }
        let plus = mechanism == SCRAM_SHA_256_PLUS;
        if data.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::Malformed("message too long"));
        }
        let msg = ClientFirst::parse(data)?;

        match msg.flag {
            CbFlag::TlsServerEndPoint if !plus => {
                return Err(ScramError::ChannelBindingUnsupported)
            }
            CbFlag::No | CbFlag::ClientOnly if plus => {
                return Err(ScramError::ChannelBindingRequired)
            }
            CbFlag::ClientOnly if matches!(self.binding, Binding::TlsServerEndPoint(_)) => {
                return Err(ScramError::DowngradeAttack)
            }
            _ => {}
        }
        // `plus` implies we advertised it, i.e. we have the binding data.

        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::fill(&mut raw[..]);
        let mut nonce = msg.nonce.to_vec();
        nonce.extend_from_slice(STANDARD.encode(raw).as_bytes());

        let mut server_first = Vec::with_capacity(nonce.len() + 64);
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(STANDARD.encode(&self.secrets.salt).as_bytes());
        server_first.extend_from_slice(b",i=");
        server_first.extend_from_slice(self.secrets.iterations.to_string().as_bytes());

        self.state = State::First {
            flag: msg.flag,
            gs2_header: msg.gs2_header.to_vec(),
            client_first_bare: msg.bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Handles the client-final-message. Returns server-final-message bytes
    /// (`v=...`) on success.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::First {
            flag,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = state
        else {
            return Err(ScramError::OutOfOrder);
        };
        if data.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::Malformed("message too long"));
        }
        let msg = ClientFinal::parse(data)?;

        // c= must be exactly gs2-header + cbind-data.
        let mut expected = gs2_header;
        if flag == CbFlag::TlsServerEndPoint {
            match &self.binding {
                Binding::TlsServerEndPoint(hash) => expected.extend_from_slice(hash),
                // client_first only accepts `p` when this binding is present.
                _ => return Err(ScramError::ChannelBindingUnsupported),
            }
        }
        let cbind = STANDARD
            .decode(msg.channel_binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if !ct_eq(&cbind, &expected) {
            return Err(ScramError::ChannelBindingMismatch);
        }

        if !ct_eq(msg.nonce, &nonce) {
            return Err(ScramError::Malformed("nonce mismatch"));
        }

        let proof = STANDARD
            .decode(msg.proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let proof: [u8; 32] = proof
            .try_into()
            .map_err(|_| ScramError::Malformed("proof has the wrong length"))?;

        let auth_message: [&[u8]; 5] = [
            &client_first_bare,
            b",",
            &server_first,
            b",",
            msg.without_proof,
        ];
        let client_signature = hmac(&self.secrets.stored_key, &auth_message);
        let mut client_key = [0u8; 32];
        for ((k, p), s) in client_key.iter_mut().zip(proof).zip(client_signature) {
            *k = p ^ s;
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        let key_ok = ct_eq(&computed, &self.secrets.stored_key);
        if !key_ok | self.doomed {
            return Err(ScramError::InvalidProof);
        }

        let server_signature = hmac(&self.secrets.server_key, &auth_message);
        let mut out = b"v=".to_vec();
        out.extend_from_slice(STANDARD.encode(server_signature).as_bytes());
        self.channel_bound = flag == CbFlag::TlsServerEndPoint;
        self.state = State::Done;
        Ok(out)
    }

    /// Whether channel binding was used (for logs/metrics): true only after a
    /// successful exchange over SCRAM-SHA-256-PLUS.
    pub fn channel_bound(&self) -> bool {
        self.channel_bound
    }
}

// ---------------------------------------------------------------------------
// Parsing. Messages are handled as bytes; only the pieces we use are checked.

/// Comma-separated fields. Unlike a plain cursor it remembers whether a
/// separator was consumed, so a trailing comma yields a final empty field.
struct Fields<'a> {
    /// None once the last field has been returned.
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8]) -> Self {
        Fields { rest: Some(data) }
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|&b| b == b',') {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// An `x=value` attribute with the given name.
fn attr<'a>(field: Option<&'a [u8]>, name: u8, what: &'static str) -> Result<&'a [u8], ScramError> {
    match field {
        Some([n, b'=', value @ ..]) if *n == name => Ok(value),
        _ => Err(ScramError::Malformed(what)),
    }
}

/// Printable ASCII except ',' (RFC 5802 `printable`).
fn valid_nonce(nonce: &[u8]) -> bool {
    !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Checks optional trailing extensions (`x=value`), which are ignored. `m`
/// (mandatory extension) fails; the names of standard attributes may not
/// reappear as extensions (no second `p=` or `r=`).
fn check_extensions(mut fields: Fields<'_>) -> Result<(), ScramError> {
    while let Some(field) = fields.next() {
        match field {
            [b'm', b'=', ..] => return Err(ScramError::ExtensionsUnsupported),
            [n, b'=', ..] if b"acinprsv".contains(n) => {
                return Err(ScramError::Malformed("unexpected attribute"))
            }
            [n, b'=', ..] if n.is_ascii_alphabetic() => {}
            _ => return Err(ScramError::Malformed("bad attribute")),
        }
    }
    Ok(())
}

struct ClientFirst<'a> {
    flag: CbFlag,
    gs2_header: &'a [u8],
    bare: &'a [u8],
    nonce: &'a [u8],
}

impl<'a> ClientFirst<'a> {
    /// `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]`
    fn parse(data: &'a [u8]) -> Result<Self, ScramError> {
        let mut fields = Fields::new(data);
        let flag = match fields.next() {
            Some(b"n") => CbFlag::No,
            Some(b"y") => CbFlag::ClientOnly,
            Some([b'p', b'=', name @ ..]) => {
                if name == TLS_SERVER_END_POINT {
                    CbFlag::TlsServerEndPoint
                } else if name.is_empty() {
                    return Err(ScramError::Malformed("empty channel binding name"));
                } else {
                    return Err(ScramError::ChannelBindingUnsupported);
                }
            }
            _ => return Err(ScramError::Malformed("bad gs2 channel binding flag")),
        };
        match fields.next() {
            Some([]) => {}
            Some([b'a', b'=', ..]) => return Err(ScramError::ExtensionsUnsupported),
            _ => return Err(ScramError::Malformed("bad gs2 header")),
        }
        let bare = fields
            .rest
            .ok_or(ScramError::Malformed("missing client-first-message-bare"))?;
        let gs2_header = &data[..data.len() - bare.len()];

        let field = fields.next();
        if let Some([b'm', b'=', ..]) = field {
            return Err(ScramError::ExtensionsUnsupported);
        }
        // The user name is ignored (PostgreSQL takes it from the startup
        // packet) but must be syntactically present.
        attr(field, b'n', "missing user name")?;
        let nonce = attr(fields.next(), b'r', "missing nonce")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        check_extensions(fields)?;
        Ok(ClientFirst {
            flag,
            gs2_header,
            bare,
            nonce,
        })
    }
}

struct ClientFinal<'a> {
    channel_binding: &'a [u8],
    nonce: &'a [u8],
    without_proof: &'a [u8],
    proof: &'a [u8],
}

impl<'a> ClientFinal<'a> {
    /// `channel-binding "," nonce ["," extensions] "," proof`
    fn parse(data: &'a [u8]) -> Result<Self, ScramError> {
        // The proof is the last attribute; its value (base64) has no commas.
        let split = data
            .windows(3)
            .rposition(|w| w == b",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let without_proof = &data[..split];
        let proof = &data[split + 3..];
        if proof.contains(&b',') {
            return Err(ScramError::Malformed("proof must be the last attribute"));
        }
        let mut fields = Fields::new(without_proof);
        let channel_binding = attr(fields.next(), b'c', "missing channel binding")?;
        let nonce = attr(fields.next(), b'r', "missing nonce")?;
        check_extensions(fields)?;
        Ok(ClientFinal {
            channel_binding,
            nonce,
            without_proof,
            proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    const SECRET: [u8; 32] = [7; 32];
    const CERT_HASH: [u8; 32] = [0xab; 32];

    /// PBKDF2-HMAC-SHA256 → SCRAM verifier, as PostgreSQL computes it.
    fn verifier(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let mut u = hmac(password.as_bytes(), &[salt, &[0, 0, 0, 1]]);
        let mut salted = u;
        for _ in 1..iterations {
            u = hmac(password.as_bytes(), &[&u]);
            for (s, x) in salted.iter_mut().zip(u) {
                *s ^= x;
            }
        }
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    fn pencil() -> ScramVerifier {
        // Low iteration count keeps the tests fast; the protocol is the same.
        verifier("pencil", b"0123456789abcdef", 16)
    }

    /// Runs a full exchange; returns the server's verdict and whether the
    /// client accepted the server signature.
    fn run(
        server: &mut ScramServer,
        mechanism: &str,
        password: &str,
        cb: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let first = server.client_first(mechanism, client.message())?;
        client.update(&first).expect("client accepts server-first");
        let last = server.client_final(client.message())?;
        client.finish(&last).expect("client accepts server-final");
        Ok(())
    }

    #[test]
    fn rfc7677_example_verifier() {
        // RFC 7677 §3: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = verifier("pencil", &salt, 4096);
        // Server signature from the RFC's example exchange.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&v.server_key, &[auth.as_bytes()]);
        assert_eq!(
            STANDARD.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn correct_password_without_binding() {
        for binding in [Binding::NoTls, Binding::TlsWithoutBinding] {
            let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, binding);
            run(
                &mut s,
                SCRAM_SHA_256,
                "pencil",
                ChannelBinding::unsupported(),
            )
            .unwrap();
            assert!(!s.channel_bound());
        }
        // `n` is also fine when PLUS was offered but the client lacks it.
        let mut s = ScramServer::new(
            Some(pencil()),
            "alice",
            &SECRET,
            Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
        );
        run(
            &mut s,
            SCRAM_SHA_256,
            "pencil",
            ChannelBinding::unsupported(),
        )
        .unwrap();
        assert!(!s.channel_bound());
    }

    #[test]
    fn correct_password_with_binding() {
        let binding = Binding::TlsServerEndPoint(CERT_HASH.to_vec());
        assert_eq!(mechanisms(&binding), &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, binding);
        run(
            &mut s,
            SCRAM_SHA_256_PLUS,
            "pencil",
            ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
        )
        .unwrap();
        assert!(s.channel_bound());
    }

    #[test]
    fn wrong_binding_data() {
        let mut s = ScramServer::new(
            Some(pencil()),
            "alice",
            &SECRET,
            Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
        );
        let r = run(
            &mut s,
            SCRAM_SHA_256_PLUS,
            "pencil",
            ChannelBinding::tls_server_end_point(vec![0xcd; 32]),
        );
        assert_eq!(r, Err(ScramError::ChannelBindingMismatch));
        assert!(!s.channel_bound());
    }

    #[test]
    fn wrong_password() {
        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        let r = run(&mut s, SCRAM_SHA_256, "pen", ChannelBinding::unsupported());
        assert_eq!(r, Err(ScramError::InvalidProof));
        // Terminal: nothing more is accepted.
        assert_eq!(
            s.client_final(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::OutOfOrder)
        );
    }

    fn parse_server_first(msg: &[u8]) -> (String, Vec<u8>, u32) {
        let s = std::str::from_utf8(msg).unwrap();
        let parts: Vec<&str> = s.split(',').collect();
        assert_eq!(parts.len(), 3, "{s}");
        let nonce = parts[0].strip_prefix("r=").unwrap().to_string();
        let salt = STANDARD
            .decode(parts[1].strip_prefix("s=").unwrap())
            .unwrap();
        let iter = parts[2].strip_prefix("i=").unwrap().parse().unwrap();
        (nonce, salt, iter)
    }

    #[test]
    fn unknown_user() {
        let mut salts = Vec::new();
        for _ in 0..2 {
            let mut s = ScramServer::new(None, "mallory", &SECRET, Binding::NoTls);
            let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
            let first = s.client_first(SCRAM_SHA_256, client.message()).unwrap();
            let (nonce, salt, iter) = parse_server_first(&first);
            assert_eq!(iter, 4096);
            assert_eq!(salt.len(), 16);
            assert_eq!(nonce.len(), 24 + 24); // client's 24 + base64 of our 18
            salts.push(salt);
            client.update(&first).unwrap();
            assert_eq!(
                s.client_final(client.message()),
                Err(ScramError::InvalidProof)
            );
        }
        assert_eq!(salts[0], salts[1]);
        // Another user or another secret gets another salt.
        let other = |user: &str, secret: &[u8; 32]| {
            let mut s = ScramServer::new(None, user, secret, Binding::NoTls);
            let first = s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
            parse_server_first(&first).1
        };
        assert_ne!(other("trudy", &SECRET), salts[0]);
        assert_ne!(other("mallory", &[8; 32]), salts[0]);
        assert_eq!(other("mallory", &SECRET), salts[0]);
        // Same error, same message, as a wrong password.
        assert_eq!(
            ScramError::InvalidProof.to_string(),
            "password authentication failed"
        );
    }

    #[test]
    fn unknown_user_fails_even_with_matching_keys() {
        // Give the doomed exchange keys the client can satisfy: the proof
        // checks out arithmetically, yet the unknown user is still refused.
        let mut s = ScramServer::new(None, "mallory", &SECRET, Binding::NoTls);
        let v = pencil();
        s.secrets = Secrets {
            iterations: v.iterations,
            salt: v.salt,
            stored_key: v.stored_key,
            server_key: v.server_key,
        };
        let r = run(
            &mut s,
            SCRAM_SHA_256,
            "pencil",
            ChannelBinding::unsupported(),
        );
        assert_eq!(r, Err(ScramError::InvalidProof));
    }

    #[test]
    fn downgrade_y_while_plus_offered() {
        let mut s = ScramServer::new(
            Some(pencil()),
            "alice",
            &SECRET,
            Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
        );
        let r = run(
            &mut s,
            SCRAM_SHA_256,
            "pencil",
            ChannelBinding::unrequested(),
        );
        assert_eq!(r, Err(ScramError::DowngradeAttack));
    }

    #[test]
    fn y_accepted_without_plus() {
        for binding in [Binding::NoTls, Binding::TlsWithoutBinding] {
            let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, binding);
            run(
                &mut s,
                SCRAM_SHA_256,
                "pencil",
                ChannelBinding::unrequested(),
            )
            .unwrap();
            assert!(!s.channel_bound());
        }
    }

    #[test]
    fn mechanism_and_header_must_agree() {
        let plus = || {
            ScramServer::new(
                Some(pencil()),
                "alice",
                &SECRET,
                Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
            )
        };
        // PLUS with n / y.
        assert_eq!(
            plus().client_first(SCRAM_SHA_256_PLUS, b"n,,n=,r=abc"),
            Err(ScramError::ChannelBindingRequired)
        );
        assert_eq!(
            plus().client_first(SCRAM_SHA_256_PLUS, b"y,,n=,r=abc"),
            Err(ScramError::ChannelBindingRequired)
        );
        // p= with plain SCRAM-SHA-256.
        assert_eq!(
            plus().client_first(SCRAM_SHA_256, b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        );
        // Other binding types.
        assert_eq!(
            plus().client_first(SCRAM_SHA_256_PLUS, b"p=tls-unique,,n=,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        );
        // PLUS not offered.
        for binding in [Binding::NoTls, Binding::TlsWithoutBinding] {
            assert_eq!(mechanisms(&binding), &[SCRAM_SHA_256]);
            let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, binding);
            assert_eq!(
                s.client_first(SCRAM_SHA_256_PLUS, b"p=tls-server-end-point,,n=,r=abc"),
                Err(ScramError::UnsupportedMechanism)
            );
        }
        assert_eq!(
            plus().client_first("SCRAM-SHA-1", b"n,,n=,r=abc"),
            Err(ScramError::UnsupportedMechanism)
        );
        // Client-final whose c= claims another header than client-first.
        let mut s = plus();
        let first = s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
        let (nonce, _, _) = parse_server_first(&first);
        let msg = format!("c=eSws,r={nonce},p={}", STANDARD.encode([0u8; 32]));
        assert_eq!(
            s.client_final(msg.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn authzid_and_extensions() {
        let s = || ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        assert_eq!(
            s().client_first(SCRAM_SHA_256, b"n,a=bob,n=,r=abc"),
            Err(ScramError::ExtensionsUnsupported)
        );
        assert_eq!(
            s().client_first(SCRAM_SHA_256, b"n,,m=ext,n=,r=abc"),
            Err(ScramError::ExtensionsUnsupported)
        );
        assert_eq!(
            s().client_first(SCRAM_SHA_256, b"n,,n=,r=abc,m=x"),
            Err(ScramError::ExtensionsUnsupported)
        );
        // Optional extensions are ignored; any user name is accepted.
        assert!(s()
            .client_first(SCRAM_SHA_256, b"n,,n=whoever,r=abc,x=1")
            .is_ok());
    }

    #[test]
    fn out_of_order() {
        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        assert_eq!(
            s.client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );

        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
        assert_eq!(
            s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            s.client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::OutOfOrder)
        );

        // After success, nothing more.
        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        run(
            &mut s,
            SCRAM_SHA_256,
            "pencil",
            ChannelBinding::unsupported(),
        )
        .unwrap();
        assert_eq!(
            s.client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn malformed_messages() {
        let firsts: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=,r=abc",
            b"p=,,n=,r=abc",
            b"n,x,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=,r=",
            b"n,,n=,",
            b"n,,n=,r=a b",
            b"n,,n=,r=\xff",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,,",
            b"n,,n=,r=abc,1=x",
            b"n,,n=",
        ];
        for m in firsts {
            let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
            let r = s.client_first(SCRAM_SHA_256, m);
            assert!(r.is_err(), "{:?}", String::from_utf8_lossy(m));
        }
        let long = [b"n,,n=,r=".as_slice(), &[b'a'; MAX_MESSAGE_LEN]].concat();
        let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
        assert_eq!(
            s.client_first(SCRAM_SHA_256, &long),
            Err(ScramError::Malformed("message too long"))
        );

        let p = STANDARD.encode([0u8; 32]);
        let finals = |nonce: &str| -> Vec<Vec<u8>> {
            [
                String::new(),
                format!("c=biws,r={nonce}"),
                format!("c=biws,r={nonce},p="),
                format!("c=biws,r={nonce},p=AAAA"),
                format!("c=biws,r={nonce},p={p},x=1"),
                format!("c=biws,r={nonce}x,p={p}"),
                format!("c=biws,r=abc,p={p}"),
                format!("c=!!!!,r={nonce},p={p}"),
                format!("c=biws,p={p}"),
                format!("r={nonce},c=biws,p={p}"),
                format!("c=biws,r={nonce},,p={p}"),
                format!("c=biws,r={nonce},m=1,p={p}"),
                format!("c=biws,r={nonce},p=!!!"),
                format!("c=biws,r={nonce},p={p},p={p}"),
                format!("c=biws,r={nonce},r={nonce},p={p}"),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect()
        };
        // Nonce is random, so build with a placeholder and patch each time.
        for template in finals("NONCE") {
            let mut s = ScramServer::new(Some(pencil()), "alice", &SECRET, Binding::NoTls);
            let first = s.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
            let (nonce, _, _) = parse_server_first(&first);
            let m = String::from_utf8(template)
                .unwrap()
                .replace("NONCE", &nonce);
            let r = s.client_final(m.as_bytes());
            assert!(r.is_err(), "{m}");
            assert_ne!(r, Err(ScramError::OutOfOrder), "{m}");
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut x: u64 = 0x243f_6a88_85a3_08d3;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Real messages from a real client, for truncation and mutation.
        let mut client = ScramSha256::new(
            b"pencil",
            ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
        );
        let mut s = ScramServer::new(
            Some(pencil()),
            "alice",
            &SECRET,
            Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
        );
        let first_msg = client.message().to_vec();
        let first = s.client_first(SCRAM_SHA_256_PLUS, &first_msg).unwrap();
        client.update(&first).unwrap();
        let final_msg = client.message().to_vec();

        let alphabet = b"npyrcmsia=,AZaz09+/-_\xff\x00 ";
        let fresh = || {
            ScramServer::new(
                Some(pencil()),
                "alice",
                &SECRET,
                Binding::TlsServerEndPoint(CERT_HASH.to_vec()),
            )
        };
        for n in 0..=first_msg.len() {
            let _ = fresh().client_first(SCRAM_SHA_256_PLUS, &first_msg[..n]);
        }
        for i in 0..3000 {
            let len = (next() % 64) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    if i % 2 == 0 {
                        next() as u8
                    } else {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let mech = [SCRAM_SHA_256, SCRAM_SHA_256_PLUS][i % 2];
            let _ = fresh().client_first(mech, &junk);

            let mut mutated = first_msg.clone();
            let j = (next() as usize) % mutated.len();
            mutated[j] = next() as u8;
            let _ = fresh().client_first(SCRAM_SHA_256_PLUS, &mutated);

            // Client-final: after a valid client-first.
            let mut s = fresh();
            let first = s.client_first(SCRAM_SHA_256_PLUS, &first_msg).unwrap();
            let _ = parse_server_first(&first);
            let msg = match i % 3 {
                0 => junk.clone(),
                1 => final_msg[..(next() as usize) % (final_msg.len() + 1)].to_vec(),
                _ => {
                    let mut m = final_msg.clone();
                    let j = (next() as usize) % m.len();
                    m[j] = alphabet[(next() % alphabet.len() as u64) as usize];
                    m
                }
            };
            // The nonce differs per run, so these fail; they must not panic.
            assert!(s.client_final(&msg).is_err());
        }
    }
}
