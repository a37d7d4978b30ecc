//! A self-signed certificate for `localhost` and 127.0.0.1, made once with `openssl` into a
//! cache directory, for the TLS servers the bench and the VM guests run.

use std::{fs, path::Path, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

/// `directory`'s `cert.pem` and `key.pem`, made if missing.
pub fn self_signed(directory: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (directory.join("cert.pem"), directory.join("key.pem"));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    fs::create_dir_all(directory)?;
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl")?;
    if !made.status.success() {
        bail!(
            "openssl could not make a certificate in {}: {made:?}",
            directory.display()
        );
    }
    Ok((cert, key))
}
