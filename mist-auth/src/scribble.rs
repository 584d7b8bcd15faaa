//! `scribble://?db=DIR`: a small JSON database, one file per token, in the
//! layout of the scribble database the original mist used:
//! `DIR/tokens/<token>.json` holding `{"token": ..., "tags": [...]}`.
//!
//! A token names a file, so it is encoded: every byte but ASCII letters,
//! digits, `-` and `_` becomes `%XX`. No token can then name a path outside
//! the directory (`..`, `/` and NUL are all encoded), and a token whose
//! encoded name would exceed what file systems allow is refused. Writes go to
//! a temporary file that is synced and renamed over the old one, and the
//! directory is synced after every rename or removal, so a crash or a power
//! loss leaves either the old or the new record, never half of one, and a
//! removed token does not come back. File IO runs on a blocking thread pool,
//! never on the async runtime's threads.
//!
//! A file name is a token, so logs and errors name a file by its
//! fingerprint (`#` and 12 hex digits of its SHA-256), never by its path. At
//! start, a file that is not a token record, or whose token is not the one
//! its name says, is skipped with a warning, and the others are served.

use mist_engine::auth::{AuthError, Authenticator, Grants, Pending};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File names longer than this are refused (most file systems allow 255
/// bytes; the rest is room for the `.json` and temporary suffixes).
const MAX_NAME: usize = 240;

#[derive(Serialize, Deserialize)]
struct Record {
    token: String,
    tags: BTreeSet<String>,
}

/// Tokens as JSON files in a directory.
pub struct ScribbleAuthenticator {
    tokens: PathBuf,
    /// Read-modify-write of one file at a time.
    writing: Arc<Mutex<()>>,
}

impl ScribbleAuthenticator {
    /// Opens (creating if needed) the database in `db`.
    ///
    /// ```
    /// use mist_auth::{Authenticator, ScribbleAuthenticator};
    ///
    /// let dir = std::env::temp_dir().join(format!("mist-doc-{}", std::process::id()));
    /// let auth = ScribbleAuthenticator::open(&dir).unwrap();
    /// futures::executor::block_on(auth.register("../t", &["a".to_string()].into())).unwrap();
    /// assert!(dir.join("tokens/%2E%2E%2Ft.json").exists(), "names are encoded");
    /// # std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn open(db: &Path) -> Result<ScribbleAuthenticator, AuthError> {
        let tokens = db.join("tokens");
        fs::create_dir_all(&tokens).map_err(|e| {
            AuthError(format!(
                "cannot create the scribble database {}: {e}",
                tokens.display()
            ))
        })?;
        Ok(ScribbleAuthenticator {
            tokens,
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// The file of a token.
    fn file(&self, token: &str) -> Result<PathBuf, AuthError> {
        let name = encode(token);
        if name.len() > MAX_NAME {
            return Err(AuthError(format!(
                "the token is too long for the scribble database ({} bytes once encoded, at most {MAX_NAME})",
                name.len()
            )));
        }
        Ok(self.tokens.join(format!("{name}.json")))
    }

    /// Runs a read-modify-write of one token's record on the blocking pool.
    fn update<'a>(
        &'a self,
        token: &'a str,
        change: impl FnOnce(Option<Record>) -> Result<Option<Record>, AuthError> + Send + 'static,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let path = self.file(token)?;
            let writing = self.writing.clone();
            blocking::unblock(move || {
                let _one_at_a_time = writing.lock().unwrap_or_else(|e| e.into_inner());
                let current = read(&path)?;
                match change(current)? {
                    Some(record) => write_atomically(&path, &record)?,
                    None => fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?,
                }
                sync_directory(&path)
            })
            .await
        })
    }
}

impl ScribbleAuthenticator {
    /// Changes a registered token's tags.
    fn retag<'a>(
        &'a self,
        token: &'a str,
        change: impl FnOnce(&mut BTreeSet<String>) + Send + 'static,
    ) -> Pending<'a, Result<(), AuthError>> {
        self.update(token, move |current| {
            let mut record = current.ok_or_else(missing)?;
            change(&mut record.tags);
            Ok(Some(record))
        })
    }
}

/// `%XX` for every byte but `[A-Za-z0-9_-]`.
fn encode(token: &str) -> String {
    let mut name = String::with_capacity(token.len());
    for byte in token.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

/// How logs and errors name a token's file: its path is the token.
fn fingerprint(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    let name = name.strip_suffix(b".tmp").unwrap_or(name);
    let name = name.strip_suffix(b".json").unwrap_or(name);
    let digest = Sha256::digest(name);
    let mut hex = String::from("#");
    for byte in &digest[..6] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn io_error(doing: &str, path: &Path, e: io::Error) -> AuthError {
    AuthError(format!(
        "cannot {doing} the record of token {}: {e}",
        fingerprint(path)
    ))
}

fn read(path: &Path) -> Result<Option<Record>, AuthError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            AuthError(format!(
                "the record of token {} is not a token record: {e}",
                fingerprint(path)
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

fn write_atomically(path: &Path, record: &Record) -> Result<(), AuthError> {
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| AuthError(e.to_string()))?;
    let mut file = fs::File::create(&temporary).map_err(|e| io_error("create", &temporary, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| io_error("rename into place", path, e))
}

/// Makes a rename or removal in the directory of `path` durable.
fn sync_directory(path: &Path) -> Result<(), AuthError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| AuthError(format!("cannot sync the token directory: {e}")))
}

fn missing() -> AuthError {
    AuthError("unknown token".into())
}

impl Authenticator for ScribbleAuthenticator {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        let dir = self.tokens.clone();
        Box::pin(blocking::unblock(move || {
            let mut grants = Grants::new();
            let unreadable =
                |e: io::Error| AuthError(format!("cannot read the token directory: {e}"));
            for entry in fs::read_dir(&dir).map_err(unreadable)? {
                let path = entry.map_err(unreadable)?.path();
                let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                match read(&path) {
                    Ok(Some(record)) if encode(&record.token) == stem => {
                        grants.insert(record.token, record.tags);
                    }
                    Ok(Some(_)) => log::warn!(
                        "skipping the token file {}: the token in it is not the one its name says",
                        fingerprint(&path)
                    ),
                    Ok(None) => {}
                    Err(e) => log::warn!("skipping a token file: {e}"),
                }
            }
            Ok(grants)
        }))
    }

    fn register<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let record = Record {
            token: token.to_string(),
            tags: tags.clone(),
        };
        self.update(token, move |current| match current {
            Some(_) => Err(AuthError("token already registered".into())),
            None => Ok(Some(record)),
        })
    }

    fn unregister<'a>(&'a self, token: &'a str) -> Pending<'a, Result<(), AuthError>> {
        self.update(token, |current| current.map(|_| None).ok_or_else(missing))
    }

    fn set<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let tags = tags.clone();
        self.retag(token, move |granted| granted.extend(tags))
    }

    fn unset<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let tags = tags.clone();
        self.retag(token, move |granted| granted.retain(|t| !tags.contains(t)))
    }

    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        Box::pin(async move {
            let path = self.file(token)?;
            let record = blocking::unblock(move || read(&path)).await?;
            Ok(record.map(|r| r.tags))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(encode("plain-Token_1"), "plain-Token_1");
        assert_eq!(encode("../x"), "%2E%2E%2Fx");
        assert_eq!(encode("/etc/passwd"), "%2Fetc%2Fpasswd");
        assert_eq!(encode("a\0b"), "a%00b");
        assert_eq!(encode(".."), "%2E%2E");
        assert_eq!(encode("ü"), "%C3%BC");
    }
}
