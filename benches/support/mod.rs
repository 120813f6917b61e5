//! What more than one bench needs (each bench is its own crate: `mod support;`).

/// A temporary folder only this user can open (the store warns about a shared one).
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o700)).tempdir().expect("temp dir")
}
