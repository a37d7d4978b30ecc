//! The status code a call ended with, from what ended it. When `grpc-status` is missing, the
//! code is derived as a gRPC client derives it (gRPC's "HTTP to gRPC status code mapping" and
//! RST_STREAM rules); when the wire cannot say, the outcome is unknown, or one of a few, never a
//! guess.

use std::time::Duration;

use super::{call::EndReason, status::Code, streams::StreamState};
use crate::http2::ErrorCode;

/// What the wire says of a call's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Known(Code),
    /// One of these; the wire cannot tell which.
    OneOf(&'static [Code]),
    Unknown,
}

impl Outcome {
    pub fn code(self) -> Option<Code> {
        match self {
            Outcome::Known(code) => Some(code),
            Outcome::OneOf(_) | Outcome::Unknown => None,
        }
    }

    /// The codes it may be, when it is one of a few.
    pub fn candidates(self) -> &'static [Code] {
        match self {
            Outcome::OneOf(codes) => codes,
            Outcome::Known(_) | Outcome::Unknown => &[],
        }
    }
}

/// The two a client's RST_STREAM(CANCEL) can mean when its request may have waited for a
/// stream slot (see [`status_code`]).
pub const CANCELLED_OR_DEADLINE: &[Code] = &[Code::CANCELLED, Code::DEADLINE_EXCEEDED];

/// What `stream`, ended by `reason` at `end_ns`, ended with.
///
/// A client cancels with RST_STREAM(CANCEL) both when its application cancels and when its
/// deadline fires; the deadline is told by the time since the request headers, against their
/// `grpc-timeout`. Some clients (grpc-go, grpc-js, grpc-java) compute that timeout when the
/// call starts, and a request that waited for a stream slot (the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS reached) goes out later: its deadline fires sooner after
/// its headers than their timeout says. For such a request ([`StreamState::queued_since`]),
/// a cancel that comes when its deadline could have fired, counted from the earliest the call
/// could have started, is either: the wire cannot tell which.
pub(super) fn outcome(stream: &StreamState, reason: EndReason, end_ns: u64) -> Outcome {
    let known = |code: Option<Code>| code.map_or(Outcome::Unknown, Outcome::Known);
    known(match reason {
        EndReason::Trailers | EndReason::TrailersOnly => {
            match (stream.grpc_status, stream.http_status) {
                (Some(status), _) => Some(Code(status)),
                // Without grpc-status, a client derives the code from the HTTP status, unless
                // the status may sit in a field we could not decode.
                (None, _) if stream.response_had_unknown_fields => None,
                (None, Some(http)) => Some(Code::from_http_status(http)),
                (None, None) => Some(Code::UNKNOWN),
            }
        }
        EndReason::EndStreamWithoutTrailers => Some(
            stream
                .http_status
                .map_or(Code::UNKNOWN, Code::from_http_status),
        ),
        EndReason::ResetByClient(ErrorCode::CANCEL) => {
            let since = |start_ns: u64| Duration::from_nanos(end_ns.saturating_sub(start_ns));
            let timeout = stream
                .request_headers
                .as_ref()
                .and_then(|headers| headers.timeout);
            if deadline_passed(timeout, since(stream.start_ns)) {
                Some(Code::DEADLINE_EXCEEDED)
            } else if stream
                .queued_since
                .is_some_and(|queued| deadline_passed(timeout, since(queued)))
            {
                return Outcome::OneOf(CANCELLED_OR_DEADLINE);
            } else {
                Some(Code::CANCELLED)
            }
        }
        EndReason::ResetByClient(error) | EndReason::ResetByServer(error) => {
            Some(Code::from_reset(error))
        }
        EndReason::GoAway | EndReason::ConnectionClosed => Some(Code::UNAVAILABLE),
        EndReason::FinalHeadersLost | EndReason::CaptureGap => None,
        // Its process exited with the call in flight. If that was after the call's deadline
        // (by our clock, which starts after the client's), the client's library had already
        // ended the call with DEADLINE_EXCEEDED; before it, the process never learnt an outcome.
        EndReason::ProcessExited => {
            let elapsed = Duration::from_nanos(end_ns.saturating_sub(stream.start_ns));
            stream
                .request_headers
                .as_ref()
                .and_then(|headers| headers.timeout)
                .is_some_and(|timeout| elapsed >= timeout)
                .then_some(Code::DEADLINE_EXCEEDED)
        }
    })
}

/// A client cancels with RST_STREAM(CANCEL) when its deadline fires. Its timer starts before
/// the request is written (tonic starts it before its connection task even runs), ours when the
/// write returns, so the reset can come a few milliseconds "early" by our clock.
fn deadline_passed(timeout: Option<Duration>, elapsed: Duration) -> bool {
    timeout.is_some_and(|timeout| elapsed + Duration::from_millis(5).max(timeout / 20) >= timeout)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::grpc::RequestHeaders;

    const MS: u64 = 1_000_000;

    fn status_code(stream: &StreamState, reason: EndReason, end_ns: u64) -> Option<Code> {
        outcome(stream, reason, end_ns).code()
    }

    fn with_timeout(timeout_ms: u64) -> StreamState {
        StreamState {
            start_ns: 1_000 * MS,
            request_headers: Some(Rc::new(RequestHeaders {
                timeout: Some(Duration::from_millis(timeout_ms)),
                ..RequestHeaders::default()
            })),
            ..StreamState::default()
        }
    }

    #[test]
    fn grpc_status_wins_over_the_http_status() {
        let stream = StreamState {
            grpc_status: Some(5),
            http_status: Some(200),
            ..StreamState::default()
        };
        assert_eq!(
            status_code(&stream, EndReason::Trailers, 0),
            Some(Code::NOT_FOUND)
        );
    }

    #[test]
    fn without_grpc_status_the_http_status_decides_unless_a_field_was_unreadable() {
        let mut stream = StreamState {
            http_status: Some(404),
            ..StreamState::default()
        };
        let code = status_code(&stream, EndReason::TrailersOnly, 0);
        assert_eq!(code, Some(Code::UNIMPLEMENTED));
        stream.response_had_unknown_fields = true;
        assert_eq!(status_code(&stream, EndReason::TrailersOnly, 0), None);
    }

    #[test]
    fn a_client_cancel_after_its_timeout_is_a_deadline() {
        let stream = with_timeout(100);
        let cancel = EndReason::ResetByClient(ErrorCode::CANCEL);
        let at = |elapsed_ms: u64| status_code(&stream, cancel, stream.start_ns + elapsed_ms * MS);
        assert_eq!(at(100), Some(Code::DEADLINE_EXCEEDED));
        // The client's timer started before the write we timed from.
        assert_eq!(at(96), Some(Code::DEADLINE_EXCEEDED));
        assert_eq!(at(50), Some(Code::CANCELLED));
        let untimed = StreamState::default();
        assert_eq!(
            status_code(&untimed, cancel, 10_000 * MS),
            Some(Code::CANCELLED)
        );
    }

    #[test]
    fn a_process_that_exits_after_its_calls_deadline_saw_the_deadline_pass() {
        let stream = with_timeout(100);
        let exit = |elapsed_ms: u64| {
            status_code(
                &stream,
                EndReason::ProcessExited,
                stream.start_ns + elapsed_ms * MS,
            )
        };
        assert_eq!(exit(100), Some(Code::DEADLINE_EXCEEDED));
        assert_eq!(exit(3_000), Some(Code::DEADLINE_EXCEEDED));
        // Before its deadline, or without one, the call never had an outcome.
        assert_eq!(exit(99), None);
        let untimed = StreamState::default();
        assert_eq!(
            status_code(&untimed, EndReason::ProcessExited, 10_000 * MS),
            None
        );
    }

    #[test]
    fn a_cancel_of_a_request_that_may_have_waited_for_a_slot_may_be_its_deadline() {
        let mut stream = with_timeout(100);
        let cancel = EndReason::ResetByClient(ErrorCode::CANCEL);
        let at = |stream: &StreamState, elapsed_ms: u64| {
            outcome(stream, cancel, stream.start_ns + elapsed_ms * MS)
        };
        // The headers went out when a slot freed; the connection had been full for 60 ms.
        stream.queued_since = Some(stream.start_ns - 60 * MS);
        // 40 ms after the headers is 100 ms after the call may have started.
        assert_eq!(at(&stream, 40), Outcome::OneOf(CANCELLED_OR_DEADLINE));
        // Too soon for any deadline: the application cancelled.
        assert_eq!(at(&stream, 10), Outcome::Known(Code::CANCELLED));
        assert_eq!(at(&stream, 100), Outcome::Known(Code::DEADLINE_EXCEEDED));
        // Not queued: as before.
        stream.queued_since = None;
        assert_eq!(at(&stream, 40), Outcome::Known(Code::CANCELLED));
    }

    #[test]
    fn calls_without_a_final_word_have_no_code() {
        let stream = with_timeout(1);
        assert_eq!(
            status_code(&stream, EndReason::FinalHeadersLost, u64::MAX),
            None
        );
        let exited_in_time = status_code(&stream, EndReason::ProcessExited, stream.start_ns);
        assert_eq!(exited_in_time, None);
        for reason in [EndReason::GoAway, EndReason::ConnectionClosed] {
            let code = status_code(&stream, reason, 0);
            assert_eq!(code, Some(Code::UNAVAILABLE), "{reason:?}");
        }
    }
}
