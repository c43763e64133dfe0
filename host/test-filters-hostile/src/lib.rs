//! A hostile proxy-wasm module for the host's ABI-boundary tests.
//!
//! It does not use the SDK: it declares the host's imports raw and calls
//! every one of them with out-of-range pointers and lengths, unknown ids and
//! enum values, and at the wrong time. Each probe is run once per proxy:
//! before it runs, the module stores `hx/<phase>/<name> = "trap"` in shared
//! data; after it returns, it stores the probe's answer (usually the status
//! number). A probe that traps leaves "trap" behind and kills the VM; the
//! next VM continues with the next probe, found through a per-phase cursor
//! `hx/cursor/<phase>` (advanced with CAS, so concurrent VMs never run a
//! probe twice).
//!
//! Phases: `configure` (root context, never traps), `tick` (root context),
//! `headers` (on_request_headers), `body` (on_request_body at end of
//! stream). The plugin configuration is words: `tick=MS` sets the tick
//! period, `target=ADDR` a backend for callouts, `configure_trap=NAME`
//! makes on_configure run one trapping call (`log_oob` or `proc_exit`).

#![allow(clippy::missing_safety_doc)]

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: i32, ptr: i32, len: i32) -> i32;
    fn proxy_get_log_level(ret: i32) -> i32;
    fn proxy_get_current_time_nanoseconds(ret: i32) -> i32;
    fn proxy_set_tick_period_milliseconds(ms: i32) -> i32;
    fn proxy_get_buffer_bytes(t: i32, start: i32, max: i32, rp: i32, rl: i32) -> i32;
    fn proxy_set_buffer_bytes(t: i32, start: i32, size: i32, p: i32, l: i32) -> i32;
    fn proxy_get_buffer_status(t: i32, rl: i32, rf: i32) -> i32;
    fn proxy_get_header_map_pairs(t: i32, rp: i32, rl: i32) -> i32;
    fn proxy_set_header_map_pairs(t: i32, p: i32, l: i32) -> i32;
    fn proxy_get_header_map_value(t: i32, kp: i32, kl: i32, rp: i32, rl: i32) -> i32;
    fn proxy_add_header_map_value(t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> i32;
    fn proxy_replace_header_map_value(t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> i32;
    fn proxy_remove_header_map_value(t: i32, kp: i32, kl: i32) -> i32;
    fn proxy_get_header_map_size(t: i32, ret: i32) -> i32;
    fn proxy_get_property(pp: i32, pl: i32, rp: i32, rl: i32) -> i32;
    fn proxy_set_property(pp: i32, pl: i32, vp: i32, vl: i32) -> i32;
    fn proxy_continue_stream(s: i32) -> i32;
    fn proxy_continue_request() -> i32;
    fn proxy_continue_response() -> i32;
    fn proxy_close_stream(s: i32) -> i32;
    fn proxy_send_local_response(
        code: i32,
        dp: i32,
        dl: i32,
        bp: i32,
        bl: i32,
        hp: i32,
        hl: i32,
        grpc: i32,
    ) -> i32;
    fn proxy_set_effective_context(ctx: i32) -> i32;
    fn proxy_done() -> i32;
    fn proxy_get_status(rc: i32, rp: i32, rl: i32) -> i32;
    fn proxy_call_foreign_function(np: i32, nl: i32, ap: i32, al: i32, rp: i32, rl: i32) -> i32;
    fn proxy_http_call(
        up: i32,
        ul: i32,
        hp: i32,
        hl: i32,
        bp: i32,
        bl: i32,
        tp: i32,
        tl: i32,
        timeout: i32,
        ret: i32,
    ) -> i32;
    fn proxy_get_shared_data(kp: i32, kl: i32, rp: i32, rl: i32, rc: i32) -> i32;
    fn proxy_set_shared_data(kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> i32;
    fn proxy_register_shared_queue(np: i32, nl: i32, ret: i32) -> i32;
    fn proxy_resolve_shared_queue(vp: i32, vl: i32, np: i32, nl: i32, ret: i32) -> i32;
    fn proxy_enqueue_shared_queue(id: i32, vp: i32, vl: i32) -> i32;
    fn proxy_dequeue_shared_queue(id: i32, rp: i32, rl: i32) -> i32;
    fn proxy_define_metric(kind: i32, np: i32, nl: i32, ret: i32) -> i32;
    fn proxy_increment_metric(id: i32, delta: i64) -> i32;
    fn proxy_record_metric(id: i32, value: i64) -> i32;
    fn proxy_get_metric(id: i32, ret: i32) -> i32;
    fn proxy_grpc_call(
        a: i32,
        b: i32,
        c: i32,
        d: i32,
        e: i32,
        f: i32,
        g: i32,
        h: i32,
        i: i32,
        j: i32,
        k: i32,
        l: i32,
    ) -> i32;
    fn proxy_grpc_stream(a: i32, b: i32, c: i32, d: i32, e: i32, f: i32, g: i32, h: i32, i: i32) -> i32;
    fn proxy_grpc_send(token: i32, p: i32, l: i32, end: i32) -> i32;
    fn proxy_grpc_cancel(token: i32) -> i32;
    fn proxy_grpc_close(token: i32) -> i32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    #[link_name = "fd_write"]
    fn wasi_fd_write(fd: i32, iovs: i32, n: i32, ret: i32) -> i32;
    #[link_name = "clock_time_get"]
    fn wasi_clock_time_get(clock: i32, precision: i64, ret: i32) -> i32;
    #[link_name = "random_get"]
    fn wasi_random_get(buf: i32, len: i32) -> i32;
    #[link_name = "environ_sizes_get"]
    fn wasi_environ_sizes_get(rc: i32, rs: i32) -> i32;
    #[link_name = "environ_get"]
    fn wasi_environ_get(a: i32, b: i32) -> i32;
    #[link_name = "args_sizes_get"]
    fn wasi_args_sizes_get(rc: i32, rs: i32) -> i32;
    #[link_name = "args_get"]
    fn wasi_args_get(a: i32, b: i32) -> i32;
    #[link_name = "proc_exit"]
    fn wasi_proc_exit(code: i32);
}

// ---------------------------------------------------------------- helpers

/// Allocator behaviour: 0 normal, 1 returns null, 2 returns a pointer at the
/// end of memory, 3 re-enters `proxy_get_shared_data` once, then allocates,
/// 4 grows memory and allocates in the new pages.
static ALLOC_MODE: AtomicU32 = AtomicU32::new(0);
/// What the re-entrant allocator read (status and value).
static REENTERED: std::sync::Mutex<Option<(i32, Vec<u8>)>> = std::sync::Mutex::new(None);
/// Size of the body seen by on_request_body.
static BODY_SIZE: AtomicI32 = AtomicI32::new(0);
/// The `target=` backend.
static TARGET: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// One past the last byte of linear memory.
fn end() -> i32 {
    (core::arch::wasm32::memory_size(0) * 65536) as i32
}

fn addr<T: ?Sized>(p: *const T) -> i32 {
    p as *const u8 as usize as i32
}

fn ptr(b: &[u8]) -> i32 {
    addr(b.as_ptr())
}

fn len(b: &[u8]) -> i32 {
    b.len() as i32
}

fn normal_alloc(size: i32) -> i32 {
    let v = vec![0u8; (size.max(1)) as usize].into_boxed_slice();
    addr(Box::leak(v).as_ptr())
}

/// Guest allocator called by the host.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: i32) -> i32 {
    match ALLOC_MODE.swap(0, Ordering::SeqCst) {
        1 => 0,
        2 => end() - 2,
        3 => {
            let got = sd_get_raw(b"hx-re-inner");
            if let Ok(mut r) = REENTERED.lock() {
                *r = Some(got);
            }
            normal_alloc(size)
        }
        4 => {
            let pages = (size as usize).div_ceil(65536) + 1;
            let old = core::arch::wasm32::memory_grow(0, pages);
            if old == usize::MAX {
                0
            } else {
                (old * 65536) as i32
            }
        }
        _ => normal_alloc(size),
    }
}

/// Reads a value returned through (ptr, len) slots.
unsafe fn take(p: u32, l: u32) -> Vec<u8> {
    if p == 0 || l == 0 {
        return Vec::new();
    }
    std::slice::from_raw_parts(p as usize as *const u8, l as usize).to_vec()
}

fn sd_get_raw(key: &[u8]) -> (i32, Vec<u8>) {
    let (mut p, mut l, mut cas) = (0u32, 0u32, 0u32);
    let s = unsafe { proxy_get_shared_data(ptr(key), len(key), addr(&mut p), addr(&mut l), addr(&mut cas)) };
    (s, unsafe { take(p, l) })
}

fn sd_get_cas(key: &[u8]) -> (i32, Vec<u8>, u32) {
    let (mut p, mut l, mut cas) = (0u32, 0u32, 0u32);
    let s = unsafe { proxy_get_shared_data(ptr(key), len(key), addr(&mut p), addr(&mut l), addr(&mut cas)) };
    (s, unsafe { take(p, l) }, cas)
}

fn sd_set(key: &[u8], value: &[u8]) -> i32 {
    unsafe { proxy_set_shared_data(ptr(key), len(key), ptr(value), len(value), 0) }
}

fn st(s: i32) -> String {
    s.to_string()
}

/// A serialized header map.
fn map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

fn get_buffer(t: i32, start: i32, max: i32) -> (i32, Vec<u8>) {
    let (mut p, mut l) = (0u32, 0u32);
    let s = unsafe { proxy_get_buffer_bytes(t, start, max, addr(&mut p), addr(&mut l)) };
    (s, unsafe { take(p, l) })
}

fn get_pairs(t: i32) -> String {
    let (mut p, mut l) = (7u32, 7u32);
    let s = unsafe { proxy_get_header_map_pairs(t, addr(&mut p), addr(&mut l)) };
    format!("{s} ptr={p} len={l}")
}

fn get_value(t: i32, key: &[u8]) -> (i32, Vec<u8>) {
    let (mut p, mut l) = (0u32, 0u32);
    let s = unsafe { proxy_get_header_map_value(t, ptr(key), len(key), addr(&mut p), addr(&mut l)) };
    (s, unsafe { take(p, l) })
}

fn define(kind: i32, name: &[u8]) -> (i32, u32) {
    let mut id = 0u32;
    let s = unsafe { proxy_define_metric(kind, ptr(name), len(name), addr(&mut id)) };
    (s, id)
}

fn call(up: &[u8], headers: &[u8], timeout: i32) -> i32 {
    let mut token = 0u32;
    unsafe { proxy_http_call(ptr(up), len(up), ptr(headers), len(headers), 0, 0, 0, 0, timeout, addr(&mut token)) }
}

fn register(name: &[u8]) -> (i32, u32) {
    let mut id = 0u32;
    let s = unsafe { proxy_register_shared_queue(ptr(name), len(name), addr(&mut id)) };
    (s, id)
}

/// An iovec table of `n` entries, each covering `[0, len)`.
fn iovs(n: usize, each: u32) -> Vec<u32> {
    (0..n).flat_map(|_| [0u32, each]).collect()
}

// ----------------------------------------------------------------- probes

type Probe = (&'static str, fn() -> String);

/// Probes run in on_configure of the root context: none of them may trap.
const CONFIGURE: &[Probe] = &[
    ("log_level_99", || st(unsafe { proxy_log(99, ptr(b"x"), 1) })),
    ("log_negative_len_zero_ptr", || st(unsafe { proxy_log(2, 0, 0) })),
    ("get_buffer_unknown_99", || st(get_buffer(99, 0, 10).0)),
    ("get_buffer_negative_type", || st(get_buffer(-1, 0, 10).0)),
    ("get_buffer_config_start_past_end", || {
        let (s, v) = get_buffer(7, 0x7fff_fff0, 10);
        format!("{s} len={}", v.len())
    }),
    ("get_buffer_config_negative_start", || {
        let (s, v) = get_buffer(7, -1, -1);
        format!("{s} len={}", v.len())
    }),
    ("get_buffer_config_max_clamped", || {
        let (s, v) = get_buffer(7, 0, -1);
        let (s2, v2) = get_buffer(7, 1, i32::MAX);
        let ok = !v.is_empty() && v2 == v[1..];
        format!("{s} {s2} {}", if ok { "exact" } else { "wrong" })
    }),
    ("get_buffer_status_unknown_99", || {
        let (mut l, mut f) = (0u32, 0u32);
        st(unsafe { proxy_get_buffer_status(99, addr(&mut l), addr(&mut f)) })
    }),
    ("set_buffer_unknown_99", || st(unsafe { proxy_set_buffer_bytes(99, 0, 0, ptr(b"x"), 1) })),
    ("get_body_in_configure", || st(get_buffer(0, 0, 10).0)),
    ("define_metric_type_99", || st(define(99, b"hx_bad_type").0)),
    ("define_metric_type_negative", || st(define(-1, b"hx_bad_type2").0)),
    ("increment_never_defined", || {
        let a = unsafe { proxy_increment_metric(0x7fff_0000, 1) };
        let b = unsafe { proxy_increment_metric(0, 1) };
        let c = unsafe { proxy_increment_metric(-1, 1) };
        format!("{a} {b} {c}")
    }),
    ("record_never_defined", || st(unsafe { proxy_record_metric(0x7fff_0000, 1) })),
    ("get_never_defined", || {
        let mut v = 0u64;
        st(unsafe { proxy_get_metric(0x7fff_0000, addr(&mut v)) })
    }),
    ("histogram_get_and_increment", || {
        let (_, h) = define(2, b"hx_hist");
        let mut v = 0u64;
        let g = unsafe { proxy_get_metric(h as i32, addr(&mut v)) };
        let i = unsafe { proxy_increment_metric(h as i32, 1) };
        format!("{g} {i}")
    }),
    ("counter_negative_increment", || {
        let (_, c) = define(0, b"hx_counter");
        st(unsafe { proxy_increment_metric(c as i32, -1) })
    }),
    ("gauge_saturates", || {
        let (_, g) = define(1, b"hx_gauge");
        unsafe {
            proxy_increment_metric(g as i32, i64::MAX);
            proxy_increment_metric(g as i32, i64::MAX);
        }
        let mut v = 0u64;
        let s = unsafe { proxy_get_metric(g as i32, addr(&mut v)) };
        format!("{s} {}", v as i64)
    }),
    ("cas_on_missing_key", || {
        let k = b"hx-never-set";
        let s = unsafe { proxy_set_shared_data(ptr(k), len(k), ptr(b"v"), 1, 12345) };
        format!("{s} {}", sd_get_raw(k).0)
    }),
    ("stale_cas", || {
        let k = b"hx-stale";
        sd_set(k, b"1");
        let (_, _, cas) = sd_get_cas(k);
        sd_set(k, b"2");
        let s = unsafe { proxy_set_shared_data(ptr(k), len(k), ptr(b"3"), 1, cas as i32) };
        format!("{s} {}", String::from_utf8_lossy(&sd_get_raw(k).1))
    }),
    ("non_utf8_key_round_trip", || {
        let k = [0xffu8, 0xfe, 0, 0x80];
        let s = sd_set(&k, b"v");
        let (g, v) = sd_get_raw(&k);
        format!("{s} {g} {}", String::from_utf8_lossy(&v))
    }),
    ("get_missing_key", || st(sd_get_raw(b"hx-missing").0)),
    ("resolve_unknown_queue", || {
        let (vm, name) = (b"nope-vm", b"nope-queue");
        let mut id = 0u32;
        st(unsafe { proxy_resolve_shared_queue(ptr(vm), len(vm), ptr(name), len(name), addr(&mut id)) })
    }),
    ("enqueue_unknown_queue", || {
        let a = unsafe { proxy_enqueue_shared_queue(-1, ptr(b"x"), 1) };
        let b = unsafe { proxy_enqueue_shared_queue(0, ptr(b"x"), 1) };
        format!("{a} {b}")
    }),
    ("dequeue_unknown_queue", || {
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_dequeue_shared_queue(-1, addr(&mut p), addr(&mut l)) })
    }),
    ("dequeue_empty_queue", || {
        let (_, id) = register(b"hx-empty");
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_dequeue_shared_queue(id as i32, addr(&mut p), addr(&mut l)) })
    }),
    ("set_effective_unknown", || {
        let a = unsafe { proxy_set_effective_context(999_999) };
        let b = unsafe { proxy_set_effective_context(0) };
        let c = unsafe { proxy_set_effective_context(-1) };
        format!("{a} {b} {c}")
    }),
    ("foreign_function_unknown", || {
        let (mut p, mut l) = (0u32, 0u32);
        let n = b"no_such_function";
        st(unsafe { proxy_call_foreign_function(ptr(n), len(n), 0, 0, addr(&mut p), addr(&mut l)) })
    }),
    ("foreign_function_oob", || {
        st(unsafe { proxy_call_foreign_function(end(), 16, -16, 32, end(), end()) })
    }),
    ("grpc_stubs", || unsafe {
        let e = end();
        let a = proxy_grpc_call(e, 1, e, 1, e, 1, e, 1, e, 1, 0, e);
        let b = proxy_grpc_stream(e, 1, e, 1, e, 1, e, 1, e);
        let c = proxy_grpc_send(1, e, 1, 0);
        let d = proxy_grpc_cancel(-1);
        let f = proxy_grpc_close(-1);
        format!("{a} {b} {c} {d} {f}")
    }),
    ("get_status", || {
        let (mut c, mut p, mut l) = (9u32, 9u32, 9u32);
        let s = unsafe { proxy_get_status(addr(&mut c), addr(&mut p), addr(&mut l)) };
        format!("{s} {c} {p} {l}")
    }),
    ("done_without_pending", || st(unsafe { proxy_done() })),
    ("clock_unknown_99", || {
        let mut t = 0u64;
        st(unsafe { wasi_clock_time_get(99, 0, addr(&mut t)) })
    }),
    ("fd_write_unknown_fd", || {
        let (msg, mut n) = (b"x", 0u32);
        let iov = [ptr(msg) as u32, 1];
        st(unsafe { wasi_fd_write(99, addr(iov.as_ptr()), 1, addr(&mut n)) })
    }),
    ("fd_write_zero_iovs", || {
        let mut n = 7u32;
        let s = unsafe { wasi_fd_write(1, end(), 0, addr(&mut n)) };
        format!("{s} {n}")
    }),
    ("random_get_too_large", || {
        // 2 MiB, zeroed: SUCCESS must mean every byte was filled.
        let buf = vec![0u8; 2 << 20];
        let s = unsafe { wasi_random_get(ptr(&buf), len(&buf)) };
        let tail_zero = buf[buf.len() - 4096..].iter().all(|b| *b == 0);
        format!("{s} {}", if tail_zero { "tail-unfilled" } else { "filled" })
    }),
    ("environ_and_args", || unsafe {
        let (mut a, mut b) = (9u32, 9u32);
        let s1 = wasi_environ_sizes_get(addr(&mut a), addr(&mut b));
        let s2 = wasi_environ_get(end(), end());
        let (mut c, mut d) = (9u32, 9u32);
        let s3 = wasi_args_sizes_get(addr(&mut c), addr(&mut d));
        let s4 = wasi_args_get(end(), end());
        format!("{s1} {a} {b} {s2} {s3} {c} {d} {s4}")
    }),
    ("tick_period_negative", || st(unsafe { proxy_set_tick_period_milliseconds(-1) })),
    ("http_call_unknown_cluster", || {
        let h = map(&[(":method", "GET"), (":path", "/"), (":authority", "nowhere.invalid")]);
        st(call(b"no-such-cluster", &h, 1000))
    }),
    ("http_call_malformed_map", || {
        let mut h = 1000u32.to_le_bytes().to_vec();
        h.extend([1, 0, 0, 0]);
        st(call(b"prefixgate_backends", &h, 1000))
    }),
    ("http_call_missing_path", || {
        let h = map(&[(":method", "GET"), (":authority", "x")]);
        st(call(b"prefixgate_backends", &h, 1000))
    }),
    ("property_huge_non_utf8_path", || {
        let path = vec![0xffu8; 256 << 10];
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_get_property(ptr(&path), len(&path), addr(&mut p), addr(&mut l)) })
    }),
    ("property_set_in_root_then_get", || {
        let path = b"hx\0prop";
        let s = unsafe { proxy_set_property(ptr(path), len(path), ptr(b"v"), 1) };
        let (mut p, mut l) = (0u32, 0u32);
        let g = unsafe { proxy_get_property(ptr(path), len(path), addr(&mut p), addr(&mut l)) };
        format!("{s} {g}")
    }),
    ("header_pairs_map_99", || get_pairs(99)),
    ("header_pairs_request_in_root", || get_pairs(0)),
    ("header_value_map_99", || st(get_value(99, b":path").0)),
    ("header_edits_map_99", || unsafe {
        let (k, v) = (b"k", b"v");
        let a = proxy_add_header_map_value(99, ptr(k), 1, ptr(v), 1);
        let r = proxy_replace_header_map_value(99, ptr(k), 1, ptr(v), 1);
        let d = proxy_remove_header_map_value(99, ptr(k), 1);
        let m = map(&[("k", "v")]);
        let s = proxy_set_header_map_pairs(99, ptr(&m), len(&m));
        format!("{a} {r} {d} {s}")
    }),
    ("header_size_map_99", || {
        let mut n = 7u32;
        let s = unsafe { proxy_get_header_map_size(99, addr(&mut n)) };
        format!("{s} {n}")
    }),
    ("stream_calls_in_root", || unsafe {
        let a = proxy_continue_stream(0);
        let b = proxy_continue_stream(99);
        let c = proxy_continue_request();
        let d = proxy_continue_response();
        let e = proxy_close_stream(0);
        format!("{a} {b} {c} {d} {e}")
    }),
    ("local_response_in_root", || {
        let h = map(&[("x-hx", "root")]);
        st(unsafe { proxy_send_local_response(403, 0, 0, ptr(b"no"), 2, ptr(&h), len(&h), -1) })
    }),
    ("reentrant_allocator", || {
        sd_set(b"hx-re-outer", b"outer-value");
        sd_set(b"hx-re-inner", b"inner-value");
        ALLOC_MODE.store(3, Ordering::SeqCst);
        let (s, v) = sd_get_raw(b"hx-re-outer");
        let inner = REENTERED.lock().ok().and_then(|mut r| r.take());
        let ok = v == b"outer-value" && inner == Some((0, b"inner-value".to_vec()));
        format!("{s} {}", if ok { "consistent" } else { "mixed-up" })
    }),
    ("allocator_grows_memory", || {
        sd_set(b"hx-grow", b"value-in-new-pages");
        let before = end();
        ALLOC_MODE.store(4, Ordering::SeqCst);
        let (mut p, mut l, mut cas) = (0u32, 0u32, 0u32);
        let k = b"hx-grow";
        let s = unsafe { proxy_get_shared_data(ptr(k), len(k), addr(&mut p), addr(&mut l), addr(&mut cas)) };
        let v = unsafe { take(p, l) };
        let ok = p as i32 >= before && v == b"value-in-new-pages";
        format!("{s} {}", if ok { "consistent" } else { "mixed-up" })
    }),
];

/// Probes run in on_tick (root context, no stream).
const TICK: &[Probe] = &[
    ("get_request_body", || st(get_buffer(0, 0, 10).0)),
    ("get_response_body", || st(get_buffer(1, 0, 10).0)),
    ("get_call_response_body", || st(get_buffer(4, 0, 10).0)),
    ("get_downstream_data", || st(get_buffer(2, 0, 10).0)),
    ("set_request_body", || st(unsafe { proxy_set_buffer_bytes(0, 0, 0, ptr(b"x"), 1) })),
    ("get_plugin_config", || st(get_buffer(7, 0, -1).0)),
    ("get_request_header", || st(get_value(0, b":path").0)),
    ("continue_stream", || st(unsafe { proxy_continue_stream(0) })),
    ("close_stream", || st(unsafe { proxy_close_stream(1) })),
    ("local_response", || st(unsafe { proxy_send_local_response(500, 0, 0, 0, 0, 0, 0, -1) })),
    // Address 0 is ordinary guest memory in wasm: OK, or an error.
    ("null_ret_log_level", || st(unsafe { proxy_get_log_level(0) })),
    ("null_ret_time", || st(unsafe { proxy_get_current_time_nanoseconds(0) })),
    ("null_ret_header_size", || st(unsafe { proxy_get_header_map_size(0, 0) })),
    ("null_ret_buffer_status", || st(unsafe { proxy_get_buffer_status(7, 0, 0) })),
    ("null_ret_shared_data", || {
        sd_set(b"hx-null", b"v");
        let k = b"hx-null";
        st(unsafe { proxy_get_shared_data(ptr(k), len(k), 0, 0, 0) })
    }),
    ("log_oob", || st(unsafe { proxy_log(2, end(), 8) })),
    ("alloc_returns_null", || {
        sd_set(b"hx-alloc", b"value");
        ALLOC_MODE.store(1, Ordering::SeqCst);
        st(sd_get_raw(b"hx-alloc").0)
    }),
    ("alloc_returns_end_of_memory", || {
        sd_set(b"hx-alloc", b"value");
        ALLOC_MODE.store(2, Ordering::SeqCst);
        st(sd_get_raw(b"hx-alloc").0)
    }),
    ("proc_exit", || {
        unsafe { wasi_proc_exit(0) };
        "returned".to_string()
    }),
];

/// Probes run in on_request_headers of a POST with a body.
const HEADERS: &[Probe] = &[
    ("get_method", || {
        let (s, v) = get_value(0, b":method");
        format!("{s} {}", String::from_utf8_lossy(&v))
    }),
    ("value_key_is_64k_of_memory", || {
        let key = vec![b'a'; 64 << 10];
        st(get_value(0, &key).0)
    }),
    ("value_non_utf8_key", || st(get_value(0, &[0xff, 0x00, 0xfe]).0)),
    ("continue_stream_99", || st(unsafe { proxy_continue_stream(99) })),
    ("set_effective_unknown", || st(unsafe { proxy_set_effective_context(999_999) })),
    ("fd_write_fanout_512mib", || {
        // Many iovecs over all of memory: 512 MiB to "write" in one call.
        let each = end() as u32;
        let n = ((512u64 << 20) / each as u64) as usize;
        let table = iovs(n, each);
        let mut written = 0u32;
        let s = unsafe { wasi_fd_write(1, addr(table.as_ptr()), n as i32, addr(&mut written)) };
        let want = n as u64 * each as u64;
        format!("{s} {}", if written as u64 == want { "all" } else { "short" })
    }),
    // Everything below traps (or answers an error status).
    ("log_ptr_past_end", || st(unsafe { proxy_log(2, end(), 4) })),
    ("log_len_negative", || st(unsafe { proxy_log(2, 16, -1) })),
    ("log_ptr_plus_len_wraps", || st(unsafe { proxy_log(2, -16, 32) })),
    ("get_log_level_ret_past_end", || st(unsafe { proxy_get_log_level(end()) })),
    ("get_log_level_ret_straddles_end", || st(unsafe { proxy_get_log_level(end() - 2) })),
    ("time_ret_straddles_end", || st(unsafe { proxy_get_current_time_nanoseconds(end() - 4) })),
    ("get_buffer_ret_past_end", || st(unsafe { proxy_get_buffer_bytes(7, 0, -1, end(), end()) })),
    ("set_buffer_data_past_end", || st(unsafe { proxy_set_buffer_bytes(0, 0, 0, end(), 10) })),
    ("buffer_status_ret_past_end", || st(unsafe { proxy_get_buffer_status(7, end(), end()) })),
    ("header_pairs_ret_past_end", || st(unsafe { proxy_get_header_map_pairs(0, end(), end()) })),
    ("set_header_pairs_past_end", || st(unsafe { proxy_set_header_map_pairs(0, end() - 4, 100) })),
    ("set_header_pairs_malformed", || {
        let mut m = 3u32.to_le_bytes().to_vec();
        m.extend([0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0]);
        st(unsafe { proxy_set_header_map_pairs(0, ptr(&m), len(&m)) })
    }),
    ("header_value_key_past_end", || {
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_get_header_map_value(0, end(), 5, addr(&mut p), addr(&mut l)) })
    }),
    ("header_value_ret_past_end", || {
        let k = b":method";
        st(unsafe { proxy_get_header_map_value(0, ptr(k), len(k), end(), end()) })
    }),
    ("add_header_key_past_end", || st(unsafe { proxy_add_header_map_value(0, end(), 1, ptr(b"v"), 1) })),
    ("add_header_value_wraps", || st(unsafe { proxy_add_header_map_value(0, ptr(b"k"), 1, -16, 32) })),
    ("replace_header_value_negative_len", || {
        st(unsafe { proxy_replace_header_map_value(0, ptr(b"k"), 1, ptr(b"v"), -1) })
    }),
    ("remove_header_key_past_end", || st(unsafe { proxy_remove_header_map_value(0, end(), 1) })),
    ("header_size_ret_past_end", || st(unsafe { proxy_get_header_map_size(0, end()) })),
    ("property_path_past_end", || {
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_get_property(end(), 4, addr(&mut p), addr(&mut l)) })
    }),
    ("property_ret_past_end", || {
        let path = b"request\0path";
        st(unsafe { proxy_get_property(ptr(path), len(path), end(), end()) })
    }),
    ("set_property_value_past_end", || {
        let path = b"hx\0p";
        st(unsafe { proxy_set_property(ptr(path), len(path), end(), 1) })
    }),
    ("local_response_body_past_end", || {
        st(unsafe { proxy_send_local_response(403, 0, 0, end(), 10, 0, 0, -1) })
    }),
    ("local_response_headers_malformed", || {
        let m = 1000u32.to_le_bytes();
        st(unsafe { proxy_send_local_response(403, 0, 0, 0, 0, ptr(&m), 4, -1) })
    }),
    ("http_call_upstream_past_end", || {
        let mut t = 0u32;
        st(unsafe { proxy_http_call(end(), 5, 0, 0, 0, 0, 0, 0, 1000, addr(&mut t)) })
    }),
    ("http_call_token_ret_past_end", || {
        let target = TARGET.lock().map(|t| t.clone()).unwrap_or_default();
        let h = map(&[(":method", "GET"), (":path", "/hx-callout"), (":authority", &target)]);
        let up = b"prefixgate_backends";
        st(unsafe { proxy_http_call(ptr(up), len(up), ptr(&h), len(&h), 0, 0, 0, 0, 1000, end()) })
    }),
    ("get_status_ret_past_end", || st(unsafe { proxy_get_status(end(), end(), end()) })),
    ("get_shared_key_past_end", || {
        let (mut p, mut l, mut c) = (0u32, 0u32, 0u32);
        st(unsafe { proxy_get_shared_data(end(), 4, addr(&mut p), addr(&mut l), addr(&mut c)) })
    }),
    ("get_shared_ret_past_end", || {
        sd_set(b"hx-present", b"v");
        let k = b"hx-present";
        let mut c = 0u32;
        st(unsafe { proxy_get_shared_data(ptr(k), len(k), end(), end(), addr(&mut c)) })
    }),
    ("get_shared_cas_ret_past_end", || {
        sd_set(b"hx-present", b"v");
        let k = b"hx-present";
        let (mut p, mut l) = (0u32, 0u32);
        st(unsafe { proxy_get_shared_data(ptr(k), len(k), addr(&mut p), addr(&mut l), end()) })
    }),
    ("set_shared_key_past_end", || st(unsafe { proxy_set_shared_data(end(), 4, ptr(b"v"), 1, 0) })),
    ("set_shared_value_wraps", || st(unsafe { proxy_set_shared_data(ptr(b"k"), 1, -16, 32, 0) })),
    ("register_queue_name_past_end", || {
        let mut id = 0u32;
        st(unsafe { proxy_register_shared_queue(end(), 4, addr(&mut id)) })
    }),
    ("register_queue_ret_past_end", || {
        let n = b"hx-q";
        st(unsafe { proxy_register_shared_queue(ptr(n), len(n), end()) })
    }),
    ("resolve_queue_name_past_end", || {
        let mut id = 0u32;
        st(unsafe { proxy_resolve_shared_queue(0, 0, end(), 4, addr(&mut id)) })
    }),
    ("enqueue_value_past_end", || {
        let (_, id) = register(b"hx-q");
        st(unsafe { proxy_enqueue_shared_queue(id as i32, end(), 4) })
    }),
    ("dequeue_ret_past_end", || {
        let (_, id) = register(b"hx-q2");
        unsafe { proxy_enqueue_shared_queue(id as i32, ptr(b"item"), 4) };
        st(unsafe { proxy_dequeue_shared_queue(id as i32, end(), end()) })
    }),
    ("define_metric_name_past_end", || {
        let mut id = 0u32;
        st(unsafe { proxy_define_metric(0, end(), 4, addr(&mut id)) })
    }),
    ("define_metric_ret_past_end", || {
        let n = b"hx_m";
        st(unsafe { proxy_define_metric(0, ptr(n), len(n), end()) })
    }),
    ("get_metric_ret_past_end", || {
        let (_, id) = define(0, b"hx_m2");
        st(unsafe { proxy_get_metric(id as i32, end() - 4) })
    }),
    ("fd_write_iovs_past_end", || {
        let mut n = 0u32;
        st(unsafe { wasi_fd_write(1, end() - 4, 1, addr(&mut n)) })
    }),
    ("fd_write_iov_data_past_end", || {
        let iov = [end() as u32 - 2, 16];
        let mut n = 0u32;
        st(unsafe { wasi_fd_write(1, addr(iov.as_ptr()), 1, addr(&mut n)) })
    }),
    ("fd_write_iovs_wrap", || {
        let mut n = 0u32;
        st(unsafe { wasi_fd_write(2, -8, 2, addr(&mut n)) })
    }),
    ("fd_write_ret_past_end", || {
        let iov = [ptr(b"x") as u32, 1];
        st(unsafe { wasi_fd_write(1, addr(iov.as_ptr()), 1, end()) })
    }),
    ("clock_ret_straddles_end", || st(unsafe { wasi_clock_time_get(0, 0, end() - 4) })),
    ("random_buf_past_end", || st(unsafe { wasi_random_get(end() - 4, 16) })),
    ("environ_sizes_ret_past_end", || st(unsafe { wasi_environ_sizes_get(end(), end()) })),
    ("args_sizes_ret_past_end", || st(unsafe { wasi_args_sizes_get(end(), end()) })),
];

/// Probes run in on_request_body at end of stream: reads of the body must
/// return exactly the bytes asked for, clamped, never more.
const BODY: &[Probe] = &[
    ("tail_with_max_all_ones", || {
        let n = BODY_SIZE.load(Ordering::SeqCst);
        let (s, all) = get_buffer(0, 0, -1);
        let (s2, tail) = get_buffer(0, n - 3, -1);
        let ok = all.len() == n as usize && tail == all[all.len() - 3..];
        format!("{s} {s2} {}", if ok { "exact" } else { "wrong" })
    }),
    ("start_past_end", || {
        let n = BODY_SIZE.load(Ordering::SeqCst);
        let (s, v) = get_buffer(0, n + 5, 10);
        format!("{s} len={}", v.len())
    }),
    ("start_negative", || {
        let (s, v) = get_buffer(0, -1, 10);
        format!("{s} len={}", v.len())
    }),
    ("start_plus_max_overflows", || {
        let n = BODY_SIZE.load(Ordering::SeqCst);
        let (s, all) = get_buffer(0, 0, n);
        let (s2, v) = get_buffer(0, 2, i32::MAX);
        format!("{s} {s2} {}", if v == all[2..] { "exact" } else { "wrong" })
    }),
    ("buffer_status", || {
        let (mut l, mut f) = (0u32, 9u32);
        let s = unsafe { proxy_get_buffer_status(0, addr(&mut l), addr(&mut f)) };
        let ok = l as i32 == BODY_SIZE.load(Ordering::SeqCst);
        format!("{s} {}", if ok { "size-matches" } else { "size-wrong" })
    }),
    ("append_with_huge_start", || {
        let s = unsafe { proxy_set_buffer_bytes(0, -1, -1, ptr(b"!"), 1) };
        let (_, v) = get_buffer(0, 0, -1);
        format!("{s} {}", if v.last() == Some(&b'!') { "appended" } else { "lost" })
    }),
    ("body_ret_past_end", || st(unsafe { proxy_get_buffer_bytes(0, 0, 4, end() - 2, end() - 2) })),
];

/// Runs the remaining probes of `phase`, one at a time, each claimed by
/// advancing the phase's cursor with CAS.
fn run(phase: &str, probes: &[Probe]) {
    let cursor = format!("hx/cursor/{phase}");
    for _ in 0..probes.len() + 16 {
        let (_, value, cas) = sd_get_cas(cursor.as_bytes());
        let i: usize = String::from_utf8_lossy(&value).parse().unwrap_or(0);
        if i >= probes.len() {
            return;
        }
        let next = (i + 1).to_string();
        let k = cursor.as_bytes();
        let claimed =
            unsafe { proxy_set_shared_data(ptr(k), len(k), ptr(next.as_bytes()), len(next.as_bytes()), cas as i32) };
        if claimed != 0 {
            continue;
        }
        let (name, probe) = probes[i];
        let key = format!("hx/{phase}/{name}");
        sd_set(key.as_bytes(), b"trap");
        let answer = probe();
        sd_set(key.as_bytes(), answer.as_bytes());
    }
}

// -------------------------------------------------------------- callbacks

/// ABI version marker.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Contexts need no state.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_ctx: i32, _parent: i32) {}

/// Accepts any VM configuration.
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: i32, _size: i32) -> i32 {
    1
}

/// Runs the configure probes, then applies `tick=` and `target=`.
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: i32, _size: i32) -> i32 {
    let (_, cfg) = get_buffer(7, 0, -1);
    let cfg = String::from_utf8_lossy(&cfg).into_owned();
    let word = |k: &str| cfg.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
    match word("configure_trap=").as_deref() {
        Some("log_oob") => unsafe {
            proxy_log(2, end(), 8);
        },
        Some("proc_exit") => unsafe { wasi_proc_exit(3) },
        _ => {}
    }
    run("configure", CONFIGURE);
    if let (Some(t), Ok(mut slot)) = (word("target="), TARGET.lock()) {
        *slot = t;
    }
    let tick = word("tick=").and_then(|t| t.parse().ok()).unwrap_or(0);
    unsafe { proxy_set_tick_period_milliseconds(tick) };
    1
}

/// Runs the tick probes.
#[no_mangle]
pub extern "C" fn proxy_on_tick(_root: i32) {
    run("tick", TICK);
}

/// Runs the request-header probes; never pauses.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_ctx: i32, _n: i32, _eos: i32) -> i32 {
    run("headers", HEADERS);
    0
}

/// Runs the body probes at end of stream.
#[no_mangle]
pub extern "C" fn proxy_on_request_body(_ctx: i32, size: i32, eos: i32) -> i32 {
    if eos != 0 {
        BODY_SIZE.store(size, Ordering::SeqCst);
        run("body", BODY);
    }
    0
}

/// Always finished.
#[no_mangle]
pub extern "C" fn proxy_on_done(_ctx: i32) -> i32 {
    1
}
