//! gRPC calls from HTTP/2 streams: one [`CallRecord`] per client-initiated stream, followed to
//! its final status.

mod call;
mod connection;
mod headers;
mod message;
mod metadata;
mod status;
#[cfg(test)]
mod tests;

pub use call::{CallRecord, ConnectionFacts, EndReason, Side};
pub use connection::{ConnectionTracker, Limits, TrackerStats};
pub use headers::RequestHeaders;
pub use message::MessageStats;
pub use metadata::{RETAINED_HEADERS, is_retained, parse_timeout, percent_decode};
pub use status::Code;
