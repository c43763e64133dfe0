//! The HTTP surface of one replica, as vLLM's OpenAI-compatible server: routes, request
//! validation, admission, and JSON or SSE responses. Never panics on a request; every
//! failure is answered with vLLM's error body.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use super::admission::{Admission, Prepared};
use super::api_error::ApiError;
use super::config::{MetricsFormat, SimConfig};
use super::engine::RequestEvent;
use super::engine_thread::{AbortOnDrop, EngineHandle};
use super::exposition::{self, ExpositionInfo};
use super::openai::{
    ChatChoice, ChatMessageOut, ChatResponse, CompletionChoice, CompletionResponse, Endpoint, Usage,
};
use super::request::RequestId;
use super::sse::{SseBody, StreamEncoder};
use super::tokenization::{self, DecodeTable, DetokenizeResponse, TokenizeResponse};
use super::tokenizer::SimTokenizer;

/// Response body type of every route.
pub type SimBody = UnsyncBoxBody<Bytes, Infallible>;

/// Response header carrying the request's prefix-cache hit in tokens (ground truth for
/// tests; vLLM has no such header).
pub const CACHED_TOKENS_HEADER: &str = "x-sim-cached-tokens";

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// vLLM version reported by `/version` for each metrics dialect.
fn version_of(format: MetricsFormat) -> &'static str {
    match format {
        MetricsFormat::V0 => "0.8.5",
        MetricsFormat::V1 => "0.9.2",
    }
}

/// Everything a replica's handlers share.
#[derive(Debug)]
pub struct ReplicaState {
    /// Replica index in its fleet.
    pub index: usize,
    /// Configuration.
    pub config: Arc<SimConfig>,
    /// Names accepted in `model`; the first is reported in metrics.
    pub served_names: Vec<String>,
    /// Prompt tokenizer.
    pub tokenizer: Arc<SimTokenizer>,
    /// Texts of the built-in tokenizer's ids, for `/detokenize` (shared by the fleet).
    pub decode_table: Arc<DecodeTable>,
    /// The engine thread.
    pub engine: EngineHandle,
    /// Next request id.
    pub next_id: AtomicU64,
    /// Unix seconds at start.
    pub created: u64,
    /// Context limit of a request.
    pub max_model_len: usize,
    /// Add `usage.prompt_tokens_details.cached_tokens` (vLLM's
    /// `--enable-prompt-tokens-details`).
    pub prompt_tokens_details: bool,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn full(body: impl Into<Bytes>) -> SimBody {
    Full::new(body.into()).boxed_unsync()
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<SimBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json_response(status: StatusCode, body: String) -> Response<SimBody> {
    respond(status, "application/json", body)
}

fn error_response(err: &ApiError) -> Response<SimBody> {
    json_response(err.status, err.to_json())
}

/// Routes one request.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<ReplicaState>,
) -> Result<Response<SimBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/completions") => generate(req, &state, Endpoint::Completions).await,
        (&Method::POST, "/v1/chat/completions") => generate(req, &state, Endpoint::Chat).await,
        (&Method::GET, "/v1/models") => models(&state),
        (&Method::GET, "/health") | (&Method::GET | &Method::POST, "/ping") => health(&state),
        (&Method::GET, "/version") => json_response(
            StatusCode::OK,
            json!({"version": version_of(state.config.metrics_format)}).to_string(),
        ),
        (&Method::GET, "/metrics") => metrics(&state),
        (&Method::POST, "/tokenize") => tokenize(req, &state).await,
        (&Method::POST, "/detokenize") => detokenize(req, &state).await,
        (
            _,
            "/v1/completions"
            | "/v1/chat/completions"
            | "/v1/models"
            | "/health"
            | "/version"
            | "/metrics"
            | "/tokenize"
            | "/detokenize",
        ) => json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method Not Allowed"}"#.to_owned()),
        _ => json_response(StatusCode::NOT_FOUND, r#"{"detail":"Not Found"}"#.to_owned()),
    };
    Ok(resp)
}

fn health(state: &ReplicaState) -> Response<SimBody> {
    let status = if state.engine.is_alive() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn models(state: &ReplicaState) -> Response<SimBody> {
    let data: Vec<Value> = state
        .served_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": state.created,
                "owned_by": "vllm",
                "root": state.config.model,
                "parent": null,
                "max_model_len": state.max_model_len,
                "permission": [{
                    "id": format!("modelperm-{:032x}", rand::random::<u128>()),
                    "object": "model_permission",
                    "created": state.created,
                    "allow_create_engine": false,
                    "allow_sampling": true,
                    "allow_logprobs": true,
                    "allow_search_indices": false,
                    "allow_view": true,
                    "allow_fine_tuning": false,
                    "organization": "*",
                    "group": null,
                    "is_blocking": false
                }]
            })
        })
        .collect();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}).to_string())
}

fn metrics(state: &ReplicaState) -> Response<SimBody> {
    let m = state.engine.metrics();
    let info = ExpositionInfo {
        format: state.config.metrics_format,
        model_name: state.served_names.first().map_or("", String::as_str),
        block_size: state.config.limits.block_size,
        num_gpu_blocks: state.config.num_gpu_blocks(),
        enable_prefix_caching: state.config.limits.enable_prefix_caching,
    };
    respond(StatusCode::OK, exposition::CONTENT_TYPE, exposition::render(&m, &info))
}

/// Reads a request body (up to [`MAX_BODY_BYTES`]) as JSON.
async fn read_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// How this replica admits requests.
fn admission(state: &ReplicaState) -> Admission<'_> {
    Admission {
        served_names: &state.served_names,
        tokenizer: &state.tokenizer,
        max_model_len: state.max_model_len,
        seed: state.config.seed,
    }
}

/// `POST /tokenize`, as vLLM's OpenAI server.
async fn tokenize(req: Request<Incoming>, state: &ReplicaState) -> Response<SimBody> {
    let result = async {
        let params = tokenization::parse_tokenize(&read_json(req).await?)?;
        admission(state).resolve_model(params.model.as_ref())?;
        let (tokens, token_strs) = tokenization::tokenize(
            &state.tokenizer,
            &state.decode_table,
            &params.text,
            params.add_special_tokens,
            params.return_token_strs,
        )?;
        let body =
            TokenizeResponse { count: tokens.len(), max_model_len: state.max_model_len, tokens, token_strs };
        serde_json::to_string(&body)
            .map_err(|e| ApiError::internal(format!("cannot encode the response: {e}")))
    };
    match result.await {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(&e),
    }
}

/// `POST /detokenize`, as vLLM's OpenAI server.
async fn detokenize(req: Request<Incoming>, state: &ReplicaState) -> Response<SimBody> {
    let result = async {
        let params = tokenization::parse_detokenize(&read_json(req).await?)?;
        admission(state).resolve_model(params.model.as_ref())?;
        let prompt = tokenization::detokenize(&state.tokenizer, &state.decode_table, &params.tokens)?;
        serde_json::to_string(&DetokenizeResponse { prompt })
            .map_err(|e| ApiError::internal(format!("cannot encode the response: {e}")))
    };
    match result.await {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(&e),
    }
}

async fn generate(req: Request<Incoming>, state: &ReplicaState, endpoint: Endpoint) -> Response<SimBody> {
    let prepared = match read_json(req).await.and_then(|value| admission(state).prepare(&value, endpoint)) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    match run(prepared, state, endpoint).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn run(p: Prepared, state: &ReplicaState, endpoint: Endpoint) -> Result<Response<SimBody>, ApiError> {
    let id = RequestId(state.next_id.fetch_add(1, Ordering::Relaxed));
    let prompt_tokens = p.prompt.len();
    let request = admission(state).new_request(&p, id);
    let (tx, mut rx) = unbounded_channel();
    let sender = state.engine.sender();
    if !sender.submit(request, tx) {
        return Err(ApiError::internal("the engine is not running"));
    }
    // From here on, dropping this future (client gone) aborts the request in the engine.
    let mut guard = AbortOnDrop::new(sender, id);
    let (cached_tokens, early) = match rx.recv().await {
        Some(RequestEvent::Admitted { cached_tokens, .. }) => (cached_tokens, Vec::new()),
        Some(token @ RequestEvent::Token { .. }) => (0, vec![token]),
        None => return Err(ApiError::internal("the engine stopped before admitting the request")),
    };
    let created = unix_now();
    let response_id = match endpoint {
        Endpoint::Completions => format!("cmpl-{:032x}", rand::random::<u128>()),
        Endpoint::Chat => format!("chatcmpl-{:032x}", rand::random::<u128>()),
    };

    let mut resp = if p.params.stream {
        let encoder = StreamEncoder {
            endpoint,
            id: response_id,
            created,
            model: p.model,
            include_usage: p.params.include_usage,
            continuous_usage: p.params.continuous_usage,
            prompt_tokens_details: state.prompt_tokens_details,
            prompt_tokens,
            cached_tokens,
            completion_tokens: 0,
            sent_role: false,
        };
        let mut resp = Response::new(SseBody::new(rx, encoder, guard, early).boxed_unsync());
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    } else {
        let mut text = String::new();
        let mut finished = None;
        for event in early {
            if let RequestEvent::Token { text: t, finish } = event {
                text.push_str(t);
                finished = finish;
            }
        }
        while finished.is_none() {
            match rx.recv().await {
                Some(RequestEvent::Token { text: t, finish }) => {
                    text.push_str(t);
                    finished = finish;
                }
                Some(RequestEvent::Admitted { .. }) => {}
                None => return Err(ApiError::internal("the engine stopped before the request finished")),
            }
        }
        guard.disarm();
        let (reason, completion) =
            finished.map_or(("length", 0), |f| (f.reason.as_str(), f.completion_tokens));
        let usage =
            Usage::new(prompt_tokens, completion, state.prompt_tokens_details.then_some(cached_tokens));
        let body = match endpoint {
            Endpoint::Completions => serde_json::to_string(&CompletionResponse {
                id: &response_id,
                object: "text_completion",
                created,
                model: &p.model,
                choices: vec![CompletionChoice {
                    index: 0,
                    text: &text,
                    logprobs: None,
                    finish_reason: Some(reason),
                    stop_reason: None,
                    prompt_logprobs: None,
                }],
                usage,
            }),
            Endpoint::Chat => serde_json::to_string(&ChatResponse {
                id: &response_id,
                object: "chat.completion",
                created,
                model: &p.model,
                choices: vec![ChatChoice {
                    index: 0,
                    message: ChatMessageOut {
                        role: "assistant",
                        reasoning_content: None,
                        content: &text,
                        tool_calls: [],
                    },
                    logprobs: None,
                    finish_reason: Some(reason),
                    stop_reason: None,
                }],
                usage,
                prompt_logprobs: None,
            }),
        }
        .map_err(|e| ApiError::internal(format!("cannot encode the response: {e}")))?;
        json_response(StatusCode::OK, body)
    };
    resp.headers_mut().insert(CACHED_TOKENS_HEADER, HeaderValue::from(cached_tokens as u64));
    Ok(resp)
}
