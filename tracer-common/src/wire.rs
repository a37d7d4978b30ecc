//! The HTTP/2 (RFC 9113) and gRPC wire constants that both the kernel's frame cursor and
//! userspace's frame reader and message counter go by.

/// Length of every frame header (§4.1).
pub const FRAME_HEADER_LEN: usize = 9;

/// The client connection preface (§3.4).
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of the prefix of every gRPC message: a compressed flag and a 4-byte length.
pub const GRPC_MESSAGE_PREFIX_LEN: usize = 5;

/// Frame type codes (§6).
pub mod frame_type {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

/// Frame flags (§6); a bit means different things for different frame types.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}
