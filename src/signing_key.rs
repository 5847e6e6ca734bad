//! The server's signing key file, `signing.key` in the data directory.
//!
//! The format is Synapse's: one line `ed25519 <version> <seed>`, the 32-byte seed in unpadded
//! base64, so a key moves between the two servers as it is. A new key gets a random version
//! (`a_` and four letters or digits), so a rotated key never reuses an old key's id. A file
//! written before versions were random holds the key as a PKCS#8 document; it keeps its
//! version, `a_sndc`, which events signed then name.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use base64::Engine;
use rand::{distributions::Alphanumeric, rngs::OsRng, Rng, RngCore};
use ruma::signatures::Ed25519KeyPair;

/// The version of keys written as a PKCS#8 document, before versions were random.
const LEGACY_VERSION: &str = "a_sndc";

/// RFC 8410's PKCS#8 v1 header of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// Reads the key at `path`, creating a new one if there is none. Instances sharing the data
/// directory that start together agree on one key: a new key is written whole beside the
/// file and linked in only if no file is there yet, so nobody reads a half-written key.
pub fn load_or_create(path: &Path) -> Result<Ed25519KeyPair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            parse(&bytes).with_context(|| format!("reading signing key {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (line, key) = generate()?;
            let tmp = beside(path, key.version());
            write_synced(&tmp, &line)?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(key),
                // Another instance linked its key first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading signing key {}", path.display())),
    }
}

/// Replaces the key at `path` by a new one with a new version; returns the old key and the
/// new. The file is replaced atomically (written beside it, then renamed).
pub fn rotate(path: &Path) -> Result<(Ed25519KeyPair, Ed25519KeyPair)> {
    let old = load_or_create(path)?;
    let (mut line, mut new) = generate()?;
    while new.version() == old.version() {
        (line, new) = generate()?;
    }
    let tmp = beside(path, new.version());
    write_synced(&tmp, &line)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok((old, new))
}

/// A file beside `path` for the key of `version`, before it takes the key file's place.
fn beside(path: &Path, version: &str) -> std::path::PathBuf {
    path.with_extension(format!("key.{version}.new"))
}

/// Writes `text` to a new file at `path` and flushes it to disk.
fn write_synced(path: &Path, text: &str) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// A new key and the line that stores it.
fn generate() -> Result<(String, Ed25519KeyPair)> {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let version: String = format!(
        "a_{}",
        (&mut OsRng)
            .sample_iter(&Alphanumeric)
            .take(4)
            .map(char::from)
            .collect::<String>()
    );
    let key = from_seed(&seed, &version)?;
    Ok((format!("ed25519 {version} {}\n", B64.encode(seed)), key))
}

fn from_seed(seed: &[u8], version: &str) -> Result<Ed25519KeyPair> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A key file: Synapse's line format, or a PKCS#8 document of the legacy version.
fn parse(bytes: &[u8]) -> Result<Ed25519KeyPair> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            if line.starts_with("ed25519 ") {
                let mut parts = line.split_whitespace().skip(1);
                let (Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next())
                else {
                    anyhow::bail!("expected `ed25519 <version> <base64 seed>`");
                };
                if version.is_empty()
                    || !version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    anyhow::bail!("the key version `{version}` must be letters, digits and _");
                }
                let seed = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(seed.trim_end_matches('='))
                    .context("the seed is not base64")?;
                if seed.len() != 32 {
                    anyhow::bail!("the seed is {} bytes, not 32", seed.len());
                }
                return from_seed(&seed, version);
            }
        }
    }
    Ed25519KeyPair::from_der(bytes, LEGACY_VERSION.to_owned())
        .map_err(|e| anyhow::anyhow!("neither `ed25519 <version> <seed>` nor PKCS#8: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_new_key_is_read_back_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = load_or_create(&path).unwrap();
        assert!(key.version().starts_with("a_") && key.version().len() == 6);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&format!("ed25519 {} ", key.version())),
            "{text}"
        );
        let again = load_or_create(&path).unwrap();
        assert_eq!(again.version(), key.version());
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn instances_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let started: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).unwrap().public_key()))
                .collect();
            started.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1, "no file left beside the key");
    }

    #[test]
    fn a_legacy_pkcs8_key_keeps_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let doc = Ed25519KeyPair::generate();
        std::fs::write(&path, &*doc).unwrap();
        let key = load_or_create(&path).unwrap();
        assert_eq!(key.version(), LEGACY_VERSION);
        let original = Ed25519KeyPair::from_der(&doc, "x".into()).unwrap();
        assert_eq!(key.public_key(), original.public_key());
    }

    #[test]
    fn a_synapse_key_file_is_read() {
        // A key line as Synapse's `generate_signing_key` writes it: the seed is all 7s.
        let seed = B64.encode([7u8; 32]);
        let key = parse(format!("ed25519 a_AbCd {seed}\n").as_bytes()).unwrap();
        assert_eq!(key.version(), "a_AbCd");
        assert_eq!(
            key.public_key(),
            from_seed(&[7u8; 32], "v").unwrap().public_key()
        );
    }

    #[test]
    fn rotation_writes_a_new_version_and_keeps_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = load_or_create(&path).unwrap();
        let (old, new) = rotate(&path).unwrap();
        assert_eq!(old.public_key(), first.public_key());
        assert_ne!(new.version(), old.version());
        assert_ne!(new.public_key(), old.public_key());
        let read = load_or_create(&path).unwrap();
        assert_eq!(read.version(), new.version());
        assert_eq!(read.public_key(), new.public_key());
    }

    #[test]
    fn broken_key_files_are_refused_clearly() {
        for bad in [
            "ed25519 a_x".to_owned(),
            "ed25519 a_x !!!".to_owned(),
            format!("ed25519 a_x {}", B64.encode([1u8; 16])),
            "ed25519 a/x AAAA".to_owned(),
            "hello".to_owned(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
