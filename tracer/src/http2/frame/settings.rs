//! SETTINGS (RFC 9113 §6.5).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    HeaderTableSize(u32),
    EnablePush(u32),
    MaxConcurrentStreams(u32),
    InitialWindowSize(u32),
    MaxFrameSize(u32),
    MaxHeaderListSize(u32),
    /// Unknown identifiers must be ignored (§6.5.2).
    Other(u16, u32),
}

/// The parameters of a SETTINGS payload; `None` if its length is not a multiple of 6.
pub fn parse(payload: &[u8]) -> Option<Vec<Setting>> {
    if !payload.len().is_multiple_of(6) {
        return None;
    }
    Some(
        payload
            .chunks_exact(6)
            .map(|entry| {
                let id = u16::from_be_bytes([entry[0], entry[1]]);
                let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                match id {
                    1 => Setting::HeaderTableSize(value),
                    2 => Setting::EnablePush(value),
                    3 => Setting::MaxConcurrentStreams(value),
                    4 => Setting::InitialWindowSize(value),
                    5 => Setting::MaxFrameSize(value),
                    6 => Setting::MaxHeaderListSize(value),
                    other => Setting::Other(other, value),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_and_unknown_parameters() {
        let payload = [0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0, 0, 9, 0, 0, 0, 1];
        assert_eq!(
            parse(&payload),
            Some(vec![
                Setting::HeaderTableSize(4096),
                Setting::MaxFrameSize(16_384),
                Setting::Other(9, 1)
            ])
        );
        assert_eq!(parse(&[0, 1, 0]), None);
    }
}
