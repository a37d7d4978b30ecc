//! The bundled example programs (from the `integration-tests` package), for the demo and the
//! benchmark.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use anyhow::{Context as _, Result};

/// Builds the tracer and the example binaries (release) and returns their directory.
pub fn build() -> Result<PathBuf> {
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "tracer",
        "--package",
        "integration-tests",
        "--bins",
    ])?;
    Ok(crate::workspace_root().join("target/release"))
}

/// Starts the example gRPC server on a free loopback port, on `cpu` if given; returns it and its
/// address.
pub fn start_server(release: &Path, cpu: Option<usize>) -> Result<(Child, String)> {
    let mut server = crate::bench::placement::command_on(cpu, release.join("echo-server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the example server (echo-server)")?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("listening ")
        .context("the example server did not start")?
        .to_owned();
    Ok((server, address))
}
