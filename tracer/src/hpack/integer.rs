//! Prefixed integers (RFC 7541 §5.1).

use super::DecodeError;

/// Decodes an integer whose first byte keeps `prefix_bits` low bits for it. Returns the value
/// and the bytes consumed.
pub fn decode(input: &[u8], prefix_bits: u8) -> Result<(usize, usize), DecodeError> {
    let first = *input.first().ok_or(DecodeError::Truncated)?;
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok((value, 1));
    }
    let mut shift = 0u32;
    for (index, &byte) in input[1..].iter().enumerate() {
        // Header fields larger than a few MiB are nonsense here; bound the shift to avoid
        // overflow rather than trusting the input.
        if shift > 28 {
            return Err(DecodeError::IntegerOverflow);
        }
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok((value, index + 2));
        }
    }
    Err(DecodeError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7541_c1_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at an octet boundary.
        assert_eq!(decode(&[0b0000_1010], 5), Ok((10, 1)));
        assert_eq!(
            decode(&[0b0001_1111, 0b1001_1010, 0b0000_1010], 5),
            Ok((1337, 3))
        );
        assert_eq!(decode(&[42], 8), Ok((42, 1)));
    }

    #[test]
    fn truncated_and_oversized() {
        assert_eq!(decode(&[0x1f, 0x9a], 5), Err(DecodeError::Truncated));
        assert_eq!(decode(&[], 5), Err(DecodeError::Truncated));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 8),
            Err(DecodeError::IntegerOverflow)
        );
    }
}
