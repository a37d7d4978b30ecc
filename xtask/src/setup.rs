//! Provisioning the eBPF toolchain, idempotently: every step checks before it acts.

use std::{fs, os::unix::fs::symlink, process::Command};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::ebpf_toolchain::{BPF_LINKER_VERSION, NightlyLlvm};

pub fn run() -> Result<()> {
    let nightly = NightlyLlvm::detect().map_err(|err| {
        anyhow!("{err}\nthe eBPF programs are built with the `nightly` toolchain; install it with rustup")
    })?;
    ensure_rust_src()?;
    ensure_bpf_linker(&nightly)?;
    Ok(())
}

/// `-Z build-std=core` for the bpf target needs the standard library's sources.
fn ensure_rust_src() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.starts_with("rust-src"))
    {
        return Ok(());
    }
    crate::install::announce(
        "rust-src for the nightly toolchain",
        "rustup",
        "to build the eBPF programs' core library",
    );
    crate::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// bpf-linker must use the very LLVM the nightly compiler emits bitcode for. No prebuilt binary
/// can be downloaded, so build it against the nightly's own libLLVM: give cargo an LLVM prefix
/// whose `lib/` holds that library under the names the build looks for.
fn ensure_bpf_linker(nightly: &NightlyLlvm) -> Result<()> {
    let linker = nightly.bpf_linker_bin_dir().join("bpf-linker");
    if linker.is_file() && linker_works(&linker) {
        return Ok(());
    }
    let library = nightly.sysroot.join("lib").join(nightly.library_name());
    if !library.is_file() {
        bail!(
            "the nightly toolchain has no {} to build bpf-linker against",
            library.display()
        );
    }
    let prefix_lib = nightly.llvm_prefix().join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    for name in ["libLLVM.so".to_owned(), nightly.library_name()] {
        let link = prefix_lib.join(name);
        if fs::read_link(&link).ok().as_deref() != Some(library.as_path()) {
            let _ = fs::remove_file(&link);
            symlink(&library, &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    crate::install::announce(
        &format!(
            "bpf-linker {BPF_LINKER_VERSION}, built against the nightly's LLVM {}, into {}",
            nightly.llvm_major_minor,
            nightly.bpf_linker_root().display()
        ),
        "crates.io",
        "to link the eBPF programs (a few minutes)",
    );
    crate::run(
        Command::new(env!("CARGO"))
            .args([
                "install",
                "--locked",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{}", nightly.llvm_major),
            ])
            .arg("--root")
            .arg(nightly.bpf_linker_root())
            .env("LLVM_PREFIX", nightly.llvm_prefix()),
    )?;
    if !linker_works(&linker) {
        bail!("{} was built but does not run", linker.display());
    }
    Ok(())
}

fn linker_works(linker: &std::path::Path) -> bool {
    Command::new(linker)
        .arg("--version")
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).contains(BPF_LINKER_VERSION)
        })
}
