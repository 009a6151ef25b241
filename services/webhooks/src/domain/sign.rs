//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): the secret is
//! `whsec_` + base64 of the key; each attempt is signed as
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), the
//! timestamp in Unix seconds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2_hmac::Sha256;

/// Prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated key.
pub const KEY_BYTES: usize = 32;

/// A new secret: `whsec_` + base64 of [`KEY_BYTES`] random bytes.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key)?;
    Ok(format!("{SECRET_PREFIX}{}", B64.encode(key)))
}

/// The key of a secret (the base64 part after `whsec_`, decoded).
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    B64.decode(b)
        .map_err(|e| format!("secret is not base64: {e}"))
}

/// The `webhook-signature` header value of one attempt.
pub fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Whether `header` (space-separated `v1,<sig>` entries) holds the signature of the
/// message: what a receiver checks (used by the tests; constant time).
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    header.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|s| B64.decode(s).ok())
            .is_some_and(|sig| mac.clone().verify_slice(&sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries (svix/webhooks tests).
    #[test]
    fn matches_the_reference_example() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &format!("v1,x {sig}")
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            &sig
        ));
    }

    #[test]
    fn secrets_are_random_and_decode() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(key_of(&a).unwrap().len(), KEY_BYTES);
    }
}
