//! Random secrets: access tokens, device ids, session ids.

use base64::Engine;
use rand::RngCore;

/// A random URL-safe string carrying `bytes` bytes of entropy.
pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// An access token: 256 bits of entropy with a recognisable prefix.
pub fn access_token() -> String {
    format!("sct_{}", random_string(32))
}

/// A device id of ten upper-case letters, as Synapse makes them.
pub fn device_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| rng.gen_range(b'A'..=b'Z') as char)
        .collect()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
