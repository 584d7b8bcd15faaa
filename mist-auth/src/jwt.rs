//! Signed tokens (JWT): `jwt://?key=PATH`. The application's backend signs
//! a short-lived token saying which tags a user may use, and the client
//! connects with it; nothing is stored. The key file fixes the algorithm:
//! an Ed25519 or RSA public key in PEM (`-----BEGIN PUBLIC KEY-----`), or
//! else an HMAC secret (the file's bytes, a trailing newline ignored).
//! Tokens signed with any other algorithm, and `alg: none`, are refused.
//!
//! The claims mist reads: `exp` (required), `nbf` (optional), and
//! `"mist": {"tags": [...], "admin": false}`. The engine checks `exp` and
//! `nbf` against the time it is given; this module checks the signature
//! and the claims' shape.

use crate::Uri;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mist_engine::auth::{AuthError, Signed, TokenVerifier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The claims of a mist token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default)]
    mist: MistClaims,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MistClaims {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// Checks tokens signed with one key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    /// What the key is, for messages.
    kind: &'static str,
}

impl JwtVerifier {
    /// Opens `jwt://?key=PATH`.
    pub fn from_uri(uri: &Uri) -> Result<JwtVerifier, AuthError> {
        let path = uri.param("key").filter(|p| !p.is_empty()).ok_or_else(|| {
            AuthError("jwt needs its key file: jwt://?key=PATH (an HMAC secret, or an Ed25519 or RSA public key in PEM)".into())
        })?;
        JwtVerifier::from_key_file(Path::new(path))
    }

    /// Reads the key at `path`; its kind fixes the algorithms accepted.
    pub fn from_key_file(path: &Path) -> Result<JwtVerifier, AuthError> {
        let bytes = std::fs::read(path)
            .map_err(|e| AuthError(format!("cannot read the JWT key {}: {e}", path.display())))?;
        let (key, algorithms, kind) = if bytes.starts_with(b"-----BEGIN") {
            if let Ok(key) = DecodingKey::from_ed_pem(&bytes) {
                (key, vec![Algorithm::EdDSA], "an Ed25519 public key")
            } else if let Ok(key) = DecodingKey::from_rsa_pem(&bytes) {
                let rsa = vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ];
                (key, rsa, "an RSA public key")
            } else {
                return Err(AuthError(format!(
                    "the JWT key {} is PEM but neither an Ed25519 nor an RSA public key",
                    path.display()
                )));
            }
        } else {
            let secret = hmac_secret(bytes, path)?;
            let hmac = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
            (DecodingKey::from_secret(&secret), hmac, "an HMAC secret")
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        // The engine checks the time against the time it is given.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtVerifier {
            key,
            validation,
            kind,
        })
    }

    /// What the key is: "an HMAC secret", "an Ed25519 public key", ...
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Signed, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        if jsonwebtoken::decode_header(token).is_err() {
            return Err(AuthError(format!(
                "the token is not a JWT with an algorithm this server takes (its key is {}; alg none is never taken)",
                self.kind
            )));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                // The reason only: the error never holds the token.
                let why = match e.kind() {
                    ErrorKind::InvalidSignature => "the token's signature is not valid".into(),
                    ErrorKind::InvalidAlgorithm => format!(
                        "the token is signed with an algorithm this server does not take (its key is {})",
                        self.kind
                    ),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token has no {claim:?} claim")
                    }
                    ErrorKind::Json(_) => {
                        "the token's claims are not what mist reads (exp, nbf, mist.tags, mist.admin)".into()
                    }
                    _ => "the token is not a JWT this server can check".into(),
                };
                AuthError(why)
            })?;
        let claims = data.claims;
        let expires = claims.exp.ok_or_else(|| {
            AuthError("the token has no \"exp\" claim: mist takes only tokens that expire".into())
        })?;
        Ok(Signed {
            tags: claims.mist.tags.into_iter().collect::<BTreeSet<String>>(),
            admin: claims.mist.admin,
            expires,
            not_before: claims.nbf,
        })
    }
}

/// The HMAC secret in the key file at `path`: its bytes, a trailing
/// newline ignored, at least 32 of them.
pub fn read_hmac_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AuthError(format!("cannot read the JWT key {}: {e}", path.display())))?;
    hmac_secret(bytes, path)
}

fn hmac_secret(mut bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, AuthError> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() < 32 {
        return Err(AuthError(format!(
            "the JWT key {} is an HMAC secret of {} bytes: use at least 32 random bytes",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Signs a mist token with an HMAC `secret` (HS256): `tags` granted, the
/// admin's if `admin`, valid from `now` until `now + ttl` (seconds since
/// the Unix epoch). What `mist token` prints; a backend does the same in a
/// few lines with any JWT library.
pub fn mint_hmac(
    secret: &[u8],
    tags: &[String],
    admin: bool,
    now: u64,
    ttl: u64,
) -> Result<String, AuthError> {
    let claims = Claims {
        exp: Some(now.saturating_add(ttl)),
        nbf: Some(now),
        mist: MistClaims {
            tags: tags.to_vec(),
            admin,
        },
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError(format!("cannot sign the token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(secret: &[u8]) -> (std::path::PathBuf, JwtVerifier) {
        let path =
            std::env::temp_dir().join(format!("mist-jwt-{}-{}", std::process::id(), secret.len()));
        std::fs::write(&path, secret).unwrap();
        let verifier = JwtVerifier::from_key_file(&path).unwrap();
        (path, verifier)
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let secret = [7u8; 32];
        let (path, verifier) = secret_file(&secret);
        let token = mint_hmac(&secret, &["a".into(), "b".into()], false, 1000, 60).unwrap();
        let signed = verifier.verify(&token).unwrap();
        assert_eq!(signed.tags, ["a", "b"].map(String::from).into());
        assert_eq!(
            (signed.expires, signed.not_before, signed.admin),
            (1060, Some(1000), false)
        );
        let other = mint_hmac(&[8u8; 32], &[], false, 1000, 60).unwrap();
        let refused = verifier.verify(&other).unwrap_err().0;
        assert!(refused.contains("signature"), "{refused}");
        assert!(!refused.contains(&other));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_short_secret_or_a_missing_key_is_refused_naming_the_file() {
        let path = std::env::temp_dir().join(format!("mist-jwt-short-{}", std::process::id()));
        std::fs::write(&path, b"short\n").unwrap();
        let Err(e) = JwtVerifier::from_key_file(&path) else {
            panic!("a short secret was taken")
        };
        assert!(
            e.0.contains("at least 32") && e.0.contains("mist-jwt-short"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let Err(e) = JwtVerifier::from_key_file(&path) else {
            panic!("a missing file was taken")
        };
        assert!(e.0.contains("cannot read the JWT key"), "{e}");
    }
}
