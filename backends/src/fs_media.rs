//! The embedded media store: files under a directory, written through a temporary file and
//! renamed, so a reader never sees half a file.

use std::path::PathBuf;

use async_trait::async_trait;
use sandcat_core::{ports::MediaStore, Error, Result};

pub struct FsMediaStore {
    root: PathBuf,
}

impl FsMediaStore {
    pub fn new(root: PathBuf) -> Self {
        FsMediaStore { root }
    }

    /// Keys are `[A-Za-z0-9_./-]` without `..`; anything else is refused.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty()
            && !key.contains("..")
            && !key.starts_with('/')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
        if !ok {
            return Err(Error::invalid_param("invalid media key"));
        }
        Ok(self.root.join(key))
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Storage(format!("media store: {e}"))
}

#[async_trait]
impl MediaStore for FsMediaStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", sandcat_core::token::random_string(8)));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}
