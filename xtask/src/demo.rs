//! `cargo xtask demo`: build everything, start the bundled example server, and watch the
//! tracer report the calls of the bundled example client (launched by the tracer itself).

use std::process::Command;

use anyhow::{Context as _, Result, bail};

pub fn run() -> Result<()> {
    let release = crate::example::build()?;
    let (mut server, address) = crate::example::start_server(&release, None)?;
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
