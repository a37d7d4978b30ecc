//! The 9-byte frame header (RFC 9113 §4.1) and what a plausible one looks like.

use tracer_common::wire::frame_type;
pub use tracer_common::wire::{FRAME_HEADER_LEN as HEADER_LEN, flags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    Unknown(u8),
}

impl Kind {
    pub fn from_u8(value: u8) -> Kind {
        match value {
            frame_type::DATA => Kind::Data,
            frame_type::HEADERS => Kind::Headers,
            frame_type::PRIORITY => Kind::Priority,
            frame_type::RST_STREAM => Kind::RstStream,
            frame_type::SETTINGS => Kind::Settings,
            frame_type::PUSH_PROMISE => Kind::PushPromise,
            frame_type::PING => Kind::Ping,
            frame_type::GOAWAY => Kind::GoAway,
            frame_type::WINDOW_UPDATE => Kind::WindowUpdate,
            frame_type::CONTINUATION => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    /// Whether the payload is (part of) a header block.
    pub fn carries_header_block(self) -> bool {
        matches!(self, Kind::Headers | Kind::Continuation | Kind::PushPromise)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: Kind::from_u8(bytes[3]),
            flags: bytes[4],
            // The reserved high bit is ignored on receipt (§4.1).
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether these 9 bytes could start a frame of a gRPC connection: used to find frame
    /// boundaries again after a gap, so it is strict where the protocol is (known type, flags
    /// the type defines, fixed lengths, stream 0 exactly for connection frames) and assumes
    /// client-initiated (odd) streams, as gRPC never uses server push.
    pub fn is_plausible(bytes: &[u8; HEADER_LEN], max_frame_size: u32) -> bool {
        if bytes[5] & 0x80 != 0 {
            return false; // Senders must leave the reserved bit clear.
        }
        let header = FrameHeader::parse(bytes);
        if header.len > max_frame_size {
            return false;
        }
        let on_stream = header.stream_id != 0 && header.stream_id % 2 == 1;
        let on_connection = header.stream_id == 0;
        let flags_within = |allowed: u8| header.flags & !allowed == 0;
        match header.kind {
            Kind::Data => on_stream && flags_within(flags::END_STREAM | flags::PADDED),
            Kind::Headers => {
                on_stream
                    && flags_within(
                        flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY,
                    )
            }
            Kind::Priority => on_stream && header.len == 5 && header.flags == 0,
            Kind::RstStream => on_stream && header.len == 4 && header.flags == 0,
            Kind::Settings => {
                on_connection
                    && flags_within(flags::ACK)
                    && header.len.is_multiple_of(6)
                    && (!header.has(flags::ACK) || header.len == 0)
            }
            Kind::PushPromise => {
                on_stream && header.len >= 4 && flags_within(flags::END_HEADERS | flags::PADDED)
            }
            Kind::Ping => on_connection && header.len == 8 && flags_within(flags::ACK),
            Kind::GoAway => on_connection && header.len >= 8 && header.flags == 0,
            Kind::WindowUpdate => {
                (on_stream || on_connection) && header.len == 4 && header.flags == 0
            }
            Kind::Continuation => on_stream && flags_within(flags::END_HEADERS),
            Kind::Unknown(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_judges_headers() {
        let settings = [0, 0, 12, 4, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(&settings),
            FrameHeader {
                len: 12,
                kind: Kind::Settings,
                flags: 0,
                stream_id: 0
            }
        );
        assert!(FrameHeader::is_plausible(&settings, 16_384));
        // HEADERS on stream 1 with END_HEADERS.
        assert!(FrameHeader::is_plausible(
            &[0, 0, 40, 1, 4, 0, 0, 0, 1],
            16_384
        ));
        // Even stream, stream-less DATA, oversized, unknown flags, reserved bit.
        for bytes in [
            [0, 0, 40, 1, 4, 0, 0, 0, 2],
            [0, 0, 40, 0, 0, 0, 0, 0, 0],
            [0, 0x40, 1, 0, 0, 0, 0, 0, 1],
            [0, 0, 40, 0, 0x2, 0, 0, 0, 1],
            [0, 0, 4, 3, 0, 0x80, 0, 0, 1],
            [0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54], // "GET / HTT"
        ] {
            assert!(!FrameHeader::is_plausible(&bytes, 16_384), "{bytes:?}");
        }
    }
}
