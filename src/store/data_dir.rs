//! The data directory and its lock.
//!
//! A folder that does not exist yet is created private (0700, parents too). A folder
//! that exists keeps its mode: it may be a shared folder (e.g. 1777) that other
//! programs rely on, so sectl only warns on stderr when others may read or write it.
//! The store's own `db` subfolder is created 0700 inside it.
//!
//! The lock is a file `lock` in the folder, locked for as long as the store is open
//! and released when it is dropped. It exists because sled's own lock (an `flock` on
//! its data file) is not exact: it is held a moment past the drop of a `Db` while
//! sled's background threads finish with the file, and it is shared with any child
//! process forked (by another thread) while it is held, until the child execs. Either
//! made a reopen fail as "in use by another sectl process". Ours is exact (see
//! `lock`), so sled's lock failing while ours is held can only be one of those
//! moments, and is waited out.

use super::{Result, StoreError};
use std::fs::{DirBuilder, File, OpenOptions};
use std::path::Path;

/// Creates `dir` (0700) if it does not exist, warns when an existing one is open to
/// others, and creates the `db` subfolder (0700) if needed.
pub fn prepare(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => warn_if_shared(dir, &meta),
        Ok(_) => return Err(StoreError::Backend(format!("data directory {} is not a folder", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private(dir)?,
        Err(e) => return Err(StoreError::Backend(format!("cannot read data directory {}: {e}", dir.display()))),
    }
    let db = dir.join("db");
    if !db.exists() {
        create_private(&db)?;
    }
    Ok(())
}

fn create_private(dir: &Path) -> Result<()> {
    let mut b = DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))
}

/// The warning for a folder others may read or write, if any.
pub fn shared_warning(dir: &Path, mode: u32) -> Option<String> {
    let (read, write) = (mode & 0o044 != 0, mode & 0o022 != 0);
    let what = match (read, write) {
        (false, false) => return None,
        (true, false) => "readable",
        (false, true) => "writable",
        (true, true) => "readable and writable",
    };
    Some(format!(
        "warning: data directory {} (mode {:04o}) is {what} by other users; sectl leaves its mode as it is. \
         Its store and token are kept in private (0700/0600) entries inside it; for a private store use a \
         folder only you can open (e.g. `mkdir -m 700`)",
        dir.display(),
        mode & 0o7777
    ))
}

#[cfg(unix)]
fn warn_if_shared(dir: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(w) = shared_warning(dir, meta.permissions().mode()) {
        eprintln!("{w}");
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &std::fs::Metadata) {}

/// The message for a store that another process holds.
pub fn in_use(dir: &Path) -> StoreError {
    StoreError::InUse { dir: dir.to_path_buf() }
}

/// The store's lock on its data directory; released on drop.
pub struct DirLock {
    file: Option<File>,
    key: std::path::PathBuf,
}

/// Data directories open in this process (record locks are per process, see `lock`).
static OPEN_HERE: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

impl Drop for DirLock {
    fn drop(&mut self) {
        // Close (and so unlock) first, then let this process open it again.
        drop(self.file.take());
        OPEN_HERE.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// Takes the store's lock in `dir`, without waiting: `in_use` when it is held, by this
/// process or another. Between processes it is a POSIX record lock (`fcntl`), which,
/// unlike `flock`, a child process does not inherit: a `flock` is shared with every
/// process forked while it is held (until that child execs), so a store opened by a
/// thread while another thread starts a program looked "in use" for that moment.
/// Within this process, a set of open folders does the same job.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !OPEN_HERE.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
        return Err(in_use(dir));
    }
    // From here on, `guard` unregisters the folder on every early return.
    let mut guard = DirLock { file: None, key };
    let path = dir.join("lock");
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o.open(&path).map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    try_lock(&f).map_err(|e| match e {
        None => in_use(dir),
        Some(e) => StoreError::Backend(format!("cannot lock {}: {e}", path.display())),
    })?;
    guard.file = Some(f);
    Ok(guard)
}

/// Locks `f` exclusively without waiting: Err(None) when another process holds it.
#[cfg(unix)]
fn try_lock(f: &File) -> std::result::Result<(), Option<std::io::Error>> {
    use rustix::fs::{fcntl_lock, FlockOperation};
    match fcntl_lock(f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => Err(None),
        Err(e) => Err(Some(e.into())),
    }
}

#[cfg(not(unix))]
fn try_lock(f: &File) -> std::result::Result<(), Option<std::io::Error>> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Some(e)),
    }
}

/// Runs `open` until it succeeds or fails other than on sled's file lock, for at most
/// `patience` (see the module comment): with our lock held, sled's can only be held by
/// the background threads of a store of this process that was just dropped.
pub fn retry_while_locked<T>(
    dir: &Path,
    patience: std::time::Duration,
    mut open: impl FnMut() -> sled::Result<T>,
) -> Result<T> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match open() {
            Ok(v) => return Ok(v),
            Err(sled::Error::Io(ref io)) if io.to_string().contains("could not acquire lock") => {
                if start.elapsed() >= patience {
                    return Err(in_use(dir));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(StoreError::Backend(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_modes_warn() {
        let d = Path::new("/d");
        assert_eq!(shared_warning(d, 0o700), None);
        assert!(shared_warning(d, 0o1777).unwrap().contains("readable and writable"));
        assert!(shared_warning(d, 0o750).unwrap().contains("(mode 0750) is readable by"));
        assert!(shared_warning(d, 0o702).unwrap().contains("writable"));
    }
}
