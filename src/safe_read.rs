//! Bounded file reads. Every manifest file sectl reads goes through here, so that no
//! file can make it block, read what the user did not name, or grow memory without
//! bound:
//!
//! * [`read_regular`] (the watched folder): opens with `O_NOFOLLOW | O_NONBLOCK`, so a
//!   symbolic link is refused by the kernel and a FIFO cannot block the open; checks
//!   that the *opened* descriptor is a regular file (no race between a check and the
//!   open); reads at most `cap + 1` bytes, so `/dev/zero`-like files cannot grow
//!   memory; and tells whether the file changed while it was read.
//! * [`read_found`] (a file found in a folder the user named, e.g. `apply -f DIR`):
//!   follows links like kubectl, but opens without blocking and reads regular files
//!   only, with the same cap.
//! * [`read_named`] (a file the user named on the command line, e.g. `apply -f`):
//!   follows links and reads FIFOs (`apply -f <(kustomize build)` is legitimate), but
//!   never a directory, and with the same hard cap.
//!
//! Trade-off: the cap is checked on the bytes read, not only on the size the file
//! claims (a device or `/proc` file claims 0 bytes).

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is a symbolic link (only refused where links are not followed).
    #[error("is a symbolic link; not followed")]
    Symlink,
    /// Not a regular file: a FIFO, socket, device or directory.
    #[error("is not a regular file but a {0}; not read")]
    NotRegular(&'static str),
    /// More than the cap.
    #[error("is larger than {cap} bytes; not read")]
    TooLarge {
        /// The cap in bytes.
        cap: u64,
        /// The size the file claims, when it claims more than the cap.
        size: Option<u64>,
    },
    /// The operating system refused (not found, permission, ...).
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// True when the file does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What [`read_regular`] read.
#[derive(Debug)]
pub struct Snapshot {
    /// The content (at most the cap).
    pub bytes: Vec<u8>,
    /// Size or change time differed between before and after the read: the file was
    /// being written.
    pub changed_while_read: bool,
    /// The last change of the file's content or metadata (ctime on Unix, which no
    /// tool can set back; the modification time elsewhere).
    pub changed_at: Option<SystemTime>,
}

/// The kind of a file, for messages.
pub fn kind_name(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_char_device() {
            return "character device";
        }
        if ft.is_block_device() {
            return "block device";
        }
    }
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// When the file last changed (content or metadata).
fn changed_at(m: &Metadata) -> Option<SystemTime> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let secs = u64::try_from(m.ctime()).ok()?;
        let nanos = u32::try_from(m.ctime_nsec()).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
    }
    #[cfg(not(unix))]
    {
        m.modified().ok()
    }
}

/// Reads at most `cap` bytes from `f`; more is an error.
fn read_capped(f: impl Read, cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    f.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap, size: None });
    }
    Ok(buf)
}

/// Reads a regular file that is not a symbolic link, without blocking, at most `cap`
/// bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Snapshot, ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = match opts.open(path) {
        Ok(f) => f,
        // O_NOFOLLOW on a link fails with ELOOP; say what it is.
        Err(e) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            let _ = e;
            return Err(ReadError::Symlink);
        }
        Err(e) => return Err(e.into()),
    };
    let before = f.metadata()?;
    if !before.is_file() {
        return Err(ReadError::NotRegular(kind_name(&before)));
    }
    if before.len() > cap {
        return Err(ReadError::TooLarge { cap, size: Some(before.len()) });
    }
    let bytes = read_capped(&f, cap)?;
    let after = f.metadata()?;
    let changed_while_read =
        before.len() != after.len() || changed_at(&before) != changed_at(&after) || bytes.len() as u64 != after.len();
    Ok(Snapshot { bytes, changed_while_read, changed_at: changed_at(&after) })
}

/// Reads a file found by walking a folder the user named: links are followed (as
/// `kubectl apply -f DIR` does), but the target must be a regular file, and the open
/// does not block (a FIFO in the folder cannot hang the command). At most `cap` bytes.
pub fn read_found(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let f = opts.open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(ReadError::NotRegular(kind_name(&m)));
    }
    if m.len() > cap {
        return Err(ReadError::TooLarge { cap, size: Some(m.len()) });
    }
    read_capped(f, cap)
}

/// Reads a file the user named: links are followed and FIFOs read (to their end),
/// directories refused, at most `cap` bytes.
pub fn read_named(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let f = File::open(path)?;
    let m = f.metadata()?;
    if m.is_dir() {
        return Err(ReadError::NotRegular("directory"));
    }
    if m.is_file() && m.len() > cap {
        return Err(ReadError::TooLarge { cap, size: Some(m.len()) });
    }
    read_capped(f, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_refuses_more_than_the_cap() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("a.yaml");
        std::fs::write(&p, "12345").expect("write");
        let s = read_regular(&p, 5).expect("read");
        assert_eq!(s.bytes, b"12345");
        assert!(!s.changed_while_read);
        assert!(s.changed_at.is_some());
        assert!(matches!(read_regular(&p, 4), Err(ReadError::TooLarge { cap: 4, .. })));
        assert_eq!(read_named(&p, 5).expect("named"), b"12345");
        assert!(matches!(read_named(&p, 4), Err(ReadError::TooLarge { cap: 4, .. })));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_fifos_and_devices_without_blocking() {
        let d = tempfile::tempdir().expect("tmp");
        let target = d.path().join("t.yaml");
        std::fs::write(&target, "x: 1").expect("write");
        let link = d.path().join("l.yaml");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(read_regular(&link, 100), Err(ReadError::Symlink)));
        let fifo = d.path().join("f.yaml");
        let st =
            std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils) must be installed");
        assert!(st.success());
        // No writer: a blocking open would hang here for ever.
        assert!(matches!(read_regular(&fifo, 100), Err(ReadError::NotRegular("FIFO"))));
        assert!(matches!(read_regular(Path::new("/dev/null"), 100), Err(ReadError::NotRegular("character device"))));
        assert!(matches!(read_regular(d.path(), 100), Err(ReadError::NotRegular("directory"))));
        assert!(read_regular(&d.path().join("none.yaml"), 100).expect_err("missing").is_not_found());
    }

    #[cfg(unix)]
    #[test]
    fn a_found_file_must_be_regular_after_links() {
        let d = tempfile::tempdir().expect("tmp");
        let fifo = d.path().join("f.yaml");
        let st =
            std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils) must be installed");
        assert!(st.success());
        let link = d.path().join("l.yaml");
        std::os::unix::fs::symlink(&fifo, &link).expect("symlink");
        assert!(matches!(read_found(&link, 100), Err(ReadError::NotRegular("FIFO"))));
        let zero = d.path().join("z.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert!(matches!(read_found(&zero, 100), Err(ReadError::NotRegular("character device"))));
        let file = d.path().join("a.yaml");
        std::fs::write(&file, "x: 1").expect("write");
        std::os::unix::fs::symlink(&file, d.path().join("b.yaml")).expect("symlink");
        assert_eq!(read_found(&d.path().join("b.yaml"), 100).expect("read"), b"x: 1");
    }

    #[cfg(unix)]
    #[test]
    fn a_named_endless_file_stops_at_the_cap() {
        // /dev/zero claims size 0 and never ends: the cap must hold anyway.
        assert!(matches!(
            read_named(Path::new("/dev/zero"), 1 << 20),
            Err(ReadError::TooLarge { cap: 1048576, size: None })
        ));
        assert!(matches!(read_named(Path::new("/"), 10), Err(ReadError::NotRegular("directory"))));
    }
}
