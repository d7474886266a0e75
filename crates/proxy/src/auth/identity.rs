//! The identity a proven login stands for.

use portcullis_identity::{Identity, Kind, Proof};

/// The identity of a configured user who proved it with SCRAM.
pub fn of_scram_user(user: &portcullis_config::User, channel_binding: bool) -> Identity {
    Identity {
        kind: kind(user.kind),
        subject: user.name.clone(),
        groups: user.groups.clone(),
        on_behalf_of: None,
        proof: Proof::Scram { channel_binding },
    }
}

/// The configuration's name for a principal kind (profiles and limits
/// match on it).
pub fn config_kind(k: Kind) -> portcullis_config::IdentityKind {
    match k {
        Kind::Human => portcullis_config::IdentityKind::Human,
        Kind::Agent => portcullis_config::IdentityKind::Agent,
        Kind::Service => portcullis_config::IdentityKind::Service,
    }
}

/// The limits `[[limit]]` sets for `identity`.
pub fn limits(
    config: &portcullis_config::Config,
    identity: &Identity,
) -> portcullis_config::EffectiveLimits {
    portcullis_config::effective_limits(
        &config.limits,
        config_kind(identity.kind),
        &identity.subject,
        &identity.groups,
    )
}

fn kind(k: portcullis_config::IdentityKind) -> Kind {
    match k {
        portcullis_config::IdentityKind::Human => Kind::Human,
        portcullis_config::IdentityKind::Agent => Kind::Agent,
        portcullis_config::IdentityKind::Service => Kind::Service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_user_becomes_its_identity() {
        let user: portcullis_config::User = serde_json::from_value(serde_json::json!({
            "name": "etl",
            "scram": "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5",
            "kind": "service",
            "groups": ["loaders"],
        }))
        .unwrap();
        let id = of_scram_user(&user, true);
        assert_eq!(id.subject, "etl");
        assert_eq!(id.kind, Kind::Service);
        assert_eq!(id.groups, ["loaders"]);
        assert_eq!(id.on_behalf_of, None);
        assert_eq!(id.proof.method(), "SCRAM-SHA-256-PLUS");
    }
}
