//! Where the eBPF toolchain lives. Shared (through `#[path]`) by xtask, which provisions it, and
//! by `tracer/build.rs`, which uses it; std only, so both can include it.

use std::{env, path::PathBuf, process::Command};

/// bpf-linker release that is built against the nightly's own LLVM.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The nightly toolchain's identity, as far as bpf-linker cares: its LLVM library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyLlvm {
    /// e.g. `1.97.0-nightly`
    pub rustc_release: String,
    /// e.g. `22`
    pub llvm_major: String,
    /// e.g. `22.1`
    pub llvm_major_minor: String,
    /// The toolchain's sysroot, where `lib/libLLVM.so.*` lives.
    pub sysroot: PathBuf,
}

impl NightlyLlvm {
    /// Asks `rustc +nightly -vV` (through rustup, so a stable `RUSTC` does not interfere).
    pub fn detect() -> Result<NightlyLlvm, String> {
        let verbose = run(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
        let field = |name: &str| {
            verbose
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .ok_or_else(|| format!("`rustc +nightly -vV` printed no `{name}` line"))
        };
        let rustc_release = field("release:")?;
        let llvm_version = field("LLVM version:")?;
        let mut parts = llvm_version.split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(format!("unexpected LLVM version `{llvm_version}`"));
        };
        let sysroot =
            run(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
        Ok(NightlyLlvm {
            rustc_release,
            llvm_major: major.to_owned(),
            llvm_major_minor: format!("{major}.{minor}"),
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    /// The file name rustup gives the nightly's LLVM library, e.g.
    /// `libLLVM.so.22.1-rust-1.97.0-nightly`.
    pub fn library_name(&self) -> String {
        format!(
            "libLLVM.so.{}-rust-{}",
            self.llvm_major_minor, self.rustc_release
        )
    }

    /// Names directories after the LLVM they belong to, so a nightly update gets a fresh linker.
    fn tag(&self) -> String {
        format!("llvm-{}-rust-{}", self.llvm_major_minor, self.rustc_release)
    }

    /// A directory laid out like an LLVM install (`lib/libLLVM.so`), for bpf-linker's build.
    pub fn llvm_prefix(&self) -> PathBuf {
        cache_dir().join(self.tag())
    }

    /// `cargo install --root` of the matching bpf-linker.
    pub fn bpf_linker_root(&self) -> PathBuf {
        cache_dir().join(format!("bpf-linker-{BPF_LINKER_VERSION}-{}", self.tag()))
    }

    pub fn bpf_linker_bin_dir(&self) -> PathBuf {
        self.bpf_linker_root().join("bin")
    }
}

/// Per-user cache for tools the project builds for itself.
pub fn cache_dir() -> PathBuf {
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(env::temp_dir);
    base.join("grpc-tracer")
}

fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|err| format!("{command:?}: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|err| format!("{command:?}: {err}"))
}
