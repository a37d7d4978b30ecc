//! A decoded header field, as far as a passive observer may keep it.

use super::{table::EntryId, text::Text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Known(Text),
    /// The name is not on the allowlist, or the value is not text: only its length was kept.
    Redacted {
        len: usize,
    },
    /// The field referenced a table entry from before we were watching.
    Unknown,
    /// A literal value under a name from before we were watching. Short text is kept, in case
    /// what the name is comes to be known (and is allowlisted); until then it is never shown.
    NameUnknown(Text),
}

impl FieldValue {
    pub fn byte_len(&self) -> usize {
        match self {
            FieldValue::Known(text) | FieldValue::NameUnknown(text) => text.len(),
            FieldValue::Redacted { len } => *len,
            FieldValue::Unknown => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// `None` when the name came from a table entry from before we were watching. A name that
    /// is not UTF-8 (HTTP/2 allows only lowercase ASCII) has its non-ASCII bytes replaced by
    /// `?`, which keeps its length (the table's sizes count it) and matches no header we read.
    pub name: Option<Text>,
    pub value: FieldValue,
    /// For a field whose name (and, if [`FieldValue::Unknown`], value) came from a table entry
    /// inserted before we were watching: that entry.
    pub from_before: Option<EntryId>,
}

impl HeaderField {
    /// The value, if it was kept.
    pub fn text(&self) -> Option<&Text> {
        match &self.value {
            FieldValue::Known(text) => Some(text),
            _ => None,
        }
    }
}
