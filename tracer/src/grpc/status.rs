//! gRPC status codes and how they are derived when a call does not state one.

use std::fmt;

use crate::http2::ErrorCode;

/// A gRPC status code (0..=16); other values are carried through as-is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u32);

impl Code {
    pub const OK: Code = Code(0);
    pub const CANCELLED: Code = Code(1);
    pub const UNKNOWN: Code = Code(2);
    pub const INVALID_ARGUMENT: Code = Code(3);
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    pub const NOT_FOUND: Code = Code(5);
    pub const ALREADY_EXISTS: Code = Code(6);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    pub const FAILED_PRECONDITION: Code = Code(9);
    pub const ABORTED: Code = Code(10);
    pub const OUT_OF_RANGE: Code = Code(11);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const DATA_LOSS: Code = Code(15);
    pub const UNAUTHENTICATED: Code = Code(16);

    pub fn name(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        NAMES
            .get(self.0 as usize)
            .copied()
            .unwrap_or("UNKNOWN_CODE")
    }

    /// The code a client reports for a response without `grpc-status`, from its HTTP status
    /// (gRPC's "HTTP to gRPC status code mapping").
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }

    /// The code a client reports when its stream is reset with `error` (gRPC's HTTP/2
    /// protocol document, "Errors").
    pub fn from_reset(error: ErrorCode) -> Code {
        match error {
            ErrorCode::REFUSED_STREAM => Code::UNAVAILABLE,
            ErrorCode::CANCEL => Code::CANCELLED,
            ErrorCode::ENHANCE_YOUR_CALM => Code::RESOURCE_EXHAUSTED,
            ErrorCode::INADEQUATE_SECURITY => Code::PERMISSION_DENIED,
            _ => Code::INTERNAL,
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_reset_mappings() {
        assert_eq!(Code::from_http_status(404), Code::UNIMPLEMENTED);
        assert_eq!(Code::from_http_status(503), Code::UNAVAILABLE);
        assert_eq!(Code::from_http_status(200), Code::UNKNOWN);
        assert_eq!(Code::from_reset(ErrorCode::CANCEL), Code::CANCELLED);
        assert_eq!(
            Code::from_reset(ErrorCode::REFUSED_STREAM),
            Code::UNAVAILABLE
        );
        assert_eq!(Code::from_reset(ErrorCode::PROTOCOL_ERROR), Code::INTERNAL);
        assert_eq!(Code(5).to_string(), "NOT_FOUND");
        assert_eq!(Code(99).name(), "UNKNOWN_CODE");
    }
}
