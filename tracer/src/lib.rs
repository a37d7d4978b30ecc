//! The tracer's userspace side.
pub mod capture;
pub mod fuzzing;
pub mod grpc;
pub mod hpack;
pub mod http2;
