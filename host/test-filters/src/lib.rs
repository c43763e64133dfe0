//! A proxy-wasm filter that exercises every import family of the host.
//!
//! The plugin configuration is a list of `key=value` words separated by
//! spaces, e.g. `mode=route route=127.0.0.1:8001 tick=10`. Modes:
//! `route` (default), `loop` (spins forever in request headers), `trap`
//! (panics in request headers), `local` (answers 418 itself), `callout`
//! (pauses and calls `cluster`/`target` before resuming), `reject`
//! (on_configure returns false), `trap_configure` (panics in on_configure).
//! In every mode, a request with an `x-tf-trap` header traps in request
//! headers, `pause_response=1` pauses the response until its body ends
//! (so the host buffers it), `trap_response_body=1` traps in
//! `on_http_response_body`, `trap_tick=1` traps and `loop_tick=1` spins in
//! `on_tick`, and `trap_after=K` traps in request headers on every request
//! after the first K this VM has seen.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            cfg: Rc::new(HashMap::new()),
            queue: 0,
            metrics: Metrics::default(),
            seen: Rc::new(Cell::new(0)),
        })
    });
}}

#[derive(Default, Clone, Copy)]
struct Metrics {
    requests: u32,
    gauge: u32,
    hist: u32,
}

struct Root {
    cfg: Rc<HashMap<String, String>>,
    queue: u32,
    metrics: Metrics,
    /// Requests this VM has seen (for `trap_after`).
    seen: Rc<Cell<u32>>,
}

fn get(cfg: &HashMap<String, String>, key: &str) -> String {
    cfg.get(key).cloned().unwrap_or_default()
}

/// Adds one to a shared-data counter with a CAS retry loop; returns the
/// number of CAS conflicts seen.
fn cas_increment(key: &str) -> u32 {
    let mut conflicts = 0;
    loop {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap();
        let n: u64 = value
            .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(0);
        match hostcalls::set_shared_data(key, Some((n + 1).to_string().as_bytes()), cas) {
            Ok(()) => return conflicts,
            Err(Status::CasMismatch) => conflicts += 1,
            Err(e) => panic!("set_shared_data: {e:?}"),
        }
    }
}

fn callout_headers<'a>(target: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "GET"),
        (":path", path),
        (":authority", target),
        ("x-envoy-original-dst-host", target),
    ]
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, nh: usize, body_size: usize, _nt: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "failed".to_string());
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let summary = format!("{status} {nh} {}", body.len());
        self.set_shared_data("tf_scrape", Some(summary.as_bytes()), None).unwrap();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let vm = self.get_vm_configuration().unwrap_or_default();
        hostcalls::log(LogLevel::Info, &format!("vm start, {} bytes of vm config", vm.len())).unwrap();
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8(raw).unwrap_or_default();
        let cfg: HashMap<String, String> = text
            .split_whitespace()
            .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        match get(&cfg, "mode").as_str() {
            "reject" => return false,
            "trap_configure" => panic!("configured to trap"),
            _ => {}
        }
        // The request counter exists before any request: the first write of
        // an absent key carries no CAS stamp, so two VMs racing to create it
        // would lose an increment.
        if matches!(hostcalls::get_shared_data("tf_counter"), Ok((None, _))) {
            let _ = hostcalls::set_shared_data("tf_counter", Some(b"0"), None);
        }
        let _ = hostcalls::get_log_level().unwrap();
        self.metrics = Metrics {
            requests: hostcalls::define_metric(MetricType::Counter, "tf_requests").unwrap(),
            gauge: hostcalls::define_metric(MetricType::Gauge, "tf_gauge").unwrap(),
            hist: hostcalls::define_metric(MetricType::Histogram, "tf_hist").unwrap(),
        };
        self.queue = self.register_shared_queue("tf_queue");
        if let Ok(ms) = get(&cfg, "tick").parse::<u64>() {
            self.set_tick_period(Duration::from_millis(ms));
        }
        self.cfg = Rc::new(cfg);
        true
    }

    fn on_tick(&mut self) {
        if get(&self.cfg, "trap_tick") == "1" {
            panic!("configured to trap in on_tick");
        }
        if get(&self.cfg, "loop_tick") == "1" {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        cas_increment("tf_ticks");
        self.enqueue_shared_queue(self.queue, Some(b"tick")).unwrap();
        let cluster = get(&self.cfg, "tick_cluster");
        if !cluster.is_empty() {
            let target = get(&self.cfg, "target");
            let _ = self.dispatch_http_call(
                &cluster,
                callout_headers(&target, "/metrics"),
                None,
                vec![],
                Duration::from_secs(2),
            );
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Some(item) = self.dequeue_shared_queue(queue_id).unwrap() {
            assert_eq!(item, b"tick");
            cas_increment("tf_queue_seen");
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id,
            cfg: self.cfg.clone(),
            metrics: self.metrics,
            chunks: 0,
            waiting: false,
            seen: self.seen.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    cfg: Rc<HashMap<String, String>>,
    metrics: Metrics,
    chunks: u32,
    /// A callout is pending: hold the request until it answers.
    waiting: bool,
    /// Requests this VM has seen.
    seen: Rc<Cell<u32>>,
}

impl Http {
    fn prop(&self, path: &[&str]) -> String {
        self.get_property(path.to_vec())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "-".to_string())
    }

    /// Checks CAS semantics deterministically inside one callback.
    fn cas_check(&self) -> &'static str {
        let key = format!("tf_cas_{}", self.id);
        self.set_shared_data(&key, Some(b"a"), None).unwrap();
        let (v, cas) = self.get_shared_data(&key);
        if v.as_deref() != Some(b"a") {
            return "bad-get";
        }
        if self.set_shared_data(&key, Some(b"b"), cas).is_err() {
            return "fresh-cas-refused";
        }
        match self.set_shared_data(&key, Some(b"c"), cas) {
            Err(Status::CasMismatch) => {}
            _ => return "stale-cas-accepted",
        }
        if self.get_shared_data("tf_missing").0.is_some() {
            return "missing-found";
        }
        "ok"
    }

    fn decide(&mut self) {
        if self.get_property(vec!["no", "such", "property"]).is_some() {
            panic!("unknown property found");
        }
        let route = get(&self.cfg, "route");
        if !route.is_empty() {
            self.set_http_request_header("x-envoy-original-dst-host", Some(&route));
        }
        let cas = self.cas_check();
        self.set_http_request_header("x-tf-cas", Some(cas));
        let conflicts = cas_increment("tf_counter");
        self.set_http_request_header("x-tf-conflicts", Some(&conflicts.to_string()));
        hostcalls::increment_metric(self.metrics.requests, 1).unwrap();
        hostcalls::record_metric(self.metrics.gauge, 42).unwrap();
        hostcalls::record_metric(self.metrics.hist, 7).unwrap();
        let n = hostcalls::get_metric(self.metrics.requests).unwrap();
        self.set_http_request_header("x-tf-metric", Some(&n.to_string()));
        let bad = hostcalls::increment_metric(self.metrics.requests, -1);
        self.set_http_request_header(
            "x-tf-negative",
            Some(if bad == Err(Status::BadArgument) { "refused" } else { "accepted" }),
        );
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, nh: usize, body_size: usize, _nt: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "failed".to_string());
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        self.set_http_request_header("x-tf-callout", Some(&format!("{status} {nh} {}", body.len())));
        self.decide();
        self.waiting = false;
        self.resume_http_request();
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        if self.get_http_request_header("x-tf-trap").is_some() {
            panic!("trap asked for by the request");
        }
        self.seen.set(self.seen.get() + 1);
        if let Ok(k) = get(&self.cfg, "trap_after").parse::<u32>() {
            if self.seen.get() > k {
                panic!("configured to trap after {k} requests");
            }
        }
        match get(&self.cfg, "mode").as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "trap" => panic!("configured to trap"),
            "local" => {
                self.send_http_response(418, vec![("x-tf", "local")], Some(b"teapot"));
                return Action::Pause;
            }
            "callout" => {
                let cluster = get(&self.cfg, "cluster");
                let target = get(&self.cfg, "target");
                return match self.dispatch_http_call(
                    &cluster,
                    callout_headers(&target, "/callout"),
                    Some(b"ping"),
                    vec![],
                    Duration::from_secs(2),
                ) {
                    Ok(_) => {
                        self.waiting = true;
                        Action::Pause
                    }
                    Err(e) => {
                        self.set_http_request_header("x-tf-callout", Some(&format!("{e:?}")));
                        self.decide();
                        Action::Continue
                    }
                };
            }
            _ => {}
        }
        let props = [
            self.prop(&["request", "path"]),
            self.prop(&["request", "method"]),
            self.prop(&["plugin_name"]),
            self.prop(&["plugin_root_id"]),
        ]
        .join(" ");
        self.set_http_request_header("x-tf-props", Some(&props));
        let source = self.prop(&["source", "address"]);
        self.set_http_request_header("x-tf-source", Some(&source));
        self.set_http_request_header("x-tf-headers", Some(&n.to_string()));
        if self.get_http_request_header_bytes("x-tf-missing").is_some() {
            panic!("missing header found");
        }
        let now = self.get_current_time();
        assert!(now > std::time::UNIX_EPOCH);
        if eos {
            self.decide();
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if !eos || self.waiting {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.set_http_request_header("x-tf-body-len", Some(&body.len().to_string()));
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains("REPLACE_ME") {
            let new = text.replace("REPLACE_ME", "replaced");
            self.set_http_request_body(0, size, new.as_bytes());
        }
        self.decide();
        // A body `route-to=ADDR …` overrides the configured route.
        if let Some(addr) = text.strip_prefix("route-to=").and_then(|r| r.split_whitespace().next()) {
            self.set_http_request_header("x-envoy-original-dst-host", Some(addr));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        let upstream = self.prop(&["upstream", "address"]);
        self.set_http_response_header("x-tf-upstream", Some(&upstream));
        self.add_http_response_header("x-tf-response", "seen");
        self.set_http_response_header("content-length", None);
        if get(&self.cfg, "pause_response") == "1" && !eos {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if get(&self.cfg, "trap_response_body") == "1" {
            panic!("configured to trap in on_http_response_body");
        }
        if get(&self.cfg, "pause_response") == "1" && !eos {
            return Action::Pause;
        }
        self.chunks += 1;
        if get(&self.cfg, "upper") == "1" {
            if let Some(chunk) = self.get_http_response_body(0, size) {
                self.set_http_response_body(0, size, &chunk.to_ascii_uppercase());
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        cas_increment("tf_logs");
    }
}
