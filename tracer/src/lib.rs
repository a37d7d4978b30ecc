//! The tracer's userspace side.
pub mod capture;
pub mod cli;
pub mod export;
pub mod frame_sync;
pub mod fuzzing;
pub mod grpc;
pub mod hpack;
pub mod http2;
pub mod launch;
pub mod output_file;
pub mod process_memory;
pub mod recent;
pub mod session;
pub mod stream;
