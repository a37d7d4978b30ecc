//! Frame layouts (RFC 9113 §4 and §6), one module per frame family.

mod control;
mod head;
mod headers;
mod settings;

pub use control::ErrorCode;
pub use head::{FrameHeader, HEADER_LEN, Kind, flags};
pub use settings::Setting;

/// A complete frame other than DATA (DATA payloads are streamed, never buffered whole),
/// borrowing its header block fragment from the payload it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Padding and priority fields removed: `fragment` is the header block fragment.
    Headers {
        stream_id: u32,
        end_stream: bool,
        end_headers: bool,
        fragment: &'a [u8],
    },
    Continuation {
        stream_id: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    PushPromise {
        stream_id: u32,
        promised_stream_id: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    RstStream {
        stream_id: u32,
        error_code: ErrorCode,
    },
    Settings {
        ack: bool,
        settings: Vec<Setting>,
    },
    Ping {
        ack: bool,
    },
    GoAway {
        last_stream_id: u32,
        error_code: ErrorCode,
    },
    WindowUpdate {
        stream_id: u32,
        increment: u32,
    },
    Priority {
        stream_id: u32,
    },
    /// Unknown frame types are ignored (RFC 9113 §4.1).
    Unknown {
        kind: u8,
        stream_id: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{kind:?} frame payload of {len} bytes is malformed")]
    BadPayload { kind: Kind, len: usize },
    #[error("padding longer than the frame")]
    BadPadding,
}

impl<'a> Frame<'a> {
    /// Interprets a complete payload. DATA is handled by the reader and never reaches here.
    pub fn parse(header: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let stream_id = header.stream_id;
        let bad = || FrameError::BadPayload {
            kind: header.kind,
            len: payload.len(),
        };
        Ok(match header.kind {
            Kind::Headers | Kind::Continuation | Kind::PushPromise => {
                headers::parse(header, payload)?
            }
            Kind::RstStream => Frame::RstStream {
                stream_id,
                error_code: ErrorCode(control::read_u32(payload, 0).ok_or_else(bad)?),
            },
            Kind::Settings => Frame::Settings {
                ack: header.has(flags::ACK),
                settings: settings::parse(payload).ok_or_else(bad)?,
            },
            Kind::Ping if payload.len() == 8 => Frame::Ping {
                ack: header.has(flags::ACK),
            },
            Kind::GoAway => Frame::GoAway {
                last_stream_id: control::read_u32(payload, 0).ok_or_else(bad)? & 0x7fff_ffff,
                error_code: ErrorCode(control::read_u32(payload, 4).ok_or_else(bad)?),
            },
            Kind::WindowUpdate => Frame::WindowUpdate {
                stream_id,
                increment: control::read_u32(payload, 0).ok_or_else(bad)? & 0x7fff_ffff,
            },
            Kind::Priority if payload.len() == 5 => Frame::Priority { stream_id },
            Kind::Unknown(kind) => Frame::Unknown { kind, stream_id },
            Kind::Ping | Kind::Priority | Kind::Data => return Err(bad()),
        })
    }
}
