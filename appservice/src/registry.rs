//! The set of registered application services: loaded from the registration directory at
//! start-up (refusing to start on a bad file), re-read while running so that
//! `sandcat appservice register FILE` takes effect without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use ruma::{OwnedServerName, RoomAliasId, UserId};
use tokio::sync::watch;

use crate::registration::{validate_set, Appservice, RegistrationError};

pub struct Registry {
    server_name: OwnedServerName,
    dir: Option<PathBuf>,
    list: RwLock<Arc<Vec<Arc<Appservice>>>>,
    changed: watch::Sender<u64>,
}

/// Reads every `*.yaml` / `*.yml` file of `dir` (sorted by name) and validates the set.
pub fn scan_dir(
    dir: &Path,
    server_name: &ruma::ServerName,
) -> Result<Vec<Appservice>, RegistrationError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RegistrationError::Io(format!(
                "reading {}: {e}",
                dir.display()
            )))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let list = files
        .iter()
        .map(|f| Appservice::load(f, server_name))
        .collect::<Result<Vec<_>, _>>()?;
    validate_set(&list.iter().collect::<Vec<_>>())?;
    Ok(list)
}

/// Validates `file` against the registrations already in `dir` and copies it there as
/// `{id}.yaml`. Returns the path written.
pub fn register_file(
    dir: &Path,
    file: &Path,
    server_name: &ruma::ServerName,
) -> Result<PathBuf, RegistrationError> {
    let new = Appservice::load(file, server_name)?;
    let target = dir.join(format!("{}.yaml", sanitize(new.id())));
    let existing: Vec<Appservice> = scan_dir(dir, server_name)?
        .into_iter()
        .filter(|a| a.id() != new.id())
        .collect();
    let mut all: Vec<&Appservice> = existing.iter().collect();
    all.push(&new);
    validate_set(&all)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| RegistrationError::Io(format!("creating {}: {e}", dir.display())))?;
    let tmp = target.with_extension("yaml.tmp");
    std::fs::write(&tmp, &new.text)
        .and_then(|_| std::fs::rename(&tmp, &target))
        .map_err(|e| RegistrationError::Io(format!("writing {}: {e}", target.display())))?;
    Ok(target)
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Registry {
    /// Loads the directory (if any); a bad registration is an error.
    pub fn load(
        dir: Option<&Path>,
        server_name: OwnedServerName,
    ) -> Result<Registry, RegistrationError> {
        let list = match dir {
            Some(d) => scan_dir(d, &server_name)?,
            None => Vec::new(),
        };
        for a in &list {
            tracing::info!(id = a.id(), file = %a.source, "application service registered");
        }
        Ok(Registry {
            server_name,
            dir: dir.map(Path::to_path_buf),
            list: RwLock::new(Arc::new(list.into_iter().map(Arc::new).collect())),
            changed: watch::channel(0).0,
        })
    }

    /// A registry with a fixed set, for tests and embedding.
    pub fn from_list(
        list: Vec<Appservice>,
        server_name: OwnedServerName,
    ) -> Result<Registry, RegistrationError> {
        validate_set(&list.iter().collect::<Vec<_>>())?;
        Ok(Registry {
            server_name,
            dir: None,
            list: RwLock::new(Arc::new(list.into_iter().map(Arc::new).collect())),
            changed: watch::channel(0).0,
        })
    }

    /// Re-reads the directory. A bad set is logged and the previous one kept. Returns whether
    /// anything changed.
    pub fn reload(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        let fresh = match scan_dir(dir, &self.server_name) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "application service registrations not reloaded");
                return false;
            }
        };
        let current = self.all();
        let same = fresh.len() == current.len()
            && fresh
                .iter()
                .zip(current.iter())
                .all(|(a, b)| a.source == b.source && a.text == b.text);
        if same {
            return false;
        }
        for a in &fresh {
            if !current.iter().any(|c| c.id() == a.id() && c.text == a.text) {
                tracing::info!(id = a.id(), file = %a.source, "application service registered");
            }
        }
        *self.list.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(fresh.into_iter().map(Arc::new).collect());
        self.changed.send_modify(|g| *g += 1);
        true
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.server_name
    }

    pub fn all(&self) -> Arc<Vec<Arc<Appservice>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn by_token(&self, as_token: &str) -> Option<Arc<Appservice>> {
        self.all()
            .iter()
            .find(|a| a.registration.as_token == as_token)
            .cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<Appservice>> {
        self.all().iter().find(|a| a.id() == id).cloned()
    }

    /// The service that reserved this user id, if any.
    pub fn exclusive_user_owner(&self, user_id: &UserId) -> Option<Arc<Appservice>> {
        self.all()
            .iter()
            .find(|a| a.owns_user_exclusively(user_id))
            .cloned()
    }

    pub fn exclusive_alias_owner(&self, alias: &RoomAliasId) -> Option<Arc<Appservice>> {
        self.all()
            .iter()
            .find(|a| a.owns_alias_exclusively(alias))
            .cloned()
    }
}
