//! What every layer above a capture source works on: one connection's two ordered byte
//! streams. A source (socket syscalls, a TLS library's plaintext) produces [`Chunk`]s per
//! [`Direction`]; HTTP/2, HPACK and gRPC consume them without knowing which source it was.

mod chunk;
mod clock;
mod endpoint;
mod source;

pub use chunk::{Chunk, OwnedChunk, Payload};
pub use clock::monotonic_now_ns;
pub use endpoint::Endpoint;
pub use source::Source;
pub use tracer_common::Direction;
