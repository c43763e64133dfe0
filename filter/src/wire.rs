//! Fixed-width little-endian encoding of the small records kept in shared data.

/// Reads the little-endian `u64` at `offset`, if present.
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let end = offset.checked_add(8)?;
    let chunk: [u8; 8] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// Reads a little-endian `u32` at `offset`, if present.
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let chunk: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(chunk))
}

/// Encodes a counter as 8 little-endian bytes.
pub fn encode_u64(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// Decodes a counter written by [`encode_u64`]; anything else reads as 0.
pub fn decode_u64(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| u64_at(b, 0)).unwrap_or(0)
}
