//! The example server (`echo-server`) as a child process of a test.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// A running `echo-server` on a free loopback port; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl ServerProcess {
    /// Starts `binary` (a test's `env!("CARGO_BIN_EXE_echo-server")`), allowing `max_streams`
    /// concurrent streams per connection if given, and waits until it listens.
    pub fn start(binary: impl AsRef<Path>, max_streams: Option<u32>) -> ServerProcess {
        let mut command = Command::new(binary.as_ref());
        command.arg("127.0.0.1:0");
        if let Some(max_streams) = max_streams {
            command.arg(max_streams.to_string());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start echo-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("server address");
        let address = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening line")
            .to_owned();
        ServerProcess { child, address }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
