//! Huffman-coded string literals (RFC 7541 §5.2, code in Appendix B).

use std::sync::OnceLock;

use super::huffman_code::CODES;

const EOS: u16 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman string contains the EOS symbol")]
    Eos,
    #[error("Huffman string has invalid padding")]
    Padding,
}

/// A binary trie over the code: `children[node][bit]` is either another node or a leaf symbol.
struct Trie {
    children: Vec<[Link; 2]>,
}

#[derive(Clone, Copy)]
enum Link {
    None,
    Node(u16),
    Symbol(u16),
}

fn trie() -> &'static Trie {
    static TRIE: OnceLock<Trie> = OnceLock::new();
    TRIE.get_or_init(|| {
        let mut children = vec![[Link::None; 2]];
        for (symbol, &(code, bits)) in CODES.iter().enumerate() {
            let mut node = 0usize;
            for position in (0..bits).rev() {
                let bit = ((code >> position) & 1) as usize;
                if position == 0 {
                    children[node][bit] = Link::Symbol(symbol as u16);
                } else {
                    node = match children[node][bit] {
                        Link::Node(next) => next as usize,
                        _ => {
                            children.push([Link::None; 2]);
                            let next = children.len() - 1;
                            children[node][bit] = Link::Node(next as u16);
                            next
                        }
                    };
                }
            }
        }
        Trie { children }
    })
}

/// Decodes a Huffman-coded string.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
    let mut out = Vec::new();
    decode_into(input, &mut out).map(|()| out)
}

/// [`decode`] into `out`, cleared first.
pub fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let trie = trie();
    out.clear();
    out.reserve(input.len() * 8 / 5);
    let mut node = 0usize;
    // Bits consumed since the last complete symbol, and whether they were all ones: the only
    // valid padding is a prefix of EOS (all ones), at most 7 bits long (§5.2).
    let mut pending_bits = 0u32;
    let mut pending_all_ones = true;
    for &byte in input {
        for position in (0..8).rev() {
            let bit = ((byte >> position) & 1) as usize;
            pending_bits += 1;
            pending_all_ones &= bit == 1;
            match trie.children[node][bit] {
                Link::Node(next) => node = next as usize,
                Link::Symbol(EOS) => return Err(HuffmanError::Eos),
                Link::Symbol(symbol) => {
                    out.push(symbol as u8);
                    node = 0;
                    pending_bits = 0;
                    pending_all_ones = true;
                }
                Link::None => return Err(HuffmanError::Padding),
            }
        }
    }
    if pending_bits > 7 || !pending_all_ones {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::unhex;

    #[test]
    fn decodes_rfc_7541_appendix_c_strings() {
        for (hex, text) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
        ] {
            assert_eq!(decode(&unhex(hex)).unwrap(), text.as_bytes(), "{hex}");
        }
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // 8 bits of ones: padding longer than 7 bits.
        assert_eq!(decode(&[0xff]), Err(HuffmanError::Padding));
        // '0' is 00000 (5 bits); padding with zeros instead of ones.
        assert_eq!(decode(&[0b0000_0000]), Err(HuffmanError::Padding));
        // EOS itself (30 ones) followed by padding.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }
}
