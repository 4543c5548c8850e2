//! The saved session (`<home>/session.json`): which server, which account,
//! the resume token, and how far `listen` got. Readable only by its owner,
//! because the resume token opens the account.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// File name of the session inside the home directory.
const SESSION_FILE: &str = "session.json";

/// What `kanal` remembers between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The server as given to `--server`.
    pub(crate) server: String,
    /// The TLS server name, when it is not the server's host.
    #[serde(default)]
    pub(crate) server_name: Option<String>,
    /// The pinned certificate fingerprint (hex), if any.
    #[serde(default)]
    pub(crate) pin: Option<String>,
    /// The account, `local@domain`.
    pub(crate) address: String,
    /// The token that resumes the session.
    pub(crate) resume_token: String,
    /// The seq of the last event `listen` printed.
    #[serde(default)]
    pub(crate) last_seq: u64,
}

impl Session {
    /// The session saved in `home`, if there is one.
    pub(crate) fn load(home: &Path) -> anyhow::Result<Option<Session>> {
        let path = home.join(SESSION_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let session = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid session file", path.display()))?;
        Ok(Some(session))
    }

    /// Writes the session to `home` (created if missing, mode 0700) with mode
    /// 0600, atomically. Another `kanal` may have saved progress meanwhile:
    /// `last_seq` never moves backwards for the same account.
    pub(crate) fn save(&mut self, home: &Path) -> anyhow::Result<()> {
        create_private_dir(home)?;
        if let Ok(Some(saved)) = Session::load(home)
            && saved.address == self.address
            && saved.server == self.server
        {
            self.last_seq = self.last_seq.max(saved.last_seq);
        }
        let path = home.join(SESSION_FILE);
        let temp = home.join(format!(".{SESSION_FILE}.{}", std::process::id()));
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let result = (|| -> anyhow::Result<()> {
            let mut file = private_file(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.with_context(|| format!("saving {}", path.display()))
    }
}

/// The home directory: `--home`, else `$XDG_CONFIG_HOME/kanal`, else
/// `~/.config/kanal`.
pub(crate) fn home_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(home) = explicit {
        return Ok(home);
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        let config = PathBuf::from(config);
        if config.is_absolute() {
            return Ok(config.join("kanal"));
        }
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("kanal")),
        None => bail!("cannot find a home directory: set --home or KANAL_HOME"),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            server: "127.0.0.1:7447".into(),
            server_name: Some("localhost".into()),
            pin: Some("ab".repeat(32)),
            address: "alice@localhost".into(),
            resume_token: "token".into(),
            last_seq: 7,
        }
    }

    #[test]
    fn round_trips_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("nested").join("kanal");
        assert_eq!(Session::load(&home).expect("load"), None);
        let mut session = sample();
        session.save(&home).expect("save");
        assert_eq!(Session::load(&home).expect("load"), Some(sample()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&home.join(SESSION_FILE)), 0o600);
            assert_eq!(mode(&home), 0o700);
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&home)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SESSION_FILE)]);
    }

    #[test]
    fn progress_never_moves_backwards_for_the_same_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ahead = sample();
        ahead.last_seq = 50;
        ahead.save(dir.path()).expect("save");
        let mut stale = sample();
        stale.resume_token = "newer".into();
        stale.save(dir.path()).expect("save");
        let saved = Session::load(dir.path()).expect("load").expect("some");
        assert_eq!(saved.last_seq, 50);
        assert_eq!(saved.resume_token, "newer");
        // Another account starts from its own progress.
        let mut bob = sample();
        bob.address = "bob@localhost".into();
        bob.last_seq = 0;
        bob.save(dir.path()).expect("save");
        let saved = Session::load(dir.path()).expect("load").expect("some");
        assert_eq!(saved.last_seq, 0);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SESSION_FILE), "{not json").expect("write");
        let error = Session::load(dir.path()).expect_err("invalid");
        assert!(error.to_string().contains("not a valid session file"));
    }

    #[test]
    fn explicit_home_wins() {
        let home = home_dir(Some(PathBuf::from("/tmp/k"))).expect("home");
        assert_eq!(home, PathBuf::from("/tmp/k"));
    }
}
