//! Verification keys: each pinned to one algorithm, which comes from the key itself (its type,
//! or a JWK's `alg`), never from a token. Reads PEM public keys and certificates and JWK sets.
//! Only the three asymmetric algorithms come from files or a JWKS; HS256 keys are made from the
//! configured secret alone, so a symmetric key can never be confused with a public one.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// The asymmetric algorithms accepted from key files and key sets.
pub(crate) const ASYMMETRIC: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// A key that verifies tokens of exactly one algorithm.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
    /// Where the key came from, for logs: a file path or `jwks kid=…`.
    pub origin: String,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} key from {}", self.alg, self.origin)
    }
}

/// Reads one PEM public key or certificate; the key type decides the algorithm.
pub(crate) fn load_pem_file(path: &Path) -> Result<VerifyKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (alg, key) = parse_pem(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(VerifyKey {
        alg,
        key,
        origin: path.display().to_string(),
    })
}

pub(crate) fn parse_pem(bytes: &[u8]) -> Result<(Algorithm, DecodingKey), String> {
    let text = String::from_utf8_lossy(bytes);
    let Some(label) = first_pem_label(&text) else {
        return Err("no PEM block found".to_owned());
    };
    if label.contains("PRIVATE KEY") {
        return Err(format!(
            "holds a private key ({label}); give the public key or a certificate instead"
        ));
    }
    if !matches!(label, "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE") {
        return Err(format!("unsupported PEM block {label:?}"));
    }
    // jsonwebtoken classifies the key by its algorithm OID; each constructor accepts only its
    // own kind, so at most one of them succeeds.
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Ok((Algorithm::ES256, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok((Algorithm::EdDSA, key));
    }
    Err("not an RSA, P-256 or Ed25519 public key".to_owned())
}

fn first_pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

/// The keys of one JWKS document, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<VerifyKey>>,
    without_kid: Vec<VerifyKey>,
}

impl KeySet {
    /// Keys for a token with this `kid` (or, without one, every key) and this algorithm.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Vec<VerifyKey> {
        let of_alg = |k: &&VerifyKey| k.alg == alg;
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .into_iter()
                .flatten()
                .filter(of_alg)
                .cloned()
                .collect(),
            None => self
                .by_kid
                .values()
                .flatten()
                .chain(&self.without_kid)
                .filter(of_alg)
                .cloned()
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.values().map(Vec::len).sum::<usize>() + self.without_kid.len()
    }

    /// The `kid`s in this set, sorted (to tell whether a refresh changed anything).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// Parses a JWKS document. Keys we cannot use (symmetric, encryption, other algorithms or
/// curves, broken) are skipped with a log line; one bad key does not hide the others.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut set = KeySet::default();
    for (index, value) in document.keys.into_iter().enumerate() {
        match jwk_key(value) {
            Ok((kid, key)) => match kid {
                Some(kid) => set.by_kid.entry(kid).or_default().push(key),
                None => set.without_kid.push(key),
            },
            Err(why) => tracing::warn!(index, why, "skipping a key of the JWKS"),
        }
    }
    Ok(set)
}

fn jwk_key(value: serde_json::Value) -> Result<(Option<String>, VerifyKey), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("unreadable JWK: {e}"))?;
    let kid = jwk.common.key_id.clone();
    if let Some(use_) = &jwk.common.public_key_use {
        if *use_ != PublicKeyUse::Signature {
            return Err("not a signing key (use is not \"sig\")".to_owned());
        }
    }
    let from_params = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are never taken from a JWKS".to_owned())
        }
        _ => return Err("unsupported key type or curve".to_owned()),
    };
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = match declared {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            other => return Err(format!("unsupported alg {other:?}")),
        };
        if declared != from_params {
            return Err(format!("alg {declared:?} does not match the key type"));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    let origin = match &kid {
        Some(kid) => format!("jwks kid={kid:?}"),
        None => "jwks (no kid)".to_owned(),
    };
    Ok((
        kid,
        VerifyKey {
            alg: from_params,
            key,
            origin,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_skips_what_it_cannot_use() {
        let body = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "lies", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "XYZ", "kid": "weird"},
        ]});
        let set = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.kids(), vec!["ec"]);
        assert_eq!(set.find(Some("ec"), Algorithm::ES256).len(), 1);
        assert!(set.find(Some("ec"), Algorithm::RS256).is_empty());
        assert!(set.find(Some("hmac"), Algorithm::HS256).is_empty());
        assert_eq!(set.find(None, Algorithm::ES256).len(), 1);
    }

    #[test]
    fn jwks_must_be_a_key_set() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
        assert_eq!(parse_jwks(br#"{"keys": []}"#).unwrap().len(), 0);
    }

    #[test]
    fn pem_private_keys_and_garbage_are_refused() {
        let err = parse_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(err.contains("private key"), "{err}");
        assert!(parse_pem(b"hello").is_err());
        assert!(
            parse_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err()
        );
    }
}
