//! An example client (Python, Go) as a child process of a test, held before its calls: it
//! connects and warms up, prints `ready` and waits for a line on stdin, so that the tracer can
//! attach to a warm process before the calls the test checks.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
};

/// Starts `command`; returns once it printed `ready`, before its calls.
pub fn start(command: &mut Command, who: &str) -> Child {
    let mut client = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {who}: {error}"));
    let mut line = String::new();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    stdout.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "{who} did not start");
    client.stdout = Some(stdout.into_inner());
    client
}

/// Lets a [`start`]ed client make its calls; returns its lines once it exited.
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
