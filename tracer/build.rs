//! Builds the kernel programs (`tracer-ebpf`) with the nightly toolchain and bpf-linker, and
//! leaves the objects in OUT_DIR for `include_bytes_aligned!`: one for kernels with `bpf_loop`,
//! one for older ones.

use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};

#[allow(dead_code)]
#[path = "../xtask/src/ebpf_toolchain.rs"]
mod ebpf_toolchain;

fn main() -> anyhow::Result<()> {
    put_bpf_linker_on_path()?;
    let ebpf_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../tracer-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    // Twice: for kernels with bpf_loop (5.17+), and for older ones (tracer-ebpf/src/steps.rs).
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let bench_floors = env::var_os("CARGO_FEATURE_BENCH_FLOORS").is_some();
    for (bounded_loops, object) in [(true, "tracer-ebpf-bounded-loops"), (false, "tracer-ebpf")] {
        let features: Vec<&str> = [
            bounded_loops.then_some("bounded-loops"),
            bench_floors.then_some("bench-floors"),
        ]
        .into_iter()
        .flatten()
        .collect();
        aya_build::build_ebpf(
            [aya_build::Package {
                name: "tracer-ebpf",
                root_dir: ebpf_dir,
                features: &features,
                ..Default::default()
            }],
            aya_build::Toolchain::Nightly,
        )?;
        let built = out_dir.join("tracer-ebpf");
        // Nothing built under AYA_BUILD_SKIP.
        if object != "tracer-ebpf" && built.exists() {
            std::fs::rename(built, out_dir.join(object))?;
        }
    }
    Ok(())
}

/// The nested eBPF build links with `bpf-linker`. Prefer the one `cargo xtask setup` built
/// against the nightly's LLVM; otherwise rely on one already on PATH.
fn put_bpf_linker_on_path() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    if env::var_os("AYA_BUILD_SKIP").is_some() {
        return Ok(());
    }
    let nightly = ebpf_toolchain::NightlyLlvm::detect().map_err(|err| {
        anyhow!("{err}\nthe eBPF programs need the nightly toolchain: run `cargo xtask setup`")
    })?;
    let bin_dir = nightly.bpf_linker_bin_dir();
    if bin_dir.join("bpf-linker").is_file() {
        let path = env::var_os("PATH").unwrap_or_default();
        let joined = env::join_paths(std::iter::once(bin_dir).chain(env::split_paths(&path)))?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", joined) };
        return Ok(());
    }
    let on_path = env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("bpf-linker").is_file());
    if !on_path {
        return Err(anyhow!(
            "bpf-linker for LLVM {} not found: run `cargo xtask setup` (it builds one)",
            nightly.llvm_major_minor
        ));
    }
    Ok(())
}
