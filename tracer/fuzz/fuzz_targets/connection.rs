//! Frames + HPACK + call assembly on arbitrary connection bytes and gaps: must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    tracer::fuzzing::run_connection(input);
});
