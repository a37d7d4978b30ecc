//! Which entry of a table found in memory is the one a connection referred to.
//!
//! The tracer knows, for each direction it joined mid-flight, the entries inserted since
//! (newest first, exactly: RFC 7541 §2.3.3), and refers to older ones by how many insertions
//! before it started watching they were made ([`crate::hpack::EntryId`]). A table found in
//! memory lists entries oldest first. If the table is that direction's, its newest entries are
//! the ones the tracer saw inserted, give or take a few the process inserted since (it runs
//! ahead of the events the tracer has read) or has not yet (the copy may be older): lined up
//! there, the entries before them are the ones from before attach, in order.
//!
//! A process holds many tables (one per direction of each connection, and other lists of
//! fields of the same shape), so an answer stands only if it is the same in every table and
//! every shift that lines up with what was seen, and at least one entry seen since attach
//! lines up: a table that agrees with nothing seen proves nothing.

use crate::{
    grpc::is_retained,
    hpack::{FieldValue, SeenEntry, Text, value_digest},
};

/// An entry of a table found in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    pub name: Text,
    pub value_len: usize,
    /// Kept only for allowlisted names.
    pub value: Option<Text>,
    /// For the others, [`crate::hpack::value_digest`] of it.
    pub value_digest: Option<u64>,
    /// Its HPACK size (RFC 7541 §4.1), where the table keeps it. An entry with neither a value
    /// nor a digest lines up by name and size alone.
    pub size: Option<usize>,
}

impl Recalled {
    /// The entry `name: value` as a table holds it: the value kept only if allowlisted, else
    /// its digest.
    pub fn of_field(name: &[u8], value: &[u8]) -> Option<Recalled> {
        let retained = is_retained(name);
        Some(Recalled {
            size: Some(name.len() + value.len() + 32),
            name: Text::decoded(name)?,
            value_len: value.len(),
            value: retained.then(|| Text::decoded(value)).flatten(),
            value_digest: (!retained).then(|| value_digest(value)),
        })
    }
}

/// Oldest first.
pub type Table = Vec<Recalled>;

/// How many entries the process may be ahead of (or behind) the tracer's view.
const MAX_SHIFT: i64 = 16;

/// The entry inserted `-insertion` insertions before watching began (`insertion` < 0), in the
/// table whose entries inserted since are `seen` (newest first): the same in every table of
/// `tables` that lines up with `seen`, or `None`.
pub fn entry_before_watching<'t>(
    tables: &'t [Table],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<&'t Recalled> {
    if insertion >= 0 || seen.is_empty() {
        return None;
    }
    // The alignments that agree with the most of what was seen; among those, one answer.
    let mut best = 0;
    let mut answer: Option<&Recalled> = None;
    let mut agreed = true;
    for table in tables {
        for shift in -MAX_SHIFT..=MAX_SHIFT {
            let Some((overlap, found)) = line_up(table, seen, shift, insertion) else {
                continue;
            };
            if overlap > best {
                (best, answer, agreed) = (overlap, Some(found), true);
            } else if overlap == best && answer != Some(found) {
                agreed = false;
            }
        }
    }
    answer.filter(|_| agreed)
}

/// With the newest `shift` entries of `table` inserted after what was `seen` (or, if negative,
/// the newest `-shift` entries seen not yet in it): how many seen entries are in the table, and
/// the entry wanted, if everything seen agrees with the table and at least one is in it.
fn line_up<'t>(
    table: &'t Table,
    seen: &[SeenEntry<'_>],
    shift: i64,
    insertion: i64,
) -> Option<(usize, &'t Recalled)> {
    let len = table.len() as i64;
    // Position in `table` of the entry `back` places behind the newest seen.
    let position = |back: i64| len - 1 - shift - back;
    let mut overlap = 0;
    for (back, seen) in seen.iter().enumerate() {
        let at = position(back as i64);
        if at >= len {
            continue; // Seen, but newer than the table.
        }
        if at < 0 || !agrees(seen, &table[at as usize]) {
            return None;
        }
        overlap += 1;
    }
    let wanted = position(seen.len() as i64 - 1 - insertion);
    if overlap == 0 || !(0..len).contains(&wanted) {
        return None;
    }
    Some((overlap, &table[wanted as usize]))
}

fn agrees(seen: &SeenEntry<'_>, recalled: &Recalled) -> bool {
    if seen.name.is_some_and(|name| *name != recalled.name) {
        return false;
    }
    if let (Some(seen), Some(recalled)) = (seen.size, recalled.size)
        && seen != recalled
    {
        return false;
    }
    if recalled.value.is_none() && recalled.value_digest.is_none() && recalled.size.is_some() {
        return true; // Its value was not read.
    }
    match seen.value {
        FieldValue::Known(text) | FieldValue::NameUnknown(text) => match &recalled.value {
            Some(value) => value == text,
            None => recalled.value_len == text.len(),
        },
        FieldValue::Redacted { len } => match (seen.value_digest, recalled.value_digest) {
            (Some(seen), Some(recalled)) => seen == recalled,
            _ => recalled.value_len == *len,
        },
        FieldValue::Unknown => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recalled(name: &str, value: &str) -> Recalled {
        Recalled {
            name: name.into(),
            value_len: value.len(),
            value: Some(value.into()),
            value_digest: None,
            size: None,
        }
    }

    fn table(fields: &[(&str, &str)]) -> Table {
        fields
            .iter()
            .map(|(name, value)| recalled(name, value))
            .collect()
    }

    struct Seen(Vec<(Text, FieldValue)>);

    impl Seen {
        fn new(fields: &[(&str, &str)]) -> Seen {
            Seen(
                fields
                    .iter()
                    .map(|(name, value)| ((*name).into(), FieldValue::Known((*value).into())))
                    .collect(),
            )
        }

        fn entries(&self) -> Vec<SeenEntry<'_>> {
            self.0
                .iter()
                .map(|(name, value)| SeenEntry {
                    name: Some(name),
                    value,
                    value_digest: None,
                    size: None,
                })
                .collect()
        }
    }

    const PATH: (&str, &str) = (":path", "/pkg.Svc/Unary");
    const AUTHORITY: (&str, &str) = (":authority", "localhost");
    const TIMEOUT: (&str, &str) = ("grpc-timeout", "100m");
    const STREAM: (&str, &str) = (":path", "/pkg.Svc/Stream");

    #[test]
    fn entries_before_attach_sit_behind_the_ones_seen_since() {
        let seen = Seen::new(&[STREAM, TIMEOUT]);
        let tables = [table(&[PATH, AUTHORITY, TIMEOUT, STREAM])];
        let found = |insertion| entry_before_watching(&tables, &seen.entries(), insertion);
        assert_eq!(found(-1), Some(&recalled(AUTHORITY.0, AUTHORITY.1)));
        assert_eq!(found(-2), Some(&recalled(PATH.0, PATH.1)));
        assert_eq!(found(-3), None, "evicted, or never there");
    }

    #[test]
    fn the_process_may_be_ahead_or_behind() {
        let later = ("grpc-timeout", "99m");
        // Two insertions the tracer has not read yet.
        let ahead = [table(&[PATH, TIMEOUT, later, STREAM])];
        assert_eq!(
            entry_before_watching(&ahead, &Seen::new(&[TIMEOUT]).entries(), -1),
            Some(&recalled(PATH.0, PATH.1))
        );
        // A copy taken before the newest insertion the tracer has seen.
        let behind = [table(&[PATH, TIMEOUT])];
        let seen_more = Seen::new(&[STREAM, TIMEOUT]);
        assert_eq!(
            entry_before_watching(&behind, &seen_more.entries(), -1),
            Some(&recalled(PATH.0, PATH.1))
        );
    }

    #[test]
    fn tables_that_disagree_give_no_answer() {
        let seen = Seen::new(&[TIMEOUT]);
        // Two connections, both with the timeout seen, different methods before it.
        let tables = [table(&[PATH, TIMEOUT]), table(&[STREAM, TIMEOUT])];
        assert_eq!(entry_before_watching(&tables, &seen.entries(), -1), None);
        // A table with nothing seen since attach in it proves nothing.
        let unrelated = [table(&[PATH, AUTHORITY])];
        assert_eq!(entry_before_watching(&unrelated, &seen.entries(), -1), None);
        // Nor does a direction that has seen no insertion.
        assert_eq!(entry_before_watching(&tables, &[], -1), None);
    }

    #[test]
    fn a_list_of_fields_that_ends_like_the_table_loses_to_the_table() {
        let failed = ("grpc-status", "13");
        let seen = Seen::new(&[TIMEOUT, failed, STREAM]);
        // The table, and a block's fields that end with the newest entry alone.
        let tables = [
            table(&[PATH, STREAM, failed, TIMEOUT]),
            table(&[AUTHORITY, (":status", "200"), TIMEOUT]),
        ];
        assert_eq!(
            entry_before_watching(&tables, &seen.entries(), -1),
            Some(&recalled(PATH.0, PATH.1))
        );
    }

    #[test]
    fn redacted_values_line_up_by_length() {
        let seen_value = FieldValue::Redacted { len: 6 };
        let name: Text = "authorization".into();
        let seen = [SeenEntry {
            name: Some(&name),
            value: &seen_value,
            value_digest: None,
            size: None,
        }];
        let secret = |value: &str| Recalled {
            name: "authorization".into(),
            value_len: value.len(),
            value: None,
            value_digest: None,
            size: None,
        };
        let tables = [vec![recalled(PATH.0, PATH.1), secret("abcdef")]];
        assert_eq!(
            entry_before_watching(&tables, &seen, -1),
            Some(&recalled(PATH.0, PATH.1))
        );
        let tables = [vec![recalled(PATH.0, PATH.1), secret("abcdefgh")]];
        assert_eq!(entry_before_watching(&tables, &seen, -1), None);
    }
}
