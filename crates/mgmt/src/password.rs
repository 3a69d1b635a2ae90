//! Users' passwords as stored: Argon2id in the PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), with a random 16-byte salt per password.
//!
//! The parameters are the `argon2` crate's defaults, which are OWASP's recommendation for
//! Argon2id (19 MiB of memory, two passes, one lane): about 20–40 ms of one core per hash, so
//! hashing runs on a blocking thread and never on the async workers that serve requests.
//! A stored string names its own parameters, so raising them later leaves old hashes verifiable.
//!
//! Keys ([`new_key`]) are made here too: the one place the server turns randomness into a
//! secret.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The system gave no randomness (for a salt or a key).
    #[error("no randomness available")]
    Random(#[source] getrandom::Error),
    /// Argon2 refused the input (a password longer than it accepts).
    #[error("cannot hash the password: {0}")]
    Hash(argon2::password_hash::Error),
    /// The blocking task hashing the password did not finish.
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// The PHC string of `password` under Argon2id with a fresh salt. Blocks for tens of
/// milliseconds: async code calls [`hash_blocking`].
///
/// # Errors
/// [`PasswordError`].
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(PasswordError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// [`hash`] on a blocking thread.
///
/// # Errors
/// [`PasswordError`].
pub async fn hash_blocking(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(PasswordError::Task)?
}

/// A new key as CloudStack's look: 32 random bytes in URL-safe base64 without padding (43
/// characters). API and secret keys are such keys, and so is the admin's first password.
///
/// # Errors
/// [`PasswordError::Random`].
pub fn new_key() -> Result<String, PasswordError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(PasswordError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A new agent token: a [`new_key`] with a prefix that tells what it is (`gna_`).
///
/// # Errors
/// [`PasswordError::Random`].
pub fn agent_token() -> Result<String, PasswordError> {
    Ok(format!("gna_{}", new_key()?))
}

/// Whether `password` is the one `stored` was made from. Anything that is not an Argon2 PHC
/// string (a malformed value, or the salted SHA-256 `salt$hash` that servers before Argon2
/// stored) verifies nothing: such a user must be given a new password.
#[must_use]
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_as_argon2id_with_its_own_salt() {
        let a = hash("Not-the-admin-1").unwrap();
        let b = hash("Not-the-admin-1").unwrap();
        assert!(
            a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "not Argon2id with OWASP's parameters: {a}"
        );
        assert_ne!(a, b, "two hashes of one password share a salt");
        assert!(verify("Not-the-admin-1", &a));
        assert!(verify("Not-the-admin-1", &b));
        assert!(!verify("not-the-admin-1", &a));
        assert!(!verify("", &a));
    }

    #[test]
    fn keys_are_url_safe_and_new_each_time() {
        let k = new_key().unwrap();
        assert_eq!(k.len(), 43);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(k, new_key().unwrap());
    }

    #[test]
    fn legacy_and_malformed_hashes_verify_nothing() {
        // What servers before Argon2 stored: hex salt, '$', hex SHA-256 of salt and password.
        let legacy = "73616c74$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322";
        assert!(!verify("password", legacy));
        assert!(!verify("password", ""));
        assert!(!verify("password", "$argon2id$garbage"));
    }
}
