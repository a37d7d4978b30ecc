//! Bounds on what one connection may hold in memory.

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight at once; further streams are counted and not followed.
    pub max_open_streams: usize,
    /// A header block (HEADERS plus CONTINUATIONs) larger than this is dropped and counted.
    pub max_header_block: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_open_streams: 32_768,
            max_header_block: 256 * 1024,
        }
    }
}
