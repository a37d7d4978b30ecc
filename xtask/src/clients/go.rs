//! The Go gRPC client of the end-to-end tests (tests/go/echo_client.go), built with grpc-go
//! from Debian's archive (`golang-google-grpc-dev` and the Go toolchain), in GOPATH mode
//! against the sources Debian installs.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

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
    let dir = super::prepare(PACKAGES, "Go client", "go-echo-client")?;
    let binary = dir.join("echo-client");
    let source = super::test_source("go/echo_client.go");
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
