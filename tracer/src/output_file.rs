//! Files the tracer writes (`--output-file`, `--stats-json`). It runs as root, often in
//! directories others can write to: a file is opened without following a symlink planted at
//! its path (which could point it at any file on the machine), and created readable by its
//! owner only, since spans and reports describe another process's traffic.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

/// Creates `path`, or empties it if it exists, for writing; mode 0600 (less the umask) when
/// created. Refuses a path whose last component is a symlink.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| {
            // O_NOFOLLOW on a symlink fails with ELOOP (or EACCES, in a sticky directory), which
            // says nothing useful by itself.
            let is_link = path
                .symlink_metadata()
                .is_ok_and(|metadata| metadata.file_type().is_symlink());
            if is_link {
                io::Error::other("it is a symbolic link, which the tracer does not follow")
            } else {
                error
            }
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    #[test]
    fn a_file_is_private_and_a_symlink_is_refused() {
        let directory = std::env::temp_dir().join(format!("tracer-files-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let victim = directory.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let link = directory.join("spans.jsonl");
        symlink(&victim, &link).unwrap();
        let error = create(&link).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let report = directory.join("report.json");
        create(&report).unwrap();
        let mode = std::fs::metadata(&report).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
