//! Node identities (design.md §5.3): Ed25519 key pairs, fingerprints, member ids such as
//! `PAR::participant1::1220ab…`, and the canonical byte strings that get signed. Pure functions;
//! keys are stored by the node kinds' store modules.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{0:?} is not a member id: expected KIND::name::fingerprint with KIND one of PAR, MED, SEQ, TM")]
    MalformedMember(String),
    #[error("the public key of {member} does not match its fingerprint")]
    FingerprintMismatch { member: String },
    #[error("a public key is 32 bytes, got {0}")]
    BadKeyLength(usize),
    #[error("not a valid Ed25519 public key")]
    BadKey,
    #[error("a signature is 64 bytes, got {0}")]
    BadSignatureLength(usize),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("cannot get randomness from the OS: {0}")]
    Random(String),
}

/// An Ed25519 key pair.
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> KeyPair {
        KeyPair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed, for storage.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing.sign(message).to_bytes().to_vec()
    }
}

/// Checks that `public_key` is a valid Ed25519 public key.
pub fn check_public_key(public_key: &[u8]) -> Result<(), IdentityError> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| IdentityError::BadKeyLength(public_key.len()))?;
    VerifyingKey::from_bytes(&key)
        .map(|_| ())
        .map_err(|_| IdentityError::BadKey)
}

/// Canton-style fingerprint: the multihash of SHA-256 (`1220` + 64 hex digits).
pub fn fingerprint(public_key: &[u8]) -> String {
    format!("1220{}", hex::encode(Sha256::digest(public_key)))
}

/// Verifies `signature` over `message` with the raw 32-byte `public_key`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| IdentityError::BadKeyLength(public_key.len()))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| IdentityError::BadKey)?;
    verify_with(&key, message, signature)
}

/// Verifies `signature` over `message` with a key already decompressed, which saves a good part
/// of the work `verify` does for a key that signs many messages.
pub fn verify_with(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), IdentityError> {
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| IdentityError::BadSignatureLength(signature.len()))?;
    key.verify(message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| IdentityError::BadSignature)
}

/// What kind of synchronizer member an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberKind {
    Participant,
    Mediator,
    Sequencer,
    TopologyManager,
}

impl MemberKind {
    pub fn prefix(self) -> &'static str {
        match self {
            MemberKind::Participant => "PAR",
            MemberKind::Mediator => "MED",
            MemberKind::Sequencer => "SEQ",
            MemberKind::TopologyManager => "TM",
        }
    }
}

/// A synchronizer member: `KIND::name::fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    pub kind: MemberKind,
    pub name: String,
    pub fingerprint: String,
}

impl MemberId {
    pub fn new(kind: MemberKind, name: &str, public_key: &[u8]) -> MemberId {
        MemberId {
            kind,
            name: name.to_string(),
            fingerprint: fingerprint(public_key),
        }
    }

    pub fn parse(text: &str) -> Result<MemberId, IdentityError> {
        let bad = || IdentityError::MalformedMember(text.to_string());
        let mut parts = text.splitn(3, "::");
        let (Some(kind), Some(name), Some(fp)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let kind = match kind {
            "PAR" => MemberKind::Participant,
            "MED" => MemberKind::Mediator,
            "SEQ" => MemberKind::Sequencer,
            "TM" => MemberKind::TopologyManager,
            _ => return Err(bad()),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 185
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let fp_ok = fp.len() == 68
            && fp.starts_with("1220")
            && fp
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !name_ok || !fp_ok {
            return Err(bad());
        }
        Ok(MemberId {
            kind,
            name: name.to_string(),
            fingerprint: fp.to_string(),
        })
    }

    /// Checks that `public_key` is the key this id was derived from.
    pub fn check_key(&self, public_key: &[u8]) -> Result<(), IdentityError> {
        if fingerprint(public_key) == self.fingerprint {
            Ok(())
        } else {
            Err(IdentityError::FingerprintMismatch {
                member: self.to_string(),
            })
        }
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}::{}::{}",
            self.kind.prefix(),
            self.name,
            self.fingerprint
        )
    }
}

/// An unambiguous byte string to sign: a domain tag, then every field length-prefixed, so no two
/// different field lists encode the same.
pub fn canonical(tag: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 8).sum::<usize>());
    for field in std::iter::once(tag.as_bytes()).chain(fields.iter().copied()) {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_round_trip_and_check_their_key() {
        let key = KeyPair::from_seed([7; 32]);
        let id = MemberId::new(MemberKind::Participant, "participant1", &key.public_key());
        let text = id.to_string();
        assert!(text.starts_with("PAR::participant1::1220"));
        assert_eq!(MemberId::parse(&text).unwrap(), id);
        id.check_key(&key.public_key()).unwrap();
        let other = KeyPair::from_seed([8; 32]);
        assert!(id.check_key(&other.public_key()).is_err());
        for bad in [
            "",
            "PAR::x",
            "XYZ::a::1220",
            "PAR::a b::1220",
            &text.replace("1220", "1221"),
        ] {
            assert!(MemberId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_bytes_and_key() {
        let key = KeyPair::from_seed([1; 32]);
        let msg = canonical("t", &[b"a", b"bc"]);
        let sig = key.sign(&msg);
        verify(&key.public_key(), &msg, &sig).unwrap();
        assert_eq!(
            verify(&key.public_key(), &canonical("t", &[b"ab", b"c"]), &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            verify(&KeyPair::from_seed([2; 32]).public_key(), &msg, &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            verify(&key.public_key(), &msg, &sig[..10]),
            Err(IdentityError::BadSignatureLength(10))
        );
    }
}
