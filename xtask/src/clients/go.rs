//! The Go gRPC client of the end-to-end tests (tests/go/echo_client.go), built with grpc-go
//! from Debian's archive (`golang-google-grpc-dev` and the Go toolchain), in GOPATH mode
//! against the sources Debian installs.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::ebpf_toolchain::cache_dir;

/// What the client needs: the toolchain, grpc-go, and the protobuf runtime it builds with.
const PACKAGES: &[&str] = &[
    "golang-go",
    "golang-google-grpc-dev",
    "golang-github-golang-protobuf-1-5-dev",
];
/// Where Debian's Go packages put their sources.
const GOPATH: &str = "/usr/share/gocode";

/// The built example client (tests/go/echo_client.go), rebuilt on every run (Go's build cache
/// makes that a second).
pub fn ensure_go_client() -> Result<PathBuf> {
    if !crate::install::debian_packages(PACKAGES, "for the Go client of the end-to-end tests") {
        anyhow::bail!("grpc-go and the Go toolchain ({PACKAGES:?}) could not be installed");
    }
    let dir = cache_dir().join("go-echo-client");
    std::fs::create_dir_all(&dir)?;
    let binary = dir.join("echo-client");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/go/echo_client.go");
    super::build(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env("GOPATH", GOPATH)
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("build-cache")),
        "Go client",
    )?;
    Ok(binary)
}
