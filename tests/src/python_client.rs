//! The example Python client (`tests/python/echo_client.py`, grpcio) as a child process of a
//! test, held before its calls until the test is ready for them.

use std::{
    path::PathBuf,
    process::{Child, Command},
};

use crate::waiting_client;
pub use crate::waiting_client::release_and_collect;

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/echo_client.py")
}

/// Starts the client of `target` with `python`, after `warmup` calls and with `args`; returns
/// once it printed `ready`, before its calls.
pub fn waiting(python: &str, target: &str, warmup: u32, args: &[&str]) -> Child {
    waiting_client::start(
        Command::new(python)
            .arg(script())
            .arg(target)
            .args(["--warmup", &warmup.to_string(), "--wait"])
            .args(args),
        "the Python client",
    )
}
