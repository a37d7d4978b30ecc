//! gRPC calls from HTTP/2 streams: one [`CallRecord`] per client-initiated stream, followed to
//! its final status.
//!
//! ```text
//! frames (http2) --> header_block (CONTINUATION joined, HPACK) --> headers (what a block means)
//!                \-> message (length prefixes in DATA)         \-> streams (calls in flight)
//!                                 connection dispatches; outcome decides the status --> call
//! ```

mod call;
mod connection;
mod earlier_entries;
mod frame_position;
mod header_block;
mod headers;
mod limits;
mod message;
mod metadata;
mod outcome;
mod stats;
mod status;
mod streams;
#[cfg(test)]
mod tests;

pub use call::{CallRecord, ConnectionFacts, EndReason, KnownFailure, Provenance, Side};
pub use connection::ConnectionTracker;
pub use earlier_entries::Recall;
pub use frame_position::{FramePosition, MessageProgress};
pub use headers::RequestHeaders;
pub use limits::Limits;
pub use message::MessageStats;
pub use metadata::{RETAINED_HEADERS, is_retained, parse_timeout, percent_decode};
pub use outcome::CANCELLED_OR_DEADLINE;
pub use stats::TrackerStats;
pub use status::Code;
