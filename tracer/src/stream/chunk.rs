//! Stretches of one direction of a connection's byte stream, in stream order: bytes that were
//! captured, or gaps of a known length that went by unseen.

/// What one stretch of a byte stream holds. The bytes are borrowed: a chunk that arrives in
/// order is read where the ring buffer holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    /// This many bytes went by but were not captured.
    Gap(u64),
}

impl Payload<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(bytes) => bytes.len() as u64,
            Payload::Gap(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stretch of a byte stream starting at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub offset: u64,
    /// CLOCK_MONOTONIC nanoseconds when the syscall that moved it returned.
    pub timestamp_ns: u64,
    pub payload: Payload<'a>,
}

/// A chunk with its bytes copied out of the ring buffer, to be kept: one that has to wait for an
/// earlier one, or one a test collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChunk {
    pub offset: u64,
    pub timestamp_ns: u64,
    /// `None` for a gap of `len` bytes.
    bytes: Option<Vec<u8>>,
    len: u64,
}

impl OwnedChunk {
    pub fn copy_of(chunk: Chunk<'_>) -> OwnedChunk {
        let (bytes, len) = match chunk.payload {
            Payload::Bytes(bytes) => (Some(bytes.to_vec()), bytes.len() as u64),
            Payload::Gap(len) => (None, len),
        };
        OwnedChunk {
            offset: chunk.offset,
            timestamp_ns: chunk.timestamp_ns,
            bytes,
            len,
        }
    }

    /// `len` bytes from `offset` that went by unseen.
    pub fn gap(offset: u64, timestamp_ns: u64, len: u64) -> OwnedChunk {
        OwnedChunk {
            offset,
            timestamp_ns,
            bytes: None,
            len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_chunk(&self) -> Chunk<'_> {
        Chunk {
            offset: self.offset,
            timestamp_ns: self.timestamp_ns,
            payload: match &self.bytes {
                Some(bytes) => Payload::Bytes(bytes),
                None => Payload::Gap(self.len),
            },
        }
    }

    pub(crate) fn end(&self) -> u64 {
        self.offset + self.len
    }
}
