//! Which headers the tracer keeps, and how their values are read.

use std::time::Duration;

/// The only header values ever retained; everything else (authorization, cookies, custom
/// metadata) is reduced to its length by the HPACK decoder and never leaves it.
pub const RETAINED_HEADERS: &[&str] = &[
    ":method",
    ":scheme",
    ":path",
    ":authority",
    ":status",
    "content-type",
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-status",
    "grpc-message",
    "user-agent",
    "traceparent",
    "tracestate",
    "grpc-trace-bin",
];

pub fn is_retained(name: &[u8]) -> bool {
    RETAINED_HEADERS
        .iter()
        .any(|retained| retained.as_bytes() == name)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The most of a `grpc-message` a call record keeps, in bytes. An application may put anything
/// in it (a 200 KB message became a 201 KB JSON line); what is cut is marked.
pub const MAX_GRPC_MESSAGE: usize = 1024;

/// What marks a `grpc-message` cut at [`MAX_GRPC_MESSAGE`].
pub const TRUNCATED: &str = "…[truncated]";

/// A `grpc-message` as a call record keeps it: percent-decoded, and cut to
/// [`MAX_GRPC_MESSAGE`] bytes (at a character boundary), marked [`TRUNCATED`].
pub fn grpc_message(value: &str) -> String {
    let mut message = percent_decode(value);
    if message.len() > MAX_GRPC_MESSAGE {
        let mut end = MAX_GRPC_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(TRUNCATED);
    }
    message
}

/// `grpc-message` is percent-encoded UTF-8; invalid escapes are kept literally, as gRPC
/// implementations do.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let (Some(high), Some(low)) =
                (hex_digit(bytes[index + 1]), hex_digit(bytes[index + 2]))
        {
            out.push(high << 4 | low);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// Splits `/package.Service/Method` into service and method.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    // Byte searches (a `/` never falls inside a longer character): this runs for every call,
    // on strings too short for a general string search to pay off.
    let slash = find_byte(rest, b'/')?;
    let (service, method) = (&rest[..slash], &rest[slash + 1..]);
    (!service.is_empty() && !method.is_empty() && find_byte(method, b'/').is_none())
        .then_some((service, method))
}

/// Where the ASCII byte `byte` first occurs in `text`.
fn find_byte(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|candidate| candidate == byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_grpc_message_is_cut_and_marked() {
        assert_eq!(grpc_message("no%20such%20item"), "no such item");
        let long = grpc_message(&"é".repeat(100_000));
        assert!(long.ends_with(TRUNCATED), "{}", &long[..20]);
        let kept = long.len() - TRUNCATED.len();
        assert!(
            (MAX_GRPC_MESSAGE - 1..=MAX_GRPC_MESSAGE).contains(&kept),
            "{kept}"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("not%20found%3A%20key%E2%9C%93"),
            "not found: key\u{2713}"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%\u{e9}x"), "%\u{e9}x");
    }

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        assert_eq!(split_path("/x"), None);
        assert_eq!(split_path("/a/b/c"), None);
    }

    #[test]
    fn allowlist() {
        assert!(is_retained(b":path") && is_retained(b"traceparent"));
        assert!(
            !is_retained(b"authorization") && !is_retained(b"cookie") && !is_retained(b"x-api-key")
        );
    }
}
