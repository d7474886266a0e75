//! Who a connection is.
//!
//! Every session carries one [`Identity`], made once when the client
//! proves who it is, and never changed afterwards: the guard's principal,
//! every audit record, the access profile, the limits and the connection
//! slot are read from it, so they cannot disagree about who acted. Each
//! way of proving an identity (SCRAM, API keys, OIDC tokens, client
//! certificates) yields the same type and says
//! which way it was in [`Proof`].

pub mod certs;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod oidc;

use std::fmt;
use std::sync::Arc;

/// A verified principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: Kind,
    /// The stable name of the principal: for a SCRAM login, the configured
    /// user name the client authenticated as; for an API key, the name the
    /// key was made for (which is also the user name it logs in as).
    pub subject: String,
    /// The groups policies match on.
    pub groups: Vec<String>,
    /// The person an agent or service acts for, when that is known.
    pub on_behalf_of: Option<String>,
    /// How the identity was proven.
    pub proof: Proof,
}

/// The kinds of principal policies tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A person.
    Human,
    /// An AI agent, possibly acting for a person.
    Agent,
    /// A job or pipeline.
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Human => "human",
            Kind::Agent => "agent",
            Kind::Service => "service",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an identity was proven to Portcullis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Proof {
    /// SCRAM-SHA-256 against a configured verifier; `channel_binding`
    /// when the exchange was bound to the TLS channel (-PLUS).
    Scram { channel_binding: bool },
    /// A Portcullis API key (over TLS), named by its public id.
    ApiKey { id: keys::KeyId },
    /// An OIDC token (over TLS) from `issuer`; `token_id` is its `jti`.
    Oidc {
        issuer: Arc<str>,
        token_id: Option<String>,
    },
    /// A client certificate (mutual TLS) from the configured CA, named by
    /// its SHA-256 fingerprint (lowercase hex).
    Certificate { fingerprint: String },
}

impl Proof {
    /// The method's name, as logs and records show it.
    pub fn method(&self) -> &'static str {
        match self {
            Proof::Scram {
                channel_binding: false,
            } => "SCRAM-SHA-256",
            Proof::Scram {
                channel_binding: true,
            } => "SCRAM-SHA-256-PLUS",
            Proof::ApiKey { .. } => "api-key",
            Proof::Oidc { .. } => "oidc",
            Proof::Certificate { .. } => "certificate",
        }
    }

    /// The credential's own public name, when it has one: an API key's
    /// id; a token's issuer, with `#` and its id when it has one; a
    /// certificate's `sha256:` fingerprint.
    pub fn credential(&self) -> Option<String> {
        match self {
            Proof::Scram { .. } => None,
            Proof::ApiKey { id } => Some(id.to_string()),
            Proof::Oidc { issuer, token_id } => Some(match token_id {
                Some(j) => format!("{issuer}#{j}"),
                None => issuer.to_string(),
            }),
            Proof::Certificate { fingerprint } => Some(format!("sha256:{fingerprint}")),
        }
    }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(Kind::Human.to_string(), "human");
        assert_eq!(Kind::Agent.as_str(), "agent");
        assert_eq!(Kind::Service.as_str(), "service");
        assert_eq!(
            Proof::Scram {
                channel_binding: true
            }
            .method(),
            "SCRAM-SHA-256-PLUS"
        );
        assert_eq!(
            Proof::Scram {
                channel_binding: false
            }
            .to_string(),
            "SCRAM-SHA-256"
        );
    }
}
