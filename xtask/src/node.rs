//! The Node.js gRPC client of the end-to-end tests (tests/node) uses grpc-js, which the
//! project installs from npm into its own cache directory.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::ebpf_toolchain::cache_dir;

pub const GRPC_JS_VERSION: &str = "1.14.7";

/// A `node_modules` directory holding @grpc/grpc-js, for `NODE_PATH`; installed if needed.
pub fn ensure_grpc_js() -> Result<PathBuf> {
    let prefix = cache_dir().join(format!("node-grpc-js-{GRPC_JS_VERSION}"));
    let modules = prefix.join("node_modules");
    let ready = |modules: &PathBuf| {
        Command::new("node")
            .args(["-e", "require('@grpc/grpc-js')"])
            .env("NODE_PATH", modules)
            .status()
            .is_ok_and(|status| status.success())
    };
    if ready(&modules) {
        return Ok(modules);
    }
    crate::install::announce(
        &format!("@grpc/grpc-js {GRPC_JS_VERSION} into {}", prefix.display()),
        "npm",
        "for the Node.js client of the end-to-end tests",
    );
    std::fs::create_dir_all(&prefix)?;
    crate::run(
        Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(format!("@grpc/grpc-js@{GRPC_JS_VERSION}")),
    )
    .context("installing @grpc/grpc-js from npm")?;
    anyhow::ensure!(
        ready(&modules),
        "@grpc/grpc-js did not load from {}",
        modules.display()
    );
    Ok(modules)
}
