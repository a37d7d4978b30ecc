//! A self-signed certificate made for one test run (with `openssl`), for `localhost` and
//! 127.0.0.1, in a directory of its own that goes with it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct Certificate {
    directory: PathBuf,
}

impl Certificate {
    pub fn make(label: &str) -> Certificate {
        let directory =
            std::env::temp_dir().join(format!("tracer-cert-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let certificate = Certificate { directory };
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(certificate.key())
            .arg("-out")
            .arg(certificate.cert())
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "openssl: {made:?}");
        certificate
    }

    pub fn cert(&self) -> PathBuf {
        self.directory.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.directory.join("key.pem")
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
