//! The Python grpcio client of the end-to-end tests runs in a virtualenv the project makes for
//! itself, with grpcio from PyPI.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::ebpf_toolchain::cache_dir;

pub const GRPCIO_VERSION: &str = "1.85.1";

/// Older grpcio releases the TLS tests also trace, each in a virtualenv of its own: the
/// stripped BoringSSL in each is found without data about any one build.
pub const OLDER_GRPCIO_VERSIONS: [&str; 2] = ["1.60.0", "1.70.0"];

/// The virtualenv's python, creating the virtualenv and installing grpcio if needed.
pub fn ensure_grpcio_python() -> Result<PathBuf> {
    ensure_grpcio_release(
        GRPCIO_VERSION,
        "for the Python client and server of the end-to-end tests",
    )
}

/// Pythons with the [`OLDER_GRPCIO_VERSIONS`].
pub fn ensure_older_grpcio_pythons() -> Result<Vec<PathBuf>> {
    OLDER_GRPCIO_VERSIONS
        .iter()
        .map(|version| ensure_grpcio_release(version, "for the TLS tests on older grpcio releases"))
        .collect()
}

/// A virtualenv's python with grpcio `version`, made and installed if needed.
fn ensure_grpcio_release(version: &str, why: &str) -> Result<PathBuf> {
    let venv = cache_dir().join(format!("python-grpcio-{version}"));
    let python = venv.join("bin/python");
    let ready = |python: &PathBuf| {
        Command::new(python)
            .args([
                "-c",
                &format!("import grpc, sys; sys.exit(grpc.__version__ != '{version}')"),
            ])
            .status()
            .is_ok_and(|status| status.success())
    };
    if python.is_file() && ready(&python) {
        return Ok(python);
    }
    crate::install::announce(
        &format!("grpcio {version} into a virtualenv in {}", venv.display()),
        "PyPI",
        why,
    );
    crate::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("creating the Python virtualenv (python3 -m venv)")?;
    crate::run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("grpcio=={version}"),
    ]))
    .context("installing grpcio from PyPI")?;
    anyhow::ensure!(
        ready(&python),
        "grpcio {version} did not import in {}",
        venv.display()
    );
    Ok(python)
}
