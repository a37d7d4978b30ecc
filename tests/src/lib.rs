//! Shared pieces of the integration tests: the byte patterns workloads send, and a harness that
//! runs a workload process under the real capture layer and collects what it saw.

pub mod call_timing;
pub mod certificate;
pub mod client_calls;
pub mod echo;
pub mod harness;
pub mod http2_stream;
pub mod otlp_receiver;
pub mod pattern;
pub mod python_client;
pub mod recall;
pub mod recording_proxy;
pub mod scenarios;
pub mod server_process;
pub mod tracer_run;
pub mod waiting_client;
