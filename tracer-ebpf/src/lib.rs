// Empty library target: lets `tracer` name this crate as a build-dependency, so cargo rebuilds
// the eBPF object whenever this crate changes.
#![no_std]
