//! Which database a server keeps its data in: a SQLite file in the data
//! directory (the default), or a PostgreSQL server named by a
//! `postgres://` URL. Both are a [`Store`]; the rest of the server does not
//! know which one it has.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreResult};

/// The schemes of a PostgreSQL URL.
const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// Where the data is, as the `database` setting names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

impl Database {
    /// What `setting` names: a `postgres://` or `postgresql://` URL, or a
    /// SQLite file relative to `data_dir`; `None` for another URL scheme.
    pub fn parse(setting: &str, data_dir: &Path) -> Option<Self> {
        if POSTGRES_SCHEMES.iter().any(|s| setting.starts_with(s)) {
            Some(Self::Postgres(setting.to_owned()))
        } else if setting.contains("://") {
            None
        } else {
            Some(Self::Sqlite(data_dir.join(setting)))
        }
    }

    /// Opens it, bringing its schema up to date.
    pub async fn open(&self) -> StoreResult<OpenStore> {
        Ok(match self {
            Self::Sqlite(path) => OpenStore::Sqlite(SqliteStore::open(path).await?),
            Self::Postgres(url) => OpenStore::Postgres(PgStore::open(url).await?),
        })
    }
}

/// Shows a PostgreSQL URL without its password.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// `url` with the password of its user-info part, if any, replaced.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// An opened database.
#[derive(Debug, Clone)]
pub enum OpenStore {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

impl OpenStore {
    /// The store, shared.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Closes its connections, waiting for them to finish.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_a_file_or_a_postgres_url() {
        let dir = Path::new("/data");
        assert_eq!(
            Database::parse("kanal.db", dir),
            Some(Database::Sqlite(PathBuf::from("/data/kanal.db")))
        );
        let url = "postgresql://kanal:secret@db.internal:5432/kanal";
        let db = Database::parse(url, dir).expect("postgres");
        assert_eq!(db, Database::Postgres(url.into()));
        assert_eq!(
            db.to_string(),
            "postgresql://kanal:***@db.internal:5432/kanal"
        );
        assert_eq!(
            Database::parse("postgres://127.0.0.1/kanal", dir)
                .expect("postgres")
                .to_string(),
            "postgres://127.0.0.1/kanal"
        );
        assert_eq!(Database::parse("mysql://x/y", dir), None);
    }
}
