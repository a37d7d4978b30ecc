//! HEADERS, CONTINUATION and PUSH_PROMISE (RFC 9113 §6.2, §6.10, §6.6): strip padding and
//! priority so only the header block fragment remains.

use super::{Frame, FrameError, FrameHeader, Kind, flags};

pub fn parse<'a>(header: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let end_headers = header.has(flags::END_HEADERS);
    let stream_id = header.stream_id;
    if header.kind == Kind::Continuation {
        return Ok(Frame::Continuation {
            stream_id,
            end_headers,
            fragment: payload,
        });
    }
    let mut start = 0;
    let mut end = payload.len();
    if header.has(flags::PADDED) {
        let pad = usize::from(*payload.first().ok_or(FrameError::BadPadding)?);
        start = 1;
        end = end
            .checked_sub(pad)
            .filter(|&end| end >= start)
            .ok_or(FrameError::BadPadding)?;
    }
    let bad = FrameError::BadPayload {
        kind: header.kind,
        len: payload.len(),
    };
    if header.kind == Kind::PushPromise {
        let promised = payload.get(start..start + 4).ok_or(bad)?;
        let promised_stream_id =
            u32::from_be_bytes([promised[0], promised[1], promised[2], promised[3]]) & 0x7fff_ffff;
        let fragment = payload.get(start + 4..end).ok_or(bad)?;
        return Ok(Frame::PushPromise {
            stream_id,
            promised_stream_id,
            end_headers,
            fragment,
        });
    }
    if header.has(flags::PRIORITY) {
        // Stream dependency (4 bytes) and weight (1 byte).
        start += 5;
        if start > end {
            return Err(bad);
        }
    }
    Ok(Frame::Headers {
        stream_id,
        end_stream: header.has(flags::END_STREAM),
        end_headers,
        fragment: &payload[start..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, flags: u8, len: usize) -> FrameHeader {
        FrameHeader {
            len: len as u32,
            kind,
            flags,
            stream_id: 3,
        }
    }

    #[test]
    fn strips_padding_and_priority() {
        // Pad length 2, priority (5 bytes), fragment "ab", 2 bytes of padding.
        let payload = [2, 0, 0, 0, 1, 16, b'a', b'b', 0, 0];
        let frame = parse(
            &header(
                Kind::Headers,
                flags::PADDED | flags::PRIORITY | flags::END_HEADERS,
                10,
            ),
            &payload,
        )
        .unwrap();
        assert_eq!(
            frame,
            Frame::Headers {
                stream_id: 3,
                end_stream: false,
                end_headers: true,
                fragment: b"ab"
            }
        );
    }

    #[test]
    fn rejects_padding_longer_than_the_frame() {
        assert_eq!(
            parse(&header(Kind::Headers, flags::PADDED, 3), &[9, 1, 2]),
            Err(FrameError::BadPadding)
        );
        assert_eq!(
            parse(&header(Kind::Headers, flags::PADDED, 0), &[]),
            Err(FrameError::BadPadding)
        );
    }

    #[test]
    fn push_promise_carries_the_promised_stream() {
        let frame = parse(
            &header(Kind::PushPromise, flags::END_HEADERS, 5),
            &[0, 0, 0, 2, 0x82],
        )
        .unwrap();
        assert_eq!(
            frame,
            Frame::PushPromise {
                stream_id: 3,
                promised_stream_id: 2,
                end_headers: true,
                fragment: &[0x82]
            }
        );
    }
}
