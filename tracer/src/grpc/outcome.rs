//! The status code a call ended with, from what ended it. When `grpc-status` is missing, the
//! code is derived as a gRPC client derives it (gRPC's "HTTP to gRPC status code mapping" and
//! RST_STREAM rules); when the wire cannot say, the outcome is unknown (`None`), never a guess.

use std::time::Duration;

use super::{call::EndReason, status::Code, streams::StreamState};
use crate::http2::ErrorCode;

/// The code `stream` ended with, ended by `reason` at `end_ns`; `None` when it is unknown.
pub(super) fn status_code(stream: &StreamState, reason: EndReason, end_ns: u64) -> Option<Code> {
    match reason {
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
            let elapsed = Duration::from_nanos(end_ns.saturating_sub(stream.start_ns));
            let timeout = stream
                .request_headers
                .as_ref()
                .and_then(|headers| headers.timeout);
            Some(if deadline_passed(timeout, elapsed) {
                Code::DEADLINE_EXCEEDED
            } else {
                Code::CANCELLED
            })
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
    }
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
