//! `prefixgate bench-proxy`: requests/s and added latency of the proxy
//! over a direct call, against an in-process echo backend on loopback:
//! (a) direct, (b) prefixgate with `round_robin`, (c) prefixgate with
//! `prefix_aware` on 8k-character prompts. Latency is measured with one
//! client at a time; throughput with `--concurrency` clients.

use crate::app;
use crate::config::Config;
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Benchmark options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Requests per scenario for latency (one at a time).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent clients for the throughput run.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Duration of each throughput run, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Prompt length for `prefix_aware`.
    #[arg(long, default_value_t = 8000)]
    pub prompt_chars: usize,
    /// Filter module (default: the embedded one).
    #[arg(long)]
    pub filter: Option<PathBuf>,
}

async fn echo_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                        b"{\"id\":\"cmpl\",\"choices\":[{\"text\":\"ok\"}]}",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

struct Row {
    name: &'static str,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(name: &'static str, url: String, body: Bytes, args: &BenchArgs) -> anyhow::Result<Row> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let one = |client: Client<_, Full<Bytes>>, url: String, body: Bytes| async move {
        let req =
            http::Request::post(url).header("content-type", "application/json").body(Full::new(body))?;
        let resp = client.request(req).await?;
        anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
        resp.into_body().collect().await?;
        anyhow::Ok(())
    };
    for _ in 0..50 {
        one(client.clone(), url.clone(), body.clone()).await.context(name)?;
    }
    let mut lat = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let t = Instant::now();
        one(client.clone(), url.clone(), body.clone()).await.context(name)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    one(client.clone(), url.clone(), body.clone()).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let started = Instant::now();
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(Row { name, rps: total as f64 / started.elapsed().as_secs_f64(), p50: pct(0.5), p99: pct(0.99) })
}

async fn proxy(backend: SocketAddr, policy: &str, args: &BenchArgs) -> anyhow::Result<app::Running> {
    let mut c = Config {
        listen: "127.0.0.1:0".parse()?,
        admin: "127.0.0.1:0".parse()?,
        backends: vec![backend.to_string()],
        ..Config::default()
    };
    c.filter.policy = Some(policy.to_string());
    c.filter.module = args.filter.clone();
    app::start(c).await.with_context(|| format!("starting prefixgate with {policy}"))
}

/// Runs the three scenarios and prints a table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let backend = echo_backend().await?;
    let short = Bytes::from_static(b"{\"model\":\"m\",\"prompt\":\"hello\",\"max_tokens\":1}");
    let prompt: String = (0..args.prompt_chars).map(|i| (b'a' + (i * 7 % 26) as u8) as char).collect();
    let long = Bytes::from(serde_json::json!({"model": "m", "prompt": prompt, "max_tokens": 1}).to_string());
    let rr = proxy(backend, "round_robin", &args).await?;
    let pa = proxy(backend, "prefix_aware", &args).await?;
    let rows = [
        measure("direct", format!("http://{backend}/v1/completions"), short.clone(), &args).await?,
        measure("round_robin", format!("http://{}/v1/completions", rr.listen), short, &args).await?,
        measure("direct (8k prompt)", format!("http://{backend}/v1/completions"), long.clone(), &args)
            .await?,
        measure("prefix_aware (8k)", format!("http://{}/v1/completions", pa.listen), long, &args).await?,
    ];
    println!("| scenario | req/s ({} clients) | p50 | p99 | added p50 | added p99 |", args.concurrency);
    println!("|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let base = if i < 2 { &rows[0] } else { &rows[2] };
        println!(
            "| {} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            r.name,
            r.rps,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            (r.p50.as_secs_f64() - base.p50.as_secs_f64()) * 1e6,
            (r.p99.as_secs_f64() - base.p99.as_secs_f64()) * 1e6,
        );
    }
    Ok(())
}
