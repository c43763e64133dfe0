//! One request inside the engine: its tokens, progress, block keys and timestamps.

use super::block_hash::{extend_block_hashes, BlockHash};

/// Engine-wide request identifier, assigned by the HTTP front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why a request stopped, as in vLLM's `finish_reason` and the `finished_reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The model "emitted EOS" before reaching `max_tokens`.
    Stop,
    /// `max_tokens` (or the context limit) was reached.
    Length,
    /// The client went away or the request was cancelled.
    Abort,
}

impl FinishReason {
    /// Every reason, in the order vLLM V1 creates the `request_success_total` series.
    pub const ALL: [FinishReason; 3] = [Self::Stop, Self::Length, Self::Abort];

    /// The wire and label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abort => "abort",
        }
    }
}

/// What the front end asks the engine to run.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Identifier, unique within one engine.
    pub id: RequestId,
    /// Prompt token ids (chat template already applied).
    pub prompt: Vec<u32>,
    /// Output tokens after which the request finishes.
    pub output_len: usize,
    /// Finish reason reported when `output_len` is reached.
    pub finish_reason: FinishReason,
    /// Seed of the pseudo-text generator for this request.
    pub text_seed: u64,
    /// Cache salt folded into the first block key (0 = none).
    pub cache_salt: u64,
    /// The request's `max_tokens`, for the `request_params_max_tokens` histogram.
    pub max_tokens: usize,
}

/// Simulated timestamps (seconds on the engine's model clock) of one request's life.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTiming {
    /// When the front end received it (vLLM's arrival time).
    pub arrival: f64,
    /// When the engine core may first schedule it (arrival + front-end overhead).
    pub queued: f64,
    /// Start of the step that most recently admitted it (after a preemption, the latest).
    pub scheduled: Option<f64>,
    /// End of the step that produced its first token.
    pub first_token: Option<f64>,
    /// End of the step that produced its latest token.
    pub last_token: Option<f64>,
}

/// A request's state in the engine.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// Identifier.
    pub id: RequestId,
    /// Prompt tokens followed by the tokens generated so far.
    pub tokens: Vec<u32>,
    /// Number of prompt tokens at the front of `tokens`.
    pub prompt_len: usize,
    /// Tokens whose KV is computed (or scheduled in the current step).
    pub num_computed: usize,
    /// Keys of the full blocks of `tokens`.
    pub block_hashes: Vec<BlockHash>,
    /// Cache salt folded into the first key.
    pub cache_salt: u64,
    /// Output length at which the request finishes.
    pub output_len: usize,
    /// Reason reported when it reaches `output_len`.
    pub finish_reason: FinishReason,
    /// State of the pseudo-text generator.
    pub text_state: u64,
    /// Tokens found in the prefix cache at first admission.
    pub cached_tokens: Option<usize>,
    /// How many times it was preempted.
    pub num_preemptions: u32,
    /// The request's `max_tokens`.
    pub max_tokens: usize,
    /// Timestamps.
    pub timing: RequestTiming,
}

impl SimRequest {
    /// Builds the engine state of a new request arriving at `arrival`, schedulable at `queued`.
    pub fn new(req: NewRequest, block_size: usize, arrival: f64, queued: f64) -> Self {
        let mut block_hashes = Vec::new();
        extend_block_hashes(&mut block_hashes, &req.prompt, block_size, req.cache_salt);
        Self::with_block_hashes(req, block_hashes, arrival, queued)
    }

    /// [`Self::new`] given the keys of the prompt's full blocks (what
    /// [`extend_block_hashes`] gives for its block size and the request's cache salt).
    pub fn with_block_hashes(
        req: NewRequest,
        block_hashes: Vec<BlockHash>,
        arrival: f64,
        queued: f64,
    ) -> Self {
        // Room for the output up front: growing a long prompt's vector at the first
        // output token copied it whole.
        let mut tokens = req.prompt;
        tokens.reserve_exact(req.output_len.max(1));
        Self {
            id: req.id,
            prompt_len: tokens.len(),
            tokens,
            num_computed: 0,
            block_hashes,
            cache_salt: req.cache_salt,
            output_len: req.output_len.max(1),
            finish_reason: req.finish_reason,
            text_state: req.text_seed,
            cached_tokens: None,
            num_preemptions: 0,
            max_tokens: req.max_tokens,
            timing: RequestTiming { arrival, queued, ..RequestTiming::default() },
        }
    }

    /// Tokens known so far (prompt + output).
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Output tokens generated so far.
    pub fn num_output(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Appends a generated token and keys any block it completes.
    pub fn push_output(&mut self, token: u32, block_size: usize) {
        self.tokens.push(token);
        extend_block_hashes(&mut self.block_hashes, &self.tokens, block_size, self.cache_salt);
    }

    /// Whether it has produced all its output.
    pub fn is_finished(&self) -> bool {
        self.num_output() >= self.output_len
    }
}
