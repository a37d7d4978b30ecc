//! The C++ gRPC client of the end-to-end tests (tests/cpp/echo_client.cc), built with g++
//! against Debian's grpc++ (`libgrpc++-dev`).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

/// What the client needs: the compiler, grpc++ and pkg-config to find it.
const PACKAGES: &[&str] = &["g++", "libgrpc++-dev", "pkg-config"];

/// The built client, rebuilt on every run (a few seconds).
pub fn ensure_cpp_client() -> Result<PathBuf> {
    let dir = super::prepare(PACKAGES, "C++ client", "cpp-echo-client")?;
    let binary = dir.join("echo-client");
    let source = super::test_source("cpp/echo_client.cc");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "grpc++"])
        .output()
        .context("running pkg-config for grpc++")?;
    anyhow::ensure!(flags.status.success(), "pkg-config knows no grpc++");
    let flags = String::from_utf8(flags.stdout).context("pkg-config's flags")?;
    super::build(
        Command::new("g++")
            .args(["-std=c++17", "-O1", "-o"])
            .arg(&binary)
            .arg(&source)
            .args(flags.split_whitespace()),
        "C++ client",
    )?;
    Ok(binary)
}
