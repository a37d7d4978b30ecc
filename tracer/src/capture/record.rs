//! Decoding the raw records the kernel programs put in the ring buffer.

use std::{mem::size_of, ptr};

use tracer_common::{
    CloseRecord, DataRecord, Direction, HELD_RECORD_CAP, HeldRecord, MappedRecord, OpenRecord,
    OpenRole, PIECE_HEADER_LEN, PieceHeader, ProcessRecord, RecordHeader, RecordKind, SOCKADDR_CAP,
    TlsOpenRecord,
};

/// One ring buffer record, borrowed from the ring buffer.
#[derive(Debug)]
pub enum KernelRecord<'a> {
    Data {
        record: DataRecord,
        direction: Direction,
        pieces: Pieces<'a>,
    },
    Open {
        header: RecordHeader,
        role: OpenRole,
        addr: &'a [u8],
    },
    Close(CloseRecord),
    ProcessFork(ProcessRecord),
    ProcessExit(ProcessRecord),
    ProcessExec(ProcessRecord),
    TlsOpen(TlsOpenRecord),
    ExecutableMapped(MappedRecord),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {len} bytes is shorter than its {kind:?} header")]
    Truncated {
        kind: Option<RecordKind>,
        len: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("data record claims {claimed} captured bytes but carries {carried}")]
    LengthMismatch { claimed: usize, carried: usize },
    #[error("data record pieces do not add up to the {original} stream bytes it covers")]
    PiecesMismatch { original: u32 },
    #[error("invalid field {field}: {value}")]
    InvalidField { field: &'static str, value: u32 },
}

/// Reads a `#[repr(C)]` record from the front of `bytes`.
fn read<T: Copy>(bytes: &[u8], kind: RecordKind) -> Result<T, RecordError> {
    if bytes.len() < size_of::<T>() {
        return Err(RecordError::Truncated {
            kind: Some(kind),
            len: bytes.len(),
        });
    }
    // SAFETY: the length was checked and every T used here is plain old data (tracer-common).
    Ok(unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl<'a> KernelRecord<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<KernelRecord<'a>, RecordError> {
        if bytes.len() < size_of::<u32>() {
            return Err(RecordError::Truncated {
                kind: None,
                len: bytes.len(),
            });
        }
        let raw_kind = u32::from_ne_bytes(bytes[..4].try_into().expect("length checked"));
        let kind = RecordKind::from_u32(raw_kind).ok_or(RecordError::UnknownKind(raw_kind))?;
        Ok(match kind {
            RecordKind::Data => {
                let record: DataRecord = read(bytes, kind)?;
                let carried = &bytes[size_of::<DataRecord>()..];
                let claimed = record.captured_len as usize;
                if carried.len() < claimed {
                    return Err(RecordError::LengthMismatch {
                        claimed,
                        carried: carried.len(),
                    });
                }
                let direction = match record.direction {
                    0 => Direction::Egress,
                    1 => Direction::Ingress,
                    value => {
                        return Err(RecordError::InvalidField {
                            field: "direction",
                            value,
                        });
                    }
                };
                let pieces = Pieces {
                    bytes: &carried[..claimed],
                };
                if pieces.covered() != Some(u64::from(record.original_len)) {
                    return Err(RecordError::PiecesMismatch {
                        original: record.original_len,
                    });
                }
                KernelRecord::Data {
                    record,
                    direction,
                    pieces,
                }
            }
            RecordKind::Open => {
                let record: OpenRecord = read(bytes, kind)?;
                let role = match record.role {
                    1 => OpenRole::Connect,
                    2 => OpenRole::Accept,
                    3 => OpenRole::Duplicate,
                    value => {
                        return Err(RecordError::InvalidField {
                            field: "role",
                            value,
                        });
                    }
                };
                let addr_len = (record.addr_len as usize).min(SOCKADDR_CAP);
                let start = std::mem::offset_of!(OpenRecord, addr);
                KernelRecord::Open {
                    header: record.header,
                    role,
                    addr: &bytes[start..start + addr_len],
                }
            }
            RecordKind::Close => KernelRecord::Close(read(bytes, kind)?),
            RecordKind::ProcessFork => KernelRecord::ProcessFork(read(bytes, kind)?),
            RecordKind::ProcessExit => KernelRecord::ProcessExit(read(bytes, kind)?),
            RecordKind::ProcessExec => KernelRecord::ProcessExec(read(bytes, kind)?),
            RecordKind::TlsOpen => KernelRecord::TlsOpen(read(bytes, kind)?),
            RecordKind::ExecutableMapped => KernelRecord::ExecutableMapped(read(bytes, kind)?),
        })
    }
}

/// The data record a held-back one becomes when it is let go, as the kernel side emits it when
/// the socket closes; `None` if its counts are out of range.
pub fn held_record_bytes(held: &HeldRecord) -> Option<Vec<u8>> {
    let assembled = usize::try_from(held.progress.assembled)
        .ok()
        .filter(|&assembled| assembled <= HELD_RECORD_CAP)?;
    let mut record = held.record;
    record.offset = held.progress.offset;
    record.captured_len = assembled as u32;
    record.original_len = u32::try_from(held.progress.covered).ok()?;
    let mut bytes = Vec::with_capacity(size_of::<DataRecord>() + assembled);
    // SAFETY: DataRecord is plain old data (tracer-common) and `record` lives for the call.
    bytes.extend_from_slice(unsafe {
        std::slice::from_raw_parts(ptr::from_ref(&record).cast::<u8>(), size_of::<DataRecord>())
    });
    bytes.extend_from_slice(&held.data[..assembled]);
    Some(bytes)
}

/// The pieces of a data record: kept stream bytes, each run followed by a count of skipped ones.
/// Checked when the record is parsed, so iterating cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Pieces<'a> {
    bytes: &'a [u8],
}

impl<'a> Pieces<'a> {
    /// Stream bytes the pieces cover, or `None` if they are malformed.
    fn covered(self) -> Option<u64> {
        let mut rest = self.bytes;
        let mut covered = 0u64;
        while !rest.is_empty() {
            let (piece, after) = split_piece(rest)?;
            covered += piece.0.len() as u64 + piece.1;
            rest = after;
        }
        Some(covered)
    }
}

/// Kept bytes, then the number of stream bytes skipped after them.
pub type Piece<'a> = (&'a [u8], u64);

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (piece, rest) = split_piece(self.bytes)?;
        self.bytes = rest;
        Some(piece)
    }
}

/// The first piece of `bytes` and what follows it; `None` if it is cut short.
fn split_piece(bytes: &[u8]) -> Option<(Piece<'_>, &[u8])> {
    let header = bytes.get(..PIECE_HEADER_LEN)?;
    // SAFETY: `PieceHeader` is plain old data and `header` has its size.
    let header: PieceHeader = unsafe { ptr::read_unaligned(header.as_ptr().cast()) };
    let body = &bytes[PIECE_HEADER_LEN..];
    let kept = body.get(..header.kept as usize)?;
    Some((
        (kept, u64::from(header.skipped)),
        &body[header.kept as usize..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain-old-data record.
        unsafe { std::slice::from_raw_parts(ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn header(kind: RecordKind) -> RecordHeader {
        RecordHeader {
            kind: kind as u32,
            tgid: 1,
            tid: 2,
            fd: 3,
            conn_id: 4,
            timestamp_ns: 5,
        }
    }

    fn piece(kept: &[u8], skipped: u32) -> Vec<u8> {
        let mut bytes = bytes_of(&PieceHeader {
            kept: kept.len() as u32,
            skipped,
        });
        bytes.extend_from_slice(kept);
        bytes
    }

    fn data_record(original_len: u32, pieces: &[u8]) -> Vec<u8> {
        let mut bytes = bytes_of(&DataRecord {
            header: header(RecordKind::Data),
            offset: 100,
            captured_len: pieces.len() as u32,
            original_len,
            direction: 1,
            syscall: 6,
        });
        bytes.extend_from_slice(pieces);
        bytes
    }

    #[test]
    fn data_record_carries_kept_and_skipped_pieces() {
        let pieces = [piece(b"abc", 7), piece(b"", 0), piece(b"de", 0)].concat();
        let bytes = data_record(12, &pieces);
        let KernelRecord::Data {
            record,
            direction,
            pieces,
        } = KernelRecord::parse(&bytes).unwrap()
        else {
            panic!("not a data record");
        };
        assert_eq!((record.offset, record.original_len), (100, 12));
        assert_eq!(direction, Direction::Ingress);
        let pieces: Vec<_> = pieces.collect();
        assert_eq!(pieces, [(&b"abc"[..], 7), (&b""[..], 0), (&b"de"[..], 0)]);
    }

    #[test]
    fn pieces_must_cover_exactly_the_record() {
        for (original_len, pieces) in [
            (11, piece(b"abc", 7)),
            (13, piece(b"abc", 7)),
            // A piece that claims more kept bytes than the record carries.
            (10, piece(b"abc", 7)[..9].to_vec()),
            // A truncated piece header.
            (0, vec![0; 5]),
        ] {
            assert!(matches!(
                KernelRecord::parse(&data_record(original_len, &pieces)),
                Err(RecordError::PiecesMismatch { .. })
            ));
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(matches!(
            KernelRecord::parse(&[1, 0]),
            Err(RecordError::Truncated { .. })
        ));
        assert_eq!(
            KernelRecord::parse(&[9, 0, 0, 0]).unwrap_err(),
            RecordError::UnknownKind(9)
        );
        let record = DataRecord {
            header: header(RecordKind::Data),
            offset: 0,
            captured_len: 8,
            original_len: 8,
            direction: 0,
            syscall: 1,
        };
        assert!(matches!(
            KernelRecord::parse(&bytes_of(&record)),
            Err(RecordError::LengthMismatch {
                claimed: 8,
                carried: 0
            })
        ));
    }
}
