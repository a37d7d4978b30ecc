//! The attributes of the call duration histograms: the span's, minus the
//! high-cardinality ones (peer address and port, message sizes, per-call facts).
//!
//! A call has the attribute set of its series (method, status, server), and there are few
//! series. Building the set afresh for every call (a `String` per value) cost more than
//! recording the measurement, so each set is built once and found again by the span attributes
//! it comes from.

use std::{
    borrow::Cow,
    hash::{BuildHasher as _, Hash as _, Hasher as _},
};

use foldhash::HashMap;
use opentelemetry::{KeyValue, Value};

use crate::export::AttributeValue;

const KEPT: [&str; 9] = [
    "rpc.system",
    "rpc.system.name",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "rpc.response.status_code",
    "error.type",
    "server.address",
    "server.port",
];

/// Beyond this many series, sets are built per call rather than kept (a bound on memory when
/// a process talks to very many servers).
const MAX_KEPT_SETS: usize = 1024;

/// A span's attributes in parts: those of its series, kept by the sink, and its own.
pub type Parts<'p, 'a> = [&'p [(&'static str, AttributeValue<'a>)]; 2];

fn kept<'p, 'a>(
    parts: Parts<'p, 'a>,
) -> impl Iterator<Item = &'p (&'static str, AttributeValue<'a>)> {
    parts
        .into_iter()
        .flatten()
        .filter(|(key, _)| KEPT.contains(key))
}

fn build(parts: Parts<'_, '_>) -> Vec<KeyValue> {
    kept(parts)
        .map(|(key, value)| KeyValue::new(*key, otel_value(value.clone())))
        .collect()
}

/// The span attributes a set was built from, owned.
type Source = Vec<(&'static str, AttributeValue<'static>)>;

#[derive(Default)]
pub struct MetricAttributeSets {
    /// By a hash of the span attributes; sets whose hashes collide share an entry.
    by_hash: HashMap<u64, Vec<(Source, Vec<KeyValue>)>>,
    kept_sets: usize,
    hasher: foldhash::fast::RandomState,
}

impl MetricAttributeSets {
    /// The set for the span whose attributes are `parts`.
    pub fn for_parts(&mut self, parts: Parts<'_, '_>) -> Cow<'_, [KeyValue]> {
        let mut hasher = self.hasher.build_hasher();
        for attribute in kept(parts) {
            attribute.hash(&mut hasher);
        }
        let sets = self.by_hash.entry(hasher.finish()).or_default();
        let found = sets
            .iter()
            .position(|(source, _)| source.iter().eq(kept(parts)));
        let index = match found {
            Some(index) => index,
            None if self.kept_sets < MAX_KEPT_SETS => {
                let source = kept(parts)
                    .map(|(key, value)| (*key, value.to_owned_value()))
                    .collect();
                sets.push((source, build(parts)));
                self.kept_sets += 1;
                sets.len() - 1
            }
            None => return Cow::Owned(build(parts)),
        };
        Cow::Borrowed(&sets[index].1)
    }
}

pub(super) fn otel_value(value: AttributeValue<'_>) -> Value {
    match value {
        AttributeValue::Str(text) => Value::from(text.into_owned()),
        AttributeValue::Int(number) => Value::from(number),
        AttributeValue::Bool(flag) => Value::from(flag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{Conventions, IdSource, SpanRecord, WallClock, span::tests::call};
    use crate::grpc::Code;

    struct FixedIds;

    impl IdSource for FixedIds {
        fn trace_id(&mut self) -> [u8; 16] {
            [1; 16]
        }
        fn span_id(&mut self) -> [u8; 8] {
            [1; 8]
        }
    }

    #[test]
    fn sets_are_those_of_the_span_and_built_once_per_series() {
        let clock = WallClock::measure();
        let not_found = call();
        let mut ok = call();
        ok.code = Some(Code::OK);
        ok.grpc_status = Some(0);
        ok.grpc_message = None;
        let mut sets = MetricAttributeSets::default();
        for (round, record) in [&not_found, &ok, &not_found, &ok].into_iter().enumerate() {
            let span = SpanRecord::from_call(record, Conventions::Both, clock, &mut FixedIds);
            // Split as the sink splits them: its series', then its own.
            let (series, own) = span.attributes.split_at(span.series_len);
            let set = sets.for_parts([series, own]).into_owned();
            assert_eq!(set, build([&span.attributes, &[]]), "round {round}");
            assert!(set.iter().all(|pair| KEPT.contains(&pair.key.as_str())));
            assert!(set.iter().any(|pair| pair.key.as_str() == "rpc.method"));
        }
        assert_eq!(sets.kept_sets, 2);
        let span = SpanRecord::from_call(&ok, Conventions::Both, clock, &mut FixedIds);
        let (series, own) = span.attributes.split_at(span.series_len);
        let status = sets
            .for_parts([series, own])
            .iter()
            .find(|pair| pair.key.as_str() == "rpc.response.status_code")
            .map(|pair| pair.value.to_string());
        assert_eq!(status.as_deref(), Some("OK"));
    }
}
