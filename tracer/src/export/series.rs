//! What a sink makes of the attributes a call shares with the other calls of its series (see
//! [`SeriesKey`]), made once per series and kept for the last few.

use super::{
    AttributeValue, Conventions, IdSource, SpanAttributes, SpanRecord, WallClock, span::SeriesKey,
};
use crate::{grpc::CallRecord, recent::Recent};

/// For each of the last few series, what a sink rendered of its attributes.
pub struct SeriesCache<T> {
    entries: Recent<(SeriesKey, T), SERIES_KEPT>,
}

/// Methods times peers that a process keeps busy at once, typically.
pub const SERIES_KEPT: usize = 8;

impl<T> Default for SeriesCache<T> {
    fn default() -> Self {
        SeriesCache {
            entries: Recent::default(),
        }
    }
}

impl<T> SeriesCache<T> {
    /// The span of `call` without its series attributes, and what `render` made of those,
    /// now if the series is new.
    pub fn span<'c>(
        &mut self,
        call: &'c CallRecord,
        conventions: Conventions,
        clock: WallClock,
        ids: &mut dyn IdSource,
        render: impl FnOnce(&[(&'static str, AttributeValue<'_>)]) -> T,
    ) -> (SpanRecord<'c>, &T) {
        if let Some(index) = self.entries.position(|(key, _)| key.matches(call)) {
            let span =
                SpanRecord::with_attributes(call, conventions, clock, ids, SpanAttributes::OwnOnly);
            return (span, &self.entries.get(index).1);
        }
        let mut span = SpanRecord::from_call(call, conventions, clock, ids);
        let rendered = render(&span.attributes[..span.series_len]);
        span.attributes.drain(..span.series_len);
        span.series_len = 0;
        let (_, rendered) = self.entries.insert((SeriesKey::of(call), rendered));
        (span, rendered)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.kept()
    }
}
