//! Header maps: request/response headers and trailers and the callout
//! response maps, plus the proxy-wasm map serialization.

use super::mem::{guest_alloc, read, return_bytes, write_u32};
use super::status::{NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use crate::wasm::HeaderList;
use wasmtime::Caller;

/// Serializes a map: u32 count, count × (u32 key len, u32 value len), then
/// each key and value followed by a NUL. An empty map is empty bytes (the
/// caller returns it as pointer 0 / length 0, which the Rust SDK requires).
pub fn serialize(map: &HeaderList) -> Vec<u8> {
    if map.is_empty() {
        return Vec::new();
    }
    let size = 4 + map.iter().map(|(k, v)| 10 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses a serialized map; accepts empty bytes and a lone zero count.
pub fn deserialize(bytes: &[u8]) -> Option<HeaderList> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(sizes.len());
    for (kl, vl) in sizes {
        let k = bytes.get(at..at + kl)?.to_vec();
        at += kl + 1;
        let v = bytes.get(at..at + vl)?.to_vec();
        at += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

/// Lowercases a header name.
pub fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

/// The map of `map_type` for the effective context, if available.
fn map_mut(state: &mut HostState, map_type: i32) -> Option<&mut HeaderList> {
    match map_type {
        6 => return state.call_response.as_mut().map(|r| &mut r.headers),
        7 => return state.call_response.as_mut().map(|r| &mut r.trailers),
        _ => {}
    }
    let ctx = state.effective_http()?;
    match map_type {
        0 => Some(&mut ctx.request_headers),
        1 => Some(&mut ctx.request_trailers),
        2 => Some(&mut ctx.response_headers),
        3 => Some(&mut ctx.response_trailers),
        _ => None,
    }
}

/// Removes every value of `key` (case-insensitive).
pub fn remove(map: &mut HeaderList, key: &[u8]) {
    map.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
}

/// The first value of `key` (case-insensitive).
pub fn get<'a>(map: &'a HeaderList, key: &[u8]) -> Option<&'a [u8]> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_slice())
}

/// Sets `key` to `value`, replacing every existing value.
pub fn replace(map: &mut HeaderList, key: &[u8], value: &[u8]) {
    if let Some(pos) = map.iter().position(|(k, _)| k.eq_ignore_ascii_case(key)) {
        map[pos].1 = value.to_vec();
        let mut i = 0;
        map.retain(|(k, _)| {
            i += 1;
            i - 1 == pos || !k.eq_ignore_ascii_case(key)
        });
    } else {
        map.push((lower(key), value.to_vec()));
    }
}

/// All pairs of a map (OK and an empty map when it is unavailable).
pub fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let bytes = map_mut(caller.data_mut(), map_type).map(|m| serialize(m)).unwrap_or_default();
    return_bytes(&mut caller, &bytes, ret_ptr, ret_len)?;
    Ok(OK)
}

/// Replaces a whole map.
pub fn proxy_set_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    ptr: i32,
    len: i32,
) -> HostResult {
    let bytes = read(&mut caller, ptr, len)?;
    let pairs = deserialize(&bytes).ok_or_else(|| wasmtime::Error::msg("malformed header map"))?;
    if let Some(map) = map_mut(caller.data_mut(), map_type) {
        *map = pairs.into_iter().map(|(k, v)| (lower(&k), v)).collect();
    }
    Ok(OK)
}

/// One value of a map: OK or NOT_FOUND.
pub fn proxy_get_header_map_value(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let key = read(&mut caller, key_ptr, key_len)?;
    let value = map_mut(caller.data_mut(), map_type).and_then(|m| get(m, &key).map(<[u8]>::to_vec));
    match value {
        Some(v) if !v.is_empty() => {
            return_bytes(&mut caller, &v, ret_ptr, ret_len)?;
            Ok(OK)
        }
        // An empty value must still read as present: the SDK maps a null
        // pointer to `None`, so hand it a one-byte allocation of length 0.
        Some(_) => {
            write_u32(&mut caller, ret_len, 0)?;
            return_empty_present(&mut caller, ret_ptr)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

fn return_empty_present(caller: &mut Caller<'_, HostState>, ret_ptr: i32) -> wasmtime::Result<()> {
    let p = guest_alloc(caller, 1)?;
    write_u32(caller, ret_ptr, p as u32)
}

fn key_value(
    caller: &mut Caller<'_, HostState>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> wasmtime::Result<(Vec<u8>, Vec<u8>)> {
    Ok((read(caller, kp, kl)?, read(caller, vp, vl)?))
}

/// Appends a value.
pub fn proxy_add_header_map_value(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> HostResult {
    let (k, v) = key_value(&mut caller, kp, kl, vp, vl)?;
    if let Some(map) = map_mut(caller.data_mut(), map_type) {
        map.push((lower(&k), v));
    }
    Ok(OK)
}

/// Adds or replaces a value.
pub fn proxy_replace_header_map_value(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> HostResult {
    let (k, v) = key_value(&mut caller, kp, kl, vp, vl)?;
    if let Some(map) = map_mut(caller.data_mut(), map_type) {
        replace(map, &k, &v);
    }
    Ok(OK)
}

/// Removes a key (OK even if absent).
pub fn proxy_remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    map_type: i32,
    kp: i32,
    kl: i32,
) -> HostResult {
    let k = read(&mut caller, kp, kl)?;
    if let Some(map) = map_mut(caller.data_mut(), map_type) {
        remove(map, &k);
    }
    Ok(OK)
}

/// Serialized size of a map.
pub fn proxy_get_header_map_size(mut caller: Caller<'_, HostState>, map_type: i32, ret: i32) -> HostResult {
    let size = map_mut(caller.data_mut(), map_type).map(|m| serialize(m).len()).unwrap_or(0);
    write_u32(&mut caller, ret, size as u32)?;
    Ok(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_empty() {
        let map: HeaderList = vec![(b":path".to_vec(), b"/x".to_vec()), (b"a".to_vec(), b"".to_vec())];
        assert_eq!(deserialize(&serialize(&map)), Some(map));
        assert!(serialize(&Vec::new()).is_empty());
        assert_eq!(deserialize(&[0, 0, 0, 0]), Some(Vec::new()));
        assert_eq!(deserialize(&[]), Some(Vec::new()));
        assert_eq!(deserialize(&[1, 0, 0, 0, 9, 0, 0, 0]), None);
    }

    #[test]
    fn replace_collapses_duplicates() {
        let mut map: HeaderList = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"A".to_vec(), b"3".to_vec()),
        ];
        replace(&mut map, b"a", b"x");
        assert_eq!(map, vec![(b"a".to_vec(), b"x".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        replace(&mut map, b"C", b"y");
        assert_eq!(get(&map, b"c"), Some(&b"y"[..]));
    }
}
