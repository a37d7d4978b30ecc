//! The Python grpcio client of the end-to-end tests runs in a virtualenv the project makes for
//! itself, with grpcio from PyPI.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::ebpf_toolchain::cache_dir;

pub const GRPCIO_VERSION: &str = "1.85.1";

/// The virtualenv's python, creating the virtualenv and installing grpcio if needed.
pub fn ensure_grpcio_python() -> Result<PathBuf> {
    let venv = cache_dir().join(format!("python-grpcio-{GRPCIO_VERSION}"));
    let python = venv.join("bin/python");
    let ready = |python: &PathBuf| {
        Command::new(python)
            .args([
                "-c",
                &format!("import grpc, sys; sys.exit(grpc.__version__ != '{GRPCIO_VERSION}')"),
            ])
            .status()
            .is_ok_and(|status| status.success())
    };
    if python.is_file() && ready(&python) {
        return Ok(python);
    }
    crate::install::announce(
        &format!(
            "grpcio {GRPCIO_VERSION} into a virtualenv in {}",
            venv.display()
        ),
        "PyPI",
        "for the Python client and server of the end-to-end tests",
    );
    crate::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("creating the Python virtualenv (python3 -m venv)")?;
    crate::run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("grpcio=={GRPCIO_VERSION}"),
    ]))
    .context("installing grpcio from PyPI")?;
    anyhow::ensure!(
        ready(&python),
        "grpcio {GRPCIO_VERSION} did not import in {}",
        venv.display()
    );
    Ok(python)
}
