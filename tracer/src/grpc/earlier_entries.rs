//! What a connection joined mid-flight learns of the header-table entries its encoders inserted
//! before the tracer was watching.
//!
//! Such an entry is referred to by index, its name and value unseen, but it keeps its identity
//! ([`EntryId`]) while its index shifts, and the grammar of gRPC over HTTP/2 says which field
//! must be where:
//! - a request carries exactly one `:path`, among its pseudo-headers, which come before every
//!   regular field (RFC 9113 §8.3, §8.3.1);
//! - a response's final block (trailers, or a Trailers-Only response) carries `grpc-status`,
//!   and response headers that do not end the stream never do (gRPC over HTTP/2, "Responses").
//!
//! So an entry seen beside a decoded `:path` is not `:path`; one seen in response headers is
//! not `grpc-status`; and when a block leaves a single entry where the field it must carry can
//! be, that entry is that field. A name learned so names every later field that refers to the
//! entry, and the literal values sent under it: a new error code after attach typically comes
//! as `grpc-status: 5` whose name refers to the entry of an older `grpc-status: 0`.
//!
//! Only what follows from every block seen is learned; an entry whose blocks contradict each
//! other (a peer that breaks the grammar) is learned as nothing.
//!
//! Values are not in the grammar: an entry whose whole field came from before attach is looked
//! up where the process keeps it ([`Recall`]), and must agree with what the grammar learned.

use foldhash::HashMap;

use super::{
    call::ConnectionFacts,
    headers::{BlockMeaning, EarlierField},
};
use crate::hpack::{Decoder, EntryId, SeenEntry, Text};

/// Where entries from before attach can be looked up: the traced process's own header tables
/// (`crate::process_memory`).
pub trait Recall {
    /// The entry inserted `-insertion` insertions before watching began (`insertion` < 0), in
    /// the table of `connection` whose entries since are `seen` (newest first): its name, and
    /// its value when the name is allowlisted.
    fn entry(
        &mut self,
        connection: &ConnectionFacts,
        seen: &[SeenEntry<'_>],
        insertion: i64,
    ) -> Option<(Text, Option<Text>)>;

    /// Whether an entry of `connection` not found now may be found later (so a call is worth
    /// holding back).
    fn can_answer(&mut self, connection: &ConnectionFacts) -> bool;
}

/// The fields the grammar lets us name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Path,
    GrpcStatus,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Path => ":path",
            Field::GrpcStatus => "grpc-status",
        }
    }
}

/// What is known of one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Learned {
    is: Option<Field>,
    not_path: bool,
    not_grpc_status: bool,
    /// Its blocks disagree: nothing about it is trusted.
    contradicted: bool,
    /// Its name and value, as [`Recall`] found them.
    recalled: Option<(Text, Option<Text>)>,
}

impl Learned {
    fn could_be(&self, field: Field) -> bool {
        !self.contradicted
            && match field {
                Field::Path => !self.not_path,
                Field::GrpcStatus => !self.not_grpc_status,
            }
    }

    fn rule_out(&mut self, field: Field) {
        match field {
            Field::Path => self.not_path = true,
            Field::GrpcStatus => self.not_grpc_status = true,
        }
        self.contradicted |= self.is == Some(field);
    }

    fn name(&mut self, field: Field) {
        self.contradicted |= !self.could_be(field) || self.is.is_some_and(|is| is != field);
        self.is = Some(field);
    }

    fn is(&self, field: Field) -> bool {
        !self.contradicted && self.is == Some(field)
    }
}

/// One direction's entries from before attach, as far as its blocks have told.
#[derive(Default)]
pub(super) struct EarlierEntries {
    learned: HashMap<EntryId, Learned>,
}

/// Entries a direction keeps knowledge of: a table of the default 4,096 bytes holds at most 128
/// entries; a table allowed more forgets what it learned rather than grow without bound.
const MAX_LEARNED: usize = 1024;

impl EarlierEntries {
    /// A request's header block.
    pub fn request(&mut self, meaning: &BlockMeaning) {
        let Some(request) = &meaning.request else {
            return; // Not gRPC: its fields are not read.
        };
        if request.path.is_some() {
            self.rule_out_all(&meaning.earlier, Field::Path);
        } else {
            self.name_the_only_one(&meaning.earlier, Field::Path, |field| {
                field.among_pseudo_headers && field.value.is_none()
            });
        }
    }

    /// Response headers that do not end the stream.
    pub fn response_headers(&mut self, meaning: &BlockMeaning) {
        self.rule_out_all(&meaning.earlier, Field::GrpcStatus);
    }

    /// The block that ends a response. Returns the `grpc-status` it carries under a name from
    /// before attach, when that is learned and its value was sent as a literal.
    pub fn final_block(&mut self, meaning: &BlockMeaning) -> Option<u32> {
        if meaning.response.grpc_status.is_some() {
            self.rule_out_all(&meaning.earlier, Field::GrpcStatus);
            return None;
        }
        self.name_the_only_one(&meaning.earlier, Field::GrpcStatus, |_| true);
        meaning
            .earlier
            .iter()
            .find(|field| self.is(field.entry, Field::GrpcStatus))
            .and_then(|field| field.value.as_deref()?.parse().ok())
    }

    /// The value of the one field among `entries` that is `field`, looked up with `recall`
    /// where needed (in the table `decoder` holds): `None` unless exactly one is, by name,
    /// without contradicting the grammar. A field sent as a literal under an entry's name
    /// comes with its own value (`None` for a whole entry). What was found is kept; what was
    /// not is asked again next time (`recall` knows when its answer cannot have changed).
    pub fn recall(
        &mut self,
        field: Field,
        entries: impl Iterator<Item = (EntryId, Option<Text>)>,
        decoder: &Decoder,
        recall: &mut dyn Recall,
        connection: &ConnectionFacts,
    ) -> Option<Text> {
        // When the grammar already named one of them, only that one is looked up.
        let entries: Vec<(EntryId, Option<Text>)> = entries.collect();
        let named = entries.iter().any(|(entry, _)| self.is(*entry, field));
        let mut seen = None;
        let mut found = None;
        for (entry, literal) in entries {
            if named && !self.is(entry, field) {
                continue;
            }
            let learned = self.learned.get(&entry);
            if learned.is_some_and(|learned| !learned.could_be(field)) {
                continue;
            }
            let recalled = match learned.and_then(|learned| learned.recalled.clone()) {
                Some(recalled) => Some(recalled),
                // From before a lost block: not an entry of the table as it is now.
                None if entry.watch != decoder.watch() => None,
                None => {
                    let seen = seen.get_or_insert_with(|| decoder.seen_entries());
                    // An answer the grammar contradicts (the entry is `field` and the answer
                    // names another, or the reverse) is not the entry: not kept, not used.
                    let named_here = self.is(entry, field);
                    let recalled = recall
                        .entry(connection, seen, entry.insertion)
                        .filter(|(name, _)| !named_here || **name == *field.name());
                    if recalled.is_some() {
                        self.learn(entry).recalled.clone_from(&recalled);
                    }
                    recalled
                }
            };
            let Some((name, value)) = recalled else {
                continue;
            };
            if *name != *field.name() {
                continue;
            }
            if found.is_some() {
                return None; // Two fields that are both it: something is wrong.
            }
            found = Some(literal.or(value));
        }
        found.flatten()
    }

    /// Whether `entry` is learned to be `field`.
    pub fn is(&self, entry: EntryId, field: Field) -> bool {
        self.learned
            .get(&entry)
            .is_some_and(|learned| learned.is(field))
    }

    fn rule_out_all(&mut self, fields: &[EarlierField], field: Field) {
        for earlier in fields {
            self.learn(earlier.entry).rule_out(field);
        }
    }

    /// `field` is in the block, and if only one of its `candidates` can be it, that one is.
    fn name_the_only_one(
        &mut self,
        fields: &[EarlierField],
        field: Field,
        candidate: impl Fn(&EarlierField) -> bool,
    ) {
        let mut only = None;
        for earlier in fields.iter().filter(|earlier| candidate(earlier)) {
            let could_be = self
                .learned
                .get(&earlier.entry)
                .is_none_or(|learned| learned.could_be(field));
            match only {
                _ if !could_be => {}
                // The same entry twice is one field (a literal under its name, or itself).
                Some(entry) if entry == earlier.entry => {}
                Some(_) => return,
                None => only = Some(earlier.entry),
            }
        }
        if let Some(entry) = only {
            self.learn(entry).name(field);
        }
    }

    fn learn(&mut self, entry: EntryId) -> &mut Learned {
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&entry) {
            self.learned.clear();
        }
        self.learned.entry(entry).or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::grpc::headers::{RequestHeaders, ResponseHeaders};

    fn id(insertion: i64) -> EntryId {
        EntryId {
            watch: 0,
            insertion,
        }
    }

    fn whole(insertion: i64, among_pseudo_headers: bool) -> EarlierField {
        EarlierField {
            entry: id(insertion),
            value: None,
            among_pseudo_headers,
        }
    }

    fn request(path: Option<&str>, earlier: Vec<EarlierField>) -> BlockMeaning {
        BlockMeaning {
            has_request_pseudo_headers: true,
            request: Some(Rc::new(RequestHeaders {
                path: path.map(Into::into),
                ..RequestHeaders::default()
            })),
            earlier: earlier.into(),
            ..BlockMeaning::default()
        }
    }

    fn trailers(grpc_status: Option<u32>, earlier: Vec<EarlierField>) -> BlockMeaning {
        BlockMeaning {
            response: ResponseHeaders {
                grpc_status,
                ..ResponseHeaders::default()
            },
            earlier: earlier.into(),
            ..BlockMeaning::default()
        }
    }

    #[test]
    fn path_is_the_one_pseudo_header_entry_not_seen_beside_a_decoded_path() {
        let mut entries = EarlierEntries::default();
        // grpcio: `:path`, `:authority`, then `:method` and `:scheme` from the static table,
        // then regular fields. Two entries where `:path` can be: not enough.
        let unary = || {
            request(
                None,
                vec![whole(-1, true), whole(-2, true), whole(-3, false)],
            )
        };
        entries.request(&unary());
        assert!(!entries.is(id(-1), Field::Path) && !entries.is(id(-2), Field::Path));
        // A method first called after attach: its path is a literal, so -2 is not `:path`.
        entries.request(&request(
            Some("/pkg.Svc/Stream"),
            vec![whole(-2, true), whole(-3, false)],
        ));
        entries.request(&unary());
        assert!(entries.is(id(-1), Field::Path));
        assert!(!entries.is(id(-2), Field::Path) && !entries.is(id(-3), Field::Path));
    }

    #[test]
    fn a_field_after_a_regular_one_is_never_the_path() {
        let mut entries = EarlierEntries::default();
        entries.request(&request(None, vec![whole(-1, true), whole(-3, false)]));
        assert!(entries.is(id(-1), Field::Path));
        assert!(!entries.is(id(-3), Field::Path));
    }

    #[test]
    fn an_error_code_sent_under_an_earlier_grpc_status_name_is_read() {
        let mut entries = EarlierEntries::default();
        // Response headers: `:status 200` and the content-type entry.
        let headers = BlockMeaning {
            has_status: true,
            earlier: vec![whole(-1, false)].into(),
            ..BlockMeaning::default()
        };
        entries.response_headers(&headers);
        // Trailers of an OK call: the earlier `grpc-status: 0`, value unseen.
        assert_eq!(
            entries.final_block(&trailers(None, vec![whole(-3, true)])),
            None
        );
        assert!(entries.is(id(-3), Field::GrpcStatus));
        // Trailers-Only: the content-type entry, and `5` under -3's name.
        let failed = trailers(
            None,
            vec![
                whole(-1, false),
                EarlierField {
                    entry: id(-3),
                    value: Some("5".into()),
                    among_pseudo_headers: false,
                },
            ],
        );
        assert_eq!(entries.final_block(&failed), Some(5));
    }

    #[test]
    fn two_candidates_leave_the_status_unknown() {
        let mut entries = EarlierEntries::default();
        let literal = |insertion, value: &str| EarlierField {
            entry: id(insertion),
            value: Some(value.into()),
            among_pseudo_headers: false,
        };
        // Nothing says which of -1 and -2 is grpc-status: neither is read, even if one of them
        // is text that parses as a code (an error without grpc-message, a custom trailer "7").
        let block = trailers(None, vec![literal(-1, "7"), literal(-2, "13")]);
        assert_eq!(entries.final_block(&block), None);
        assert!(!entries.is(id(-1), Field::GrpcStatus) && !entries.is(id(-2), Field::GrpcStatus));
    }

    #[test]
    fn a_peer_that_breaks_the_grammar_teaches_nothing() {
        let mut entries = EarlierEntries::default();
        entries.final_block(&trailers(None, vec![whole(-1, false)]));
        assert!(entries.is(id(-1), Field::GrpcStatus));
        // The same entry in response headers that do not end the stream.
        entries.response_headers(&BlockMeaning {
            earlier: vec![whole(-1, false)].into(),
            ..BlockMeaning::default()
        });
        assert!(!entries.is(id(-1), Field::GrpcStatus));
        let literal = EarlierField {
            entry: id(-1),
            value: Some("0".into()),
            among_pseudo_headers: false,
        };
        assert_eq!(entries.final_block(&trailers(None, vec![literal])), None);
    }
}
