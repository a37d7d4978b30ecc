//! `cargo xtask demo`: build everything, start the bundled example server, and watch the
//! tracer report the calls of the bundled example client (launched by the tracer itself).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

pub fn run() -> Result<()> {
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "tracer",
        "--package",
        "integration-tests",
        "--bins",
    ])?;
    let release = crate::workspace_root().join("target/release");
    let mut server = Command::new(release.join("echo-server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the example server")?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("listening ")
        .context("the example server did not start")?
        .to_owned();
    eprintln!("xtask: example server on {address}; tracing the example client:\n");

    let mut tracer = Command::new(release.join("tracer"));
    // Loading eBPF programs needs root; go through sudo when we are not.
    if !crate::test::is_root() {
        eprintln!("xtask: the tracer needs root, using sudo");
        tracer = Command::new("sudo");
        tracer.arg(release.join("tracer"));
    }
    let status = tracer
        .args(["--output", "console", "--"])
        .arg(release.join("echo-client"))
        .args(["--demo", "--target", &format!("http://{address}")])
        .status()
        .context("running the tracer");
    let _ = server.kill();
    let _ = server.wait();
    let status = status?;
    if !status.success() {
        bail!("the tracer exited with {status}");
    }
    eprintln!(
        "\nxtask: that was `tracer -- COMMAND`. To trace a running process: sudo target/release/tracer --pid PID"
    );
    Ok(())
}
