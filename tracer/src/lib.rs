//! The tracer's userspace side.
pub mod capture;
pub mod grpc;
pub mod hpack;
pub mod http2;
