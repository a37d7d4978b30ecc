//! `cargo xtask fuzz`: runs the cargo-fuzz target over frames, HPACK and call assembly.
//! cargo-fuzz is installed from crates.io into the project's tool cache on first use.

use std::process::Command;

use anyhow::Result;

use crate::ebpf_toolchain::cache_dir;

pub fn run(seconds: u64) -> Result<()> {
    let root = cache_dir().join("cargo-fuzz");
    let bin = root.join("bin");
    if !bin.join("cargo-fuzz").is_file() {
        crate::run(
            Command::new(env!("CARGO"))
                .args(["install", "--locked", "cargo-fuzz", "--root"])
                .arg(&root),
        )?;
    }
    // Fuzz a scratch copy so the committed corpus only grows deliberately.
    let fuzz_dir = crate::workspace_root().join("tracer/fuzz");
    let work = std::env::temp_dir().join("grpc-tracer-fuzz-corpus");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    for entry in std::fs::read_dir(fuzz_dir.join("corpus/connection"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), work.join(entry.file_name()))?;
    }
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    crate::run(
        Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "connection"])
            .arg(&work)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(&fuzz_dir)
            .env("PATH", path),
    )
}
