//! One readable line per finished call.

use super::{
    CallSink, ExportReport, ResourceInfo, WallClock,
    clock::time_of_day,
    line_output::{LineDestination, LineOutput},
    summary::format_duration,
};
use crate::grpc::{CallRecord, Code};

pub struct ConsoleSink {
    clock: WallClock,
    color: bool,
    out: LineOutput,
}

impl ConsoleSink {
    pub fn new(clock: WallClock, destination: LineDestination) -> ConsoleSink {
        ConsoleSink {
            clock,
            color: destination.is_terminal(),
            out: LineOutput::new(destination),
        }
    }

    pub fn line(&self, call: &CallRecord) -> String {
        let (status, color) = match call.code {
            Some(Code::OK) => ("OK".to_owned(), "\x1b[32m"),
            Some(code) => (code.name().to_owned(), "\x1b[31m"),
            // Failed, with the code unknown.
            None if call.failure_without_code().is_some() => ("ERROR?".to_owned(), "\x1b[31m"),
            None => ("?".to_owned(), "\x1b[33m"),
        };
        let status = if self.color {
            format!("{color}{status:<17}\x1b[0m")
        } else {
            format!("{status:<17}")
        };
        let peer = call
            .connection
            .peer
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let message = call
            .grpc_message
            .as_deref()
            .filter(|message| !message.is_empty() && call.code != Some(Code::OK));
        format!(
            "{}  {:<40} {status} {:>9}  out {} msg {:>7}  in {} msg {:>7}  {peer}{}",
            time_of_day(self.clock.to_unix_nanos(call.start_ns)),
            call.name(),
            format_duration(call.duration()),
            call.request.count,
            bytes(call.request.bytes),
            call.response.count,
            bytes(call.response.bytes),
            message
                .map(|message| format!("  \"{message}\""))
                .unwrap_or_default(),
        )
    }
}

fn bytes(count: u64) -> String {
    match count {
        0..1024 => format!("{count} B"),
        1024..1_048_576 => format!("{:.1} KiB", count as f64 / 1024.0),
        _ => format!("{:.1} MiB", count as f64 / 1_048_576.0),
    }
}

impl CallSink for ConsoleSink {
    fn on_call(&mut self, call: &CallRecord, _resource: &ResourceInfo) {
        let line = self.line(call);
        self.out.push(|out| {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        });
    }

    fn flush(&mut self) {
        self.out.flush();
    }

    fn finish(&mut self) -> ExportReport {
        self.out.flush();
        ExportReport {
            exported: self.out.written(),
            not_printed: self.out.not_written(),
            ..ExportReport::default()
        }
    }
}
