//! The Java gRPC client of the end-to-end tests (tests/java/EchoClient.java), compiled with
//! javac against Debian's grpc-java (`libgrpc-java`) and Netty (`libnetty-java`), and run
//! through a launcher script holding its class path.

use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command};

use anyhow::Result;

/// What the client needs: a JDK, grpc-java, Netty, and the libraries grpc-java loads.
const PACKAGES: &[&str] = &[
    "default-jdk-headless",
    "libgrpc-java",
    "libnetty-java",
    "libguava-java",
    "libperfmark-java",
    "libgoogle-gson-java",
];
/// The jars of its class path, in /usr/share/java.
const JARS: &[&str] = &[
    "grpc-api",
    "grpc-context",
    "grpc-core",
    "grpc-netty",
    "guava",
    "gson",
    "perfmark-api",
    "netty-buffer",
    "netty-codec",
    "netty-codec-http",
    "netty-codec-http2",
    "netty-common",
    "netty-handler",
    "netty-resolver",
    "netty-transport",
];

/// The launcher of the compiled client (`echo-client TARGET ARGS...` runs `java EchoClient`,
/// as the process itself: exec), recompiled on every run.
pub fn ensure_java_client() -> Result<PathBuf> {
    let dir = super::prepare(PACKAGES, "Java client", "java-echo-client")?;
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes)?;
    let mut class_path = vec![classes.display().to_string()];
    for jar in JARS {
        let path = PathBuf::from("/usr/share/java").join(format!("{jar}.jar"));
        anyhow::ensure!(path.exists(), "{} is missing", path.display());
        class_path.push(path.display().to_string());
    }
    let class_path = class_path.join(":");
    let source = super::test_source("java/EchoClient.java");
    super::build(
        Command::new("javac")
            .args(["-nowarn", "-cp", &class_path, "-d"])
            .arg(&classes)
            .arg(&source),
        "Java client",
    )?;
    let launcher = dir.join("echo-client");
    std::fs::write(
        &launcher,
        format!("#!/bin/sh\nexec java -cp '{class_path}' EchoClient \"$@\"\n"),
    )?;
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))?;
    Ok(launcher)
}
