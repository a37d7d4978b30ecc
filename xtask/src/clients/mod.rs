//! The compiled example clients of the end-to-end tests (tests/go, tests/cpp, tests/java),
//! each built against its gRPC stack as Debian's archive ships it, into the project's cache
//! directory.

mod cpp;
mod go;
mod java;

pub use cpp::ensure_cpp_client;
pub use go::ensure_go_client;
pub use java::ensure_java_client;

/// Runs a client's build `command`; its errors, if it fails, as the failure of `client`.
fn build(command: &mut std::process::Command, client: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let output = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    anyhow::ensure!(
        output.status.success(),
        "building the {client} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
