//! Where the sinks that print one line per call (console and JSON lines) write: stdout, or the
//! file given by `--output-file`.
//!
//! Lines leave whole. A command the tracer launches writes to the same stdout, and what it
//! writes must not land inside one of our lines. The kernel never splits a write(2) to a file
//! or a terminal around another process's write, but it may split a write to a pipe or socket
//! once that write is over `PIPE_BUF` bytes. Every write is therefore made of whole lines, and
//! a write to a pipe or socket holds at most `PIPE_BUF` bytes (or one longer line).
//!
//! A line that cannot be written (a closed pipe, a full disk) is counted, never lost silently.
//! In a file, what part of a write got in before the disk filled up is cut off again, so the
//! file only ever holds whole lines.

use std::{
    fs::File,
    io::{self, IsTerminal as _, Seek as _},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::fs::FileTypeExt as _,
    },
    path::PathBuf,
};

/// Bytes gathered before a write to a file or a terminal: big writes, few system calls.
const FILE_WRITE_BYTES: usize = 64 * 1024;

/// Where the lines go.
#[derive(Debug)]
pub enum LineDestination {
    Stdout,
    /// A file opened (and truncated) before tracing starts, so that a bad path fails early.
    File {
        file: File,
        path: PathBuf,
    },
}

impl LineDestination {
    /// Whether a person is likely reading the lines as they come (worth colouring them).
    pub fn is_terminal(&self) -> bool {
        match self {
            LineDestination::Stdout => io::stdout().is_terminal(),
            LineDestination::File { file, .. } => file.is_terminal(),
        }
    }
}

pub struct LineOutput<Out: io::Write = Box<dyn io::Write>> {
    out: Out,
    /// The destination as the warning about a failed write names it.
    name: String,
    /// Whole lines not written yet.
    pending: Vec<u8>,
    pending_lines: u64,
    /// The most bytes one write may carry and still reach the reader in one piece.
    write_limit: usize,
    written: u64,
    not_written: u64,
    warned: bool,
    /// For a regular file: the file again, and the bytes of whole lines in it, to cut a write
    /// that failed half-way back to.
    rollback: Option<(File, u64)>,
}

impl LineOutput {
    pub fn new(destination: LineDestination) -> LineOutput {
        let (out, name, pipe, rollback): (Box<dyn io::Write>, String, bool, _) = match destination {
            LineDestination::Stdout => {
                let stdout = io::stdout();
                let pipe = is_pipe_or_socket(stdout.as_fd());
                let rollback = rollback_for(stdout.as_fd());
                (Box::new(stdout), "stdout".to_owned(), pipe, rollback)
            }
            LineDestination::File { file, path } => {
                let pipe = is_pipe_or_socket(file.as_fd());
                let rollback = rollback_for(file.as_fd());
                (Box::new(file), path.display().to_string(), pipe, rollback)
            }
        };
        let write_limit = if pipe {
            libc::PIPE_BUF
        } else {
            FILE_WRITE_BYTES
        };
        let mut output = LineOutput::with_output(out, name, write_limit);
        output.rollback = rollback;
        output
    }
}

/// For a regular file: the file again (sharing its position) and where its whole lines end.
fn rollback_for(fd: BorrowedFd<'_>) -> Option<(File, u64)> {
    let mut file = File::from(fd.try_clone_to_owned().ok()?);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let whole = file.stream_position().ok()?;
    Some((file, whole))
}

impl<Out: io::Write> LineOutput<Out> {
    fn with_output(out: Out, name: String, write_limit: usize) -> LineOutput<Out> {
        LineOutput {
            out,
            name,
            pending: Vec::with_capacity(write_limit),
            pending_lines: 0,
            write_limit,
            written: 0,
            not_written: 0,
            warned: false,
            rollback: None,
        }
    }

    /// Adds one line: `write` appends it, newline included.
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.pending.len();
        write(&mut self.pending);
        debug_assert!(self.pending.ends_with(b"\n"), "a line ends with a newline");
        if self.pending.len() > self.write_limit && start > 0 {
            // The lines before this one fill a write.
            self.write_out(start, self.pending_lines);
        }
        self.pending_lines += 1;
    }

    /// Writes every pending line.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.write_out(self.pending.len(), self.pending_lines);
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines that could not be written.
    pub fn not_written(&self) -> u64 {
        self.not_written
    }

    /// Writes the first `bytes` of the pending lines, which hold `lines` whole lines.
    fn write_out(&mut self, bytes: usize, lines: u64) {
        // Stdout's own line buffer passes text that ends in a newline straight through, in one
        // write(2) unless interrupted.
        match self.out.write_all(&self.pending[..bytes]) {
            Ok(()) => {
                self.written += lines;
                if let Some((_, whole)) = &mut self.rollback {
                    *whole += bytes as u64;
                }
            }
            Err(error) => {
                self.not_written += lines;
                if let Some((file, whole)) = &mut self.rollback {
                    // Part of the write may have got in: cut it off, and write on from there.
                    let _ = file.set_len(*whole);
                    let _ = file.seek(io::SeekFrom::Start(*whole));
                }
                if !self.warned {
                    self.warned = true;
                    log::warn!(
                        "cannot write to {} ({error}); the report counts the calls that could \
                         not be printed",
                        self.name
                    );
                }
            }
        }
        self.pending.drain(..bytes);
        self.pending_lines -= lines;
    }
}

fn is_pipe_or_socket(fd: BorrowedFd<'_>) -> bool {
    let kind = fd
        .try_clone_to_owned()
        .and_then(|fd| File::from(fd).metadata())
        .map(|metadata| metadata.file_type());
    match kind {
        Ok(kind) => kind.is_fifo() || kind.is_socket(),
        // Small writes are the safe choice.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each write as it came, or fails every write.
    struct Writes {
        writes: Vec<Vec<u8>>,
        broken: bool,
    }

    impl io::Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.broken {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.writes.push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines of at most 100 bytes a write, into `Writes`.
    fn lines_into(broken: bool) -> LineOutput<Writes> {
        let writes = Writes {
            writes: Vec::new(),
            broken,
        };
        LineOutput::with_output(writes, "test".to_owned(), 100)
    }

    fn line(length: usize) -> impl FnOnce(&mut Vec<u8>) {
        move |out: &mut Vec<u8>| {
            out.extend(std::iter::repeat_n(b'x', length - 1));
            out.push(b'\n');
        }
    }

    #[test]
    fn every_write_is_whole_lines_within_the_limit() {
        let mut lines = lines_into(false);
        for length in [30, 30, 30, 30, 150, 10, 99, 1, 60] {
            lines.push(line(length));
        }
        lines.flush();
        let writes = &lines.out.writes;
        assert_eq!(
            writes.iter().map(Vec::len).collect::<Vec<_>>(),
            // Each write takes the next lines while they fit; the 150-byte line goes alone.
            [90, 30, 150, 10, 100, 60]
        );
        assert!(writes.iter().all(|write| write.ends_with(b"\n")));
        assert_eq!((lines.written(), lines.not_written()), (9, 0));
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted() {
        let mut lines = lines_into(true);
        for _ in 0..5 {
            lines.push(line(40));
        }
        lines.flush();
        assert_eq!((lines.written(), lines.not_written()), (0, 5));
        assert!(lines.pending.is_empty());
    }
}
