//! Counting gRPC messages from the 5-byte prefix each carries (compressed flag, 32-bit length).

use tracer_common::wire::GRPC_MESSAGE_PREFIX_LEN as PREFIX_LEN;

/// Messages seen in one direction of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Messages whose prefix was seen.
    pub count: u64,
    /// Sum of their lengths (prefixes excluded).
    pub bytes: u64,
    /// How many had the compressed flag set.
    pub compressed: u64,
    /// False once a gap swallowed a prefix: counts are then lower bounds.
    pub exact: bool,
    /// When the first message's prefix arrived.
    pub first_ns: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct MessageCounter {
    pub stats: MessageStats,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Body bytes of the current message still to come.
    body_left: u64,
    /// A gap hit a prefix: message boundaries are unknown from here on.
    lost: bool,
}

impl Default for MessageCounter {
    fn default() -> Self {
        MessageCounter {
            stats: MessageStats {
                exact: true,
                ..MessageStats::default()
            },
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            body_left: 0,
            lost: false,
        }
    }
}

impl MessageCounter {
    pub fn push_bytes(&mut self, mut bytes: &[u8], timestamp_ns: u64) {
        while !bytes.is_empty() && !self.lost {
            if self.body_left > 0 {
                let skip = (self.body_left).min(bytes.len() as u64) as usize;
                self.body_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (PREFIX_LEN - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.stats.count += 1;
                self.stats.bytes += u64::from(len);
                self.stats.compressed += u64::from(self.prefix[0] & 1);
                self.stats.first_ns.get_or_insert(timestamp_ns);
                self.body_left = u64::from(len);
            }
        }
    }

    /// Payload bytes that went by uncaptured: harmless inside a message body, fatal for
    /// counting if they cover a prefix.
    pub fn push_gap(&mut self, len: u64) {
        if self.lost || len == 0 {
            return;
        }
        if self.prefix_len == 0 && len <= self.body_left {
            self.body_left -= len;
        } else {
            self.lose_sync();
        }
    }

    /// Where the stream stands between messages, for the kernel side's frame cursor:
    /// `(prefix bytes seen, body bytes left)` or, inside a prefix, the length bytes among those
    /// seen. `None` once counting stopped.
    pub fn resume_point(&self) -> Option<(u32, u32)> {
        if self.lost {
            return None;
        }
        if self.prefix_len == 0 {
            return Some((0, u32::try_from(self.body_left).ok()?));
        }
        let length = self.prefix[1..self.prefix_len]
            .iter()
            .fold(0u32, |value, byte| (value << 8) | u32::from(*byte));
        Some((self.prefix_len as u32, length))
    }

    /// Frames of this stream may have been lost: stop counting.
    pub fn lose_sync(&mut self) {
        self.lost = true;
        self.stats.exact = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(compressed: bool, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![u8::from(compressed)];
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn counts_messages_split_anywhere() {
        let mut stream = message(false, b"hello");
        stream.extend(message(true, &[7; 300]));
        stream.extend(message(false, b""));
        for split in 0..stream.len() {
            let mut counter = MessageCounter::default();
            counter.push_bytes(&stream[..split], 1);
            counter.push_bytes(&stream[split..], 2);
            assert_eq!(
                counter.stats,
                MessageStats {
                    count: 3,
                    bytes: 305,
                    compressed: 1,
                    exact: true,
                    first_ns: Some(if split >= 5 { 1 } else { 2 })
                },
                "split at {split}"
            );
        }
    }

    #[test]
    fn gaps_inside_bodies_are_harmless_but_not_over_prefixes() {
        let stream = [message(false, &[1; 100]), message(false, &[2; 10])].concat();
        let mut counter = MessageCounter::default();
        counter.push_bytes(&stream[..10], 1);
        counter.push_gap(95);
        counter.push_bytes(&stream[105..], 1);
        assert_eq!(
            (
                counter.stats.count,
                counter.stats.bytes,
                counter.stats.exact
            ),
            (2, 110, true)
        );

        let mut counter = MessageCounter::default();
        counter.push_bytes(&stream[..10], 1);
        counter.push_gap(100);
        counter.push_bytes(&stream[110..], 1);
        assert_eq!((counter.stats.count, counter.stats.exact), (1, false));
    }
}
