//! What a decoded header block says: the request headers a call record keeps, and the outcome
//! a response's headers or trailers carry.
//!
//! A block is read once, both ways (which side sent it may not be known yet). Blocks repeat
//! from call to call, and so does what they say: a connection's tracker keeps the meaning of
//! the blocks its decoders hand out as repeats, and a call's request headers are shared, not
//! copied.

use std::{rc::Rc, time::Duration};

use super::metadata::{grpc_message, parse_timeout};
use crate::{
    hpack::{EntryId, FieldValue, HeaderField, Text},
    recent::Recent,
};

/// The request headers a call record keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `:path`; `None` when it referenced header table state from before attach.
    pub path: Option<Text>,
    /// When `path` is `None`: the entries from before attach that the block referred to where
    /// `:path` can be (among the pseudo-headers, RFC 9113 §8.3). One of them is `:path`.
    pub path_candidates: Box<[EntryId]>,
    pub authority: Option<Text>,
    pub user_agent: Option<Text>,
    pub grpc_encoding: Option<Text>,
    pub timeout: Option<Duration>,
    pub traceparent: Option<Text>,
    pub tracestate: Option<Text>,
    pub grpc_trace_bin: Option<Text>,
    /// False when the request is taken for gRPC without its `content-type` having been read
    /// (it referenced header table state from before attach): see [`BlockMeaning::of`].
    pub content_type_known: bool,
}

/// What a response header block (headers or trailers) says of the call's outcome. A field that
/// is absent or unreadable is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub http_status: Option<u16>,
    pub grpc_status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// A field referenced header table state from before attach: a missing `grpc-status`
    /// may just be unreadable.
    pub had_unknown_fields: bool,
}

/// A field of a block whose name came from a table entry inserted before attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierField {
    /// The entry its name (and, when `value` is `None`, its value) came from.
    pub entry: EntryId,
    /// A literal value under that name, when it was short text (never shown unless the name
    /// becomes known); `None` when the whole field is the entry's.
    pub value: Option<Text>,
    /// No field with a known regular (non-pseudo) name came before it, so it may be a
    /// pseudo-header.
    pub among_pseudo_headers: bool,
}

/// One header block, read as a request and as a response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BlockMeaning {
    /// It has request pseudo-headers (`:method`, `:path` or `:scheme`).
    pub has_request_pseudo_headers: bool,
    pub has_status: bool,
    /// As a request; `None` when it is not a gRPC request (see [`BlockMeaning::of`]).
    pub request: Option<Rc<RequestHeaders>>,
    pub response: ResponseHeaders,
    /// Its fields named by entries from before attach, in order.
    pub earlier: Box<[EarlierField]>,
}

impl BlockMeaning {
    /// Reads a decoded block. A request is gRPC when its `content-type` says so
    /// (`application/grpc`, `application/grpc+proto`, ...: gRPC over HTTP/2, "Requests"); one
    /// that has none, or another, is some other HTTP/2 request. When the content-type cannot
    /// be read (it referenced table state from before attach), the request is taken for gRPC
    /// unless its `:path` could not be a gRPC method (`/Service/Method`), and the request says
    /// that its content-type was not known.
    pub fn of(fields: &[HeaderField]) -> BlockMeaning {
        let mut meaning = BlockMeaning::default();
        let mut request = RequestHeaders::default();
        // `None`: no content-type seen; `Some(None)`: one whose value is unknown.
        let mut content_type: Option<Option<bool>> = None;
        let mut earlier = Vec::new();
        let mut among_pseudo_headers = true;
        for field in fields {
            let Some(name) = field.name.as_deref() else {
                meaning.response.had_unknown_fields = true;
                if let Some(entry) = field.from_before {
                    earlier.push(EarlierField {
                        entry,
                        value: match &field.value {
                            FieldValue::NameUnknown(text) => Some(text.clone()),
                            _ => None,
                        },
                        among_pseudo_headers,
                    });
                }
                continue;
            };
            among_pseudo_headers &= name.starts_with(':');
            if field.value == FieldValue::Unknown {
                meaning.response.had_unknown_fields = true;
            }
            let text = field.text();
            // Only the values the call record keeps are copied; header text is shared with the
            // HPACK table.
            match name {
                ":method" | ":scheme" => meaning.has_request_pseudo_headers = true,
                ":path" => {
                    meaning.has_request_pseudo_headers = true;
                    request.path = text.cloned();
                }
                ":authority" => request.authority = text.cloned(),
                "user-agent" => request.user_agent = text.cloned(),
                "grpc-encoding" => request.grpc_encoding = text.cloned(),
                "traceparent" => request.traceparent = text.cloned(),
                "tracestate" => request.tracestate = text.cloned(),
                "grpc-trace-bin" => request.grpc_trace_bin = text.cloned(),
                "grpc-timeout" => request.timeout = text.and_then(|text| parse_timeout(text)),
                "content-type" => content_type = Some(text.map(|text| is_grpc_content_type(text))),
                ":status" => {
                    meaning.has_status = true;
                    meaning.response.http_status = text.and_then(|text| text.parse().ok());
                }
                "grpc-status" => {
                    meaning.response.grpc_status = text.and_then(|text| text.parse().ok())
                }
                "grpc-message" => {
                    meaning.response.grpc_message = text.map(|text| grpc_message(text))
                }
                _ => {}
            }
        }
        let grpc = match content_type {
            Some(Some(grpc)) => {
                request.content_type_known = true;
                grpc
            }
            // Absent for sure only when every field of the block could be read.
            None if !meaning.response.had_unknown_fields => false,
            None | Some(None) => request.path.as_deref().is_none_or(is_grpc_path),
        };
        if request.path.is_none() {
            request.path_candidates = earlier
                .iter()
                .filter(|field| field.among_pseudo_headers && field.value.is_none())
                .map(|field| field.entry)
                .collect();
        }
        meaning.request = grpc.then(|| Rc::new(request));
        meaning.earlier = earlier.into();
        meaning
    }
}

/// `application/grpc`, alone or with a `+format` or parameters (gRPC over HTTP/2,
/// "Content-Type"). gRPC-Web's `application/grpc-web` is another protocol.
fn is_grpc_content_type(content_type: &str) -> bool {
    content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

/// Whether `:path` has the shape of a gRPC method: `/Service-Name/method-name`.
fn is_grpc_path(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        })
}

/// The meaning of the last few blocks a decoder handed out as repeats, by their serial number.
#[derive(Default)]
pub struct KnownMeanings {
    entries: Recent<(u64, Rc<BlockMeaning>), KNOWN_MEANINGS>,
}

/// As many as the decoder remembers blocks.
const KNOWN_MEANINGS: usize = 4;

impl KnownMeanings {
    /// The meaning of the repeat numbered `serial`, read from its `fields` the first time.
    pub fn of_repeat(&mut self, serial: u64, fields: &[HeaderField]) -> Rc<BlockMeaning> {
        if let Some((_, meaning)) = self.entries.find(|(known, _)| *known == serial) {
            return Rc::clone(meaning);
        }
        let meaning = Rc::new(BlockMeaning::of(fields));
        self.entries.insert((serial, Rc::clone(&meaning)));
        meaning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &'static str, value: &str) -> HeaderField {
        HeaderField {
            name: Some(Text::Static(name)),
            value: FieldValue::Known(value.into()),
            from_before: None,
        }
    }

    fn earlier(insertion: i64) -> HeaderField {
        HeaderField {
            name: None,
            value: FieldValue::Unknown,
            from_before: Some(EntryId {
                watch: 0,
                insertion,
            }),
        }
    }

    #[test]
    fn a_request_block_says_what_the_call_record_keeps() {
        let fields = [
            field(":method", "POST"),
            field(":path", "/shop.Catalog/GetItem"),
            field("content-type", "application/grpc+proto"),
            field("grpc-timeout", "100m"),
            field("user-agent", "grpc-go/1.70"),
            HeaderField {
                name: Some(Text::Static("authorization")),
                value: FieldValue::Redacted { len: 12 },
                from_before: None,
            },
        ];
        let meaning = BlockMeaning::of(&fields);
        assert!(meaning.has_request_pseudo_headers && !meaning.has_status);
        let request = meaning.request.expect("gRPC");
        assert_eq!(request.path.as_deref(), Some("/shop.Catalog/GetItem"));
        assert_eq!(request.user_agent.as_deref(), Some("grpc-go/1.70"));
        assert_eq!(request.timeout, Some(Duration::from_millis(100)));
        assert_eq!(request.authority, None);
        assert!(request.content_type_known);
        let mut not_grpc = fields.to_vec();
        not_grpc[2] = field("content-type", "text/html");
        assert_eq!(BlockMeaning::of(&not_grpc).request, None);
        not_grpc[2] = field("content-type", "application/grpc-web");
        assert_eq!(BlockMeaning::of(&not_grpc).request, None);
    }

    #[test]
    fn a_request_without_a_content_type_is_not_grpc() {
        // What h2load sends to a web server.
        let fields = [
            field(":method", "GET"),
            field(":path", "/shop.Catalog/GetItem"),
            field(":scheme", "http"),
        ];
        assert_eq!(BlockMeaning::of(&fields).request, None);
    }

    #[test]
    fn an_unreadable_content_type_leaves_the_path_to_decide_and_says_so() {
        let unknown = earlier(-1);
        let with_path = |path: &str| [field(":path", path), unknown.clone()];
        let request = BlockMeaning::of(&with_path("/shop.Catalog/GetItem"))
            .request
            .expect("taken for gRPC");
        assert!(!request.content_type_known);
        assert_eq!(BlockMeaning::of(&with_path("/index.html")).request, None);
        assert_eq!(BlockMeaning::of(&with_path("/a/b/c")).request, None);
        // Neither the content-type nor the path is known: a call whose method is unknown.
        assert!(BlockMeaning::of(&[unknown]).request.is_some());
    }

    #[test]
    fn a_response_block_says_how_the_call_ended() {
        let trailers = [
            field("grpc-status", "5"),
            field("grpc-message", "no%20such%20item"),
        ];
        let meaning = BlockMeaning::of(&trailers);
        assert_eq!(
            meaning.response,
            ResponseHeaders {
                http_status: None,
                grpc_status: Some(5),
                grpc_message: Some("no such item".into()),
                had_unknown_fields: false,
            }
        );
        // Fields from before attach: a status may hide in them.
        let late = [field(":status", "200"), earlier(-1)];
        let meaning = BlockMeaning::of(&late);
        assert!(meaning.has_status && meaning.response.had_unknown_fields);
        assert_eq!(meaning.response.http_status, Some(200));
    }

    #[test]
    fn a_repeat_is_read_once_by_its_serial_number() {
        let ok = [field("grpc-status", "0")];
        let failed = [field("grpc-status", "13")];
        let mut known = KnownMeanings::default();
        assert_eq!(known.of_repeat(7, &ok).response.grpc_status, Some(0));
        // The same serial is the same block: its fields are not read again.
        assert_eq!(known.of_repeat(7, &failed).response.grpc_status, Some(0));
        assert_eq!(known.of_repeat(8, &failed).response.grpc_status, Some(13));
        // Older serials make room for newer ones, and are read afresh if they come back.
        for serial in 9..9 + KNOWN_MEANINGS as u64 {
            known.of_repeat(serial, &ok);
        }
        assert_eq!(known.of_repeat(7, &failed).response.grpc_status, Some(13));
    }
}
