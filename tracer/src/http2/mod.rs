//! HTTP/2 framing (RFC 9113) for a passive observer: frames are recovered from one direction's
//! byte stream as it arrives, across arbitrary chunk boundaries and capture gaps.

pub mod frame;
pub mod reader;

pub use frame::{ErrorCode, Frame, FrameHeader, Kind, Setting};
pub use reader::{DataPiece, FrameReader, OtherProtocol, ReaderEvent, ReaderStats};

pub use tracer_common::wire::CLIENT_PREFACE;

/// SETTINGS_MAX_FRAME_SIZE until a peer says otherwise (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
