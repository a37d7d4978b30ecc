//! The server side of the TLS load: the Python example server (`tests/python/echo_server.py`)
//! on grpcio, over TLS with a certificate made for the bench.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
};

use anyhow::{Context as _, Result};

/// The running server; stopped when dropped.
pub(super) struct TlsServer {
    process: Child,
    /// Closing it stops the server.
    _stdin: ChildStdin,
    pub(super) python: PathBuf,
    /// `localhost:PORT`, the name its certificate is for.
    pub(super) target: String,
    pub(super) cert: PathBuf,
}

impl TlsServer {
    /// Makes a certificate in `directory` (once) and starts the server with it.
    pub(super) fn start(directory: &Path) -> Result<TlsServer> {
        let python = crate::python::ensure_grpcio_python()?;
        let (cert, key) = crate::certificate::self_signed(directory)?;
        let mut process = Command::new(&python)
            .arg(crate::workspace_root().join("tests/python/echo_server.py"))
            .arg(&cert)
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the Python example server")?;
        let stdin = process.stdin.take().expect("piped");
        let mut port = String::new();
        BufReader::new(process.stdout.take().expect("piped")).read_line(&mut port)?;
        let port: u16 = port
            .trim()
            .parse()
            .with_context(|| format!("the Python example server printed {port:?}"))?;
        Ok(TlsServer {
            process,
            _stdin: stdin,
            python,
            target: format!("localhost:{port}"),
            cert,
        })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
