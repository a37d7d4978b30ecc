//! The example Python client (`tests/python/echo_client.py`, grpcio) as a child process of a
//! test, held before its calls until the test is ready for them.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/echo_client.py")
}

/// Starts the client of `target` with `python`, after `warmup` calls and with `args`; returns
/// once it printed `ready`, before its calls.
pub fn waiting(python: &str, target: &str, warmup: u32, args: &[&str]) -> Child {
    let mut client = Command::new(python)
        .arg(script())
        .arg(target)
        .args(["--warmup", &warmup.to_string(), "--wait"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let mut line = String::new();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    stdout.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "the Python client did not start");
    client.stdout = Some(stdout.into_inner());
    client
}

/// Lets a [`waiting`] client make its calls; returns its lines once it exited.
pub fn release_and_collect(mut client: Child) -> Vec<String> {
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    let output = client.wait_with_output().expect("client output");
    assert!(output.status.success(), "client failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
