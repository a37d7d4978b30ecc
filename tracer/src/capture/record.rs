//! Decoding the raw records the kernel programs put in the ring buffer.

use std::{mem::size_of, ptr};

use tracer_common::{
    CloseRecord, DataRecord, Direction, OpenRecord, OpenRole, ProcessRecord, RecordHeader,
    RecordKind, SOCKADDR_CAP,
};

/// One ring buffer record, borrowed from the ring buffer.
#[derive(Debug)]
pub enum KernelRecord<'a> {
    Data {
        record: DataRecord,
        direction: Direction,
        captured: &'a [u8],
    },
    Open {
        header: RecordHeader,
        role: OpenRole,
        addr: &'a [u8],
    },
    Close(CloseRecord),
    ProcessFork(ProcessRecord),
    ProcessExit(ProcessRecord),
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
                let captured = &bytes[size_of::<DataRecord>()..];
                let claimed = record.captured_len as usize;
                if captured.len() < claimed || record.original_len < record.captured_len {
                    return Err(RecordError::LengthMismatch {
                        claimed,
                        carried: captured.len(),
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
                KernelRecord::Data {
                    record,
                    direction,
                    captured: &captured[..claimed],
                }
            }
            RecordKind::Open => {
                let record: OpenRecord = read(bytes, kind)?;
                let role = match record.role {
                    1 => OpenRole::Connect,
                    2 => OpenRole::Accept,
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
        })
    }
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

    #[test]
    fn data_record_carries_its_captured_bytes() {
        let record = DataRecord {
            header: header(RecordKind::Data),
            offset: 100,
            captured_len: 3,
            original_len: 10,
            direction: 1,
            syscall: 6,
        };
        let mut bytes = bytes_of(&record);
        bytes.extend_from_slice(b"abc");
        let KernelRecord::Data {
            record,
            direction,
            captured,
        } = KernelRecord::parse(&bytes).unwrap()
        else {
            panic!("not a data record");
        };
        assert_eq!((record.offset, record.original_len), (100, 10));
        assert_eq!(direction, Direction::Ingress);
        assert_eq!(captured, b"abc");
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
