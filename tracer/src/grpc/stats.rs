//! What happened on a connection besides complete calls: every call that could not be fully
//! told, and every stream, block or byte that was skipped, is counted here.

use crate::http2::OtherProtocol;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub calls: u64,
    /// Calls whose `:path` could not be decoded (late join).
    pub calls_without_method: u64,
    /// Calls whose final status could not be decoded (late join or a capture gap).
    pub calls_without_status: u64,
    /// Methods and statuses of calls joined mid-flight read from the process's own header
    /// tables, and statuses read under a name gRPC's grammar gave (see `earlier_entries`).
    pub methods_from_memory: u64,
    pub statuses_from_memory: u64,
    pub statuses_by_grammar: u64,
    /// Calls still in flight when their process exited: they never had a status.
    pub calls_cut_by_exit: u64,
    /// Calls none of whose frames were captured (they fell into a capture gap), counted from
    /// the client's stream ids: they have no record.
    pub calls_lost: u64,
    /// Streams not followed because `max_open_streams` were already open.
    pub streams_over_limit: u64,
    /// Responses for streams whose request was not seen (in flight at attach).
    pub streams_joined_mid_call: u64,
    /// Streams whose content-type was not gRPC.
    pub non_grpc_streams: u64,
    pub header_blocks_lost: u64,
    pub header_blocks_too_large: u64,
    pub hpack_errors: u64,
    pub sync_losses: u64,
    pub skipped_bytes: u64,
    /// A direction turned out not to carry HTTP/2, and what it carries instead.
    pub not_http2: Option<OtherProtocol>,
}

impl TrackerStats {
    /// Adds another connection's counters to these.
    pub fn add(&mut self, other: &TrackerStats) {
        self.calls += other.calls;
        self.calls_without_method += other.calls_without_method;
        self.calls_without_status += other.calls_without_status;
        self.methods_from_memory += other.methods_from_memory;
        self.statuses_from_memory += other.statuses_from_memory;
        self.statuses_by_grammar += other.statuses_by_grammar;
        self.calls_cut_by_exit += other.calls_cut_by_exit;
        self.calls_lost += other.calls_lost;
        self.streams_over_limit += other.streams_over_limit;
        self.streams_joined_mid_call += other.streams_joined_mid_call;
        self.non_grpc_streams += other.non_grpc_streams;
        self.header_blocks_lost += other.header_blocks_lost;
        self.header_blocks_too_large += other.header_blocks_too_large;
        self.hpack_errors += other.hpack_errors;
        self.sync_losses += other.sync_losses;
        self.skipped_bytes += other.skipped_bytes;
        self.not_http2 = self.not_http2.or(other.not_http2);
    }
}
