//! The compiled example clients of the end-to-end tests (tests/go, tests/cpp, tests/java),
//! each built against its gRPC stack as Debian's archive ships it, into the project's cache
//! directory.

mod cpp;
mod go;
mod java;

pub use cpp::ensure_cpp_client;
pub use go::ensure_go_client;
pub use java::ensure_java_client;
