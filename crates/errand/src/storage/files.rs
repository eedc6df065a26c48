//! Files that hold customer data (the SQLite database, the master key, e-mails): only
//! the user Errand runs as may read them. New directories are made 0700 and the
//! database file 0600 (SQLite gives its `-wal` and `-shm` files the database file's
//! mode); existing ones more open than that are left as they are, with a warning at
//! start.

use std::path::Path;

use anyhow::Context;

/// Creates `dir` (and its parents) readable by its owner only; warns when it exists
/// and others may read it.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        warn_if_open(dir, "directory", 0o700);
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

/// Creates the empty file `path` readable and writable by its owner only, unless it
/// exists (then warns when others may read it).
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_open(path, "file", 0o600);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(unix)]
fn warn_if_open(path: &Path, what: &str, wanted: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "this {what} holds customer data and other users may read it: chmod {wanted:o} it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_open(_: &Path, _: &str, _: u32) {}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_the_owners_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("errand.db");
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // An existing file is kept as it is (and its content too).
        std::fs::write(&file, b"data").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
        assert_eq!(mode(&file), 0o644);
    }
}
