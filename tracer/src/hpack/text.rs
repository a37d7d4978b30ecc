//! Header names and values as the decoder hands them out.

use std::{fmt, ops::Deref, rc::Rc};

/// Header text that is never copied once decoded: a static table entry is borrowed, anything
/// else is shared between the dynamic table entry that holds it, the fields that reference it
/// and the call records that keep it. A connection sends the same method path, authority and
/// user agent with every call, so keeping them costs a reference count, not an allocation.
#[derive(Clone)]
pub enum Text {
    Static(&'static str),
    Shared(Rc<str>),
}

impl Text {
    /// Text decoded off the wire, if it is UTF-8.
    pub fn decoded(bytes: &[u8]) -> Option<Text> {
        std::str::from_utf8(bytes).ok().map(Text::from)
    }
}

impl Text {
    /// Whether both are the same text, not merely equal text: a cheap test that a value is the
    /// one seen before, for a caller that keeps that one alive.
    pub fn is_same(&self, other: &Text) -> bool {
        match (self, other) {
            (Text::Static(text), Text::Static(other)) => std::ptr::eq(*text, *other),
            (Text::Shared(text), Text::Shared(other)) => Rc::ptr_eq(text, other),
            _ => false,
        }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Static(text) => text,
            Text::Shared(text) => text,
        }
    }
}

/// Equal when the text is, wherever it is kept.
impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::Shared(Rc::from(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text::Shared(Rc::from(text))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, formatter)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, formatter)
    }
}
