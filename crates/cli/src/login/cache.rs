//! The token cache of `portcullis login`: one JSON file, readable and
//! writable by its owner only, holding one login per issuer (the token
//! presented to the proxy, when it expires, the refresh token, and where
//! the proxy is).
//!
//! The file holds bearer credentials, so it is treated like an SSH key:
//! written to a new file with mode 0600 and renamed over the old one
//! (never half written), in a folder of its owner's that nobody else may
//! write to (made 0700 when Portcullis makes it); read through a
//! descriptor opened without following a symbolic link, and refused when
//! anyone else owns it or could read it. Readers and writers take a lock
//! beside it, so that two commands never use (and so spend) one refresh
//! token at the same time.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The cache's schema version; another version is refused, not guessed at.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not a token cache Portcullis can read ({1}); remove it and run `portcullis login` again")]
    Format(PathBuf, String),
    #[error(
        "{0}: readable by others (mode {1:o}); run `chmod 600 {0}` or remove it and log in again"
    )]
    Exposed(PathBuf, u32),
    #[error("{0}: owned by another user, or not a plain file; remove it and log in again")]
    Owner(PathBuf),
    #[error("{0}: the folder of the token cache must be yours and writable by you alone (chmod 700), or give --cache in one that is")]
    Folder(PathBuf),
    #[error("no login for {0}; run `portcullis login --issuer {0}`")]
    NoLogin(String),
    #[error("no login yet; run `portcullis login --issuer URL`")]
    Empty,
    #[error("logins from several issuers are cached ({0}); choose one with --issuer")]
    Ambiguous(String),
}

/// Where the proxy is, as given at login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyAddress {
    pub host: String,
    pub port: u16,
    /// PEM roots for the proxy's certificate; `None`: the system's roots.
    pub sslrootcert: Option<PathBuf>,
}

/// One issuer's login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret, for providers
    /// that give native apps one; never the secret itself.
    pub client_secret_env: Option<String>,
    /// The resource (audience) the access token is asked for (RFC 8707).
    pub resource: Option<String>,
    /// Which token the proxy gets: the access token (`true`) or the ID
    /// token.
    pub access_token: bool,
    pub token_endpoint: String,
    /// PEM roots for the provider's HTTPS; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The user name the token names (the proxy checks it).
    pub user: String,
    /// The token presented to the proxy as the password.
    pub token: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: i64,
    pub refresh_token: Option<String>,
    pub proxy: Option<ProxyAddress>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    logins: Vec<Login>,
}

/// The cache file: `$PORTCULLIS_TOKEN_CACHE`, else
/// `$XDG_CACHE_HOME/portcullis/tokens.json`, else
/// `~/.cache/portcullis/tokens.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PORTCULLIS_TOKEN_CACHE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("portcullis").join("tokens.json"))
}

/// Every cached login; none when the file does not exist.
pub fn load(path: &Path) -> Result<Vec<Login>, CacheError> {
    let io = |e| CacheError::Io(path.to_owned(), e);
    check_folder(path)?;
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(CacheError::Owner(path.to_owned()))
        }
        Err(e) => return Err(io(e)),
    };
    // The open file's own metadata: what is checked is what is read.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() || meta.uid() != uid() {
        return Err(CacheError::Owner(path.to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CacheError::Exposed(path.to_owned(), mode));
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io)?;
    let file: File = serde_json::from_slice(&text)
        .map_err(|e| CacheError::Format(path.to_owned(), e.to_string()))?;
    if file.version != VERSION {
        return Err(CacheError::Format(
            path.to_owned(),
            format!("version {}", file.version),
        ));
    }
    Ok(file.logins)
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The cache's folder must be its owner's and writable by nobody else:
/// whoever can write there can swap the file.
fn check_folder(path: &Path) -> Result<(), CacheError> {
    let dir = folder(path);
    match fs::metadata(dir) {
        Ok(m) if m.uid() == uid() && m.permissions().mode() & 0o022 == 0 => Ok(()),
        Ok(_) => Err(CacheError::Folder(dir.to_owned())),
        // Made (0700) when the cache is first written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CacheError::Io(dir.to_owned(), e)),
    }
}

fn ensure_folder(path: &Path) -> Result<(), CacheError> {
    let dir = folder(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CacheError::Io(dir.to_owned(), e))?;
    }
    check_folder(path)
}

/// Held while a command reads, refreshes and writes the cache.
pub struct Lock(#[allow(dead_code)] fs::File);

/// Waits for and takes the cache's lock (`<cache>.lock` beside it).
pub fn lock(path: &Path) -> Result<Lock, CacheError> {
    ensure_folder(path)?;
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let io = |e| CacheError::Io(lock_path.clone(), e);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(io)?;
    use std::os::unix::io::AsRawFd;
    // SAFETY: the descriptor is open for the call's duration.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    Ok(Lock(file))
}

/// Writes `logins` as the whole cache: a new 0600 file renamed into place.
pub fn store(path: &Path, logins: &[Login]) -> Result<(), CacheError> {
    let io = |e| CacheError::Io(path.to_owned(), e);
    ensure_folder(path)?;
    let text = serde_json::to_vec_pretty(&File {
        version: VERSION,
        logins: logins.to_vec(),
    })
    .map_err(|e| CacheError::Format(path.to_owned(), e.to_string()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(e)
    })
}

/// `logins` with `login` in place of the one for its issuer.
pub fn replace(mut logins: Vec<Login>, login: Login) -> Vec<Login> {
    logins.retain(|l| l.issuer != login.issuer);
    logins.push(login);
    logins
}

/// The login for `issuer`, or the only one when no issuer is named.
pub fn pick<'a>(logins: &'a [Login], issuer: Option<&str>) -> Result<&'a Login, CacheError> {
    match issuer {
        Some(i) => {
            let i = i.trim_end_matches('/');
            logins
                .iter()
                .find(|l| l.issuer.trim_end_matches('/') == i)
                .ok_or_else(|| CacheError::NoLogin(i.to_owned()))
        }
        None => match logins {
            [] => Err(CacheError::Empty),
            [one] => Ok(one),
            many => Err(CacheError::Ambiguous(
                many.iter()
                    .map(|l| l.issuer.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(issuer: &str) -> Login {
        Login {
            issuer: issuer.into(),
            client_id: "portcullis-cli".into(),
            client_secret_env: None,
            resource: Some("urn:portcullis".into()),
            access_token: true,
            token_endpoint: format!("{issuer}/token"),
            ca_file: None,
            user: "dana@example.com".into(),
            token: "eyJ.x.y".into(),
            expires_at: 1_900_000_000,
            refresh_token: Some("r".into()),
            proxy: Some(ProxyAddress {
                host: "db.example".into(),
                port: 6432,
                sslrootcert: None,
            }),
        }
    }

    #[test]
    fn a_cache_round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/tokens.json");
        assert!(load(&path).unwrap().is_empty());
        let logins = vec![login("https://a"), login("https://b")];
        store(&path, &logins).unwrap();
        assert_eq!(load(&path).unwrap(), logins);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Rewritten, not appended, and no temporary file left behind.
        store(&path, &logins[..1]).unwrap();
        assert_eq!(load(&path).unwrap().len(), 1);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_cache_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        store(&path, &[login("https://a")]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(load(&path), Err(CacheError::Exposed(_, 0o640))));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(load(&path), Err(CacheError::Exposed(_, _))));
    }

    #[test]
    fn a_link_or_an_open_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        store(&real, &[login("https://a")]).unwrap();
        let link = dir.path().join("tokens.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(load(&link), Err(CacheError::Owner(_))));
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let path = open.join("tokens.json");
        assert!(matches!(load(&path), Err(CacheError::Folder(_))));
        assert!(matches!(
            store(&path, &[login("https://a")]),
            Err(CacheError::Folder(_))
        ));
        assert!(!path.exists());
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/tokens.json");
        let held = lock(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _l = lock(&p).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn a_foreign_or_broken_cache_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let write = |text: &str| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("not json");
        assert!(matches!(load(&path), Err(CacheError::Format(..))));
        write(r#"{"version":2,"logins":[]}"#);
        assert!(matches!(load(&path), Err(CacheError::Format(..))));
    }

    #[test]
    fn one_login_per_issuer_and_picking_one() {
        let logins = replace(vec![login("https://a")], login("https://b"));
        let mut newer = login("https://a");
        newer.token = "new".into();
        let logins = replace(logins, newer);
        assert_eq!(logins.len(), 2);
        assert_eq!(pick(&logins, Some("https://a/")).unwrap().token, "new");
        assert!(matches!(pick(&logins, None), Err(CacheError::Ambiguous(_))));
        assert!(pick(&logins[..1], None).is_ok());
        assert!(matches!(pick(&[], None), Err(CacheError::Empty)));
        assert!(matches!(
            pick(&logins, Some("https://c")),
            Err(CacheError::NoLogin(_))
        ));
    }
}
