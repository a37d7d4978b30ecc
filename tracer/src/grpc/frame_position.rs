//! Where one direction of a connection stands when it stops at a frame boundary: what a capture
//! source that lost track of the HTTP/2 framing needs to follow it again (see
//! `crate::frame_sync`).

/// A direction stopped between frames at `offset`, with `mid_message` the streams whose
/// current gRPC message continues in a later DATA frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePosition {
    pub offset: u64,
    pub mid_message: Vec<MessageProgress>,
}

/// How far a stream is into its current length-prefixed message (gRPC over HTTP/2,
/// "Length-Prefixed-Message").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageProgress {
    pub stream_id: u32,
    /// `0`: `value` body bytes are still to come. `1..=4`: that many prefix bytes were seen,
    /// and `value` holds the length bytes among them.
    pub prefix_seen: u32,
    pub value: u32,
}
