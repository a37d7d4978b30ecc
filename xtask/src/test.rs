//! `cargo xtask test`: unit tests (no privileges), a fuzz-corpus replay, then the integration
//! tests that load the real eBPF programs and need root.

use anyhow::{Result, bail};

pub fn run(filter: Option<&str>) -> Result<()> {
    let mut unit = vec!["test", "--workspace", "--exclude", "integration-tests"];
    unit.extend(filter);
    crate::cargo(&unit)?;

    if !is_root() {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    crate::build_release()?;
    let python = crate::python::ensure_grpcio_python()?;
    // They share kernel state (tracepoints, traced processes): one at a time.
    let mut integration = vec!["test", "--package", "integration-tests"];
    integration.extend(filter);
    integration.extend(["--", "--test-threads=1"]);
    crate::run(
        std::process::Command::new(env!("CARGO"))
            .args(&integration)
            .current_dir(crate::workspace_root())
            .env("TRACER_TEST_PYTHON", python),
    )
}

pub fn is_root() -> bool {
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}
