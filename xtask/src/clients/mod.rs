//! The compiled example clients of the end-to-end tests (tests/go, tests/cpp, tests/java),
//! each built against its gRPC stack as Debian's archive ships it, into the project's cache
//! directory.

mod cpp;
mod go;
mod java;

pub use cpp::ensure_cpp_client;
pub use go::ensure_go_client;
pub use java::ensure_java_client;

/// The cache directory `name` of `client` (created), once the Debian `packages` it is built
/// with are installed.
fn prepare(packages: &[&str], client: &str, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let why = format!("for the {client} of the end-to-end tests");
    if !crate::install::debian_packages(packages, &why) {
        anyhow::bail!("the {client}'s packages ({packages:?}) could not be installed");
    }
    let dir = crate::ebpf_toolchain::cache_dir().join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The file at `path` under tests/.
fn test_source(path: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests")
        .join(path)
}

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
