//! `prefixgate swap`: uploads a module and/or a plugin configuration to a
//! running proxy's admin API.

use crate::cli::SwapArgs;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// One `PUT` of `body` to `route` of the admin API at `admin` (a base URL),
/// with the bearer `token` if given; the status and body of the answer, or
/// an error naming the URL when none came within `limit`.
pub async fn upload(
    admin: &str,
    route: &str,
    token: Option<&str>,
    body: Vec<u8>,
    limit: Duration,
) -> anyhow::Result<(http::StatusCode, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{}{route}", admin.trim_end_matches('/'));
    let mut req = http::Request::put(&url);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).with_context(|| format!("building request to {url}"))?;
    let exchange = async {
        let resp = client.request(req).await.with_context(|| format!("PUT {url}"))?;
        let status = resp.status();
        let body =
            resp.into_body().collect().await.with_context(|| format!("reading the answer of PUT {url}"))?;
        anyhow::Ok((status, String::from_utf8_lossy(&body.to_bytes()).into_owned()))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .with_context(|| format!("PUT {url}: no answer within {} s", limit.as_secs_f64()))?
}

async fn put(args: &SwapArgs, route: &str, body: Vec<u8>) -> anyhow::Result<String> {
    let limit = Duration::from_secs(args.timeout_secs);
    let (status, text) = upload(&args.admin, route, args.token.as_deref(), body, limit).await?;
    if !status.is_success() {
        bail!("PUT {}{route}: {status}: {}", args.admin.trim_end_matches('/'), text.trim());
    }
    Ok(text)
}

/// Runs the swap; the module first, then the configuration.
pub async fn run(args: SwapArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.module {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        print!("{}", put(&args, "/admin/module", bytes).await?);
    }
    if let Some(path) = &args.config {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        print!("{}", put(&args, "/admin/config", bytes).await?);
    }
    Ok(())
}
