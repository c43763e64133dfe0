//! `sweep.toml`: the fleet and router every strategy runs on, the strategies
//! (label → routing policy), and the benchmark settings shared by all runs.
//!
//! ```toml
//! [server]
//! num_servers = 4
//! time_scale = 4.0
//!
//! [strategies]
//! round_robin = "round_robin"
//! pow2 = "pow2"
//! prefix_aware = "prefix_aware"
//! prefix_aware_least_loaded = { policy = "prefix_aware", miss_policy = "least_loaded" }
//!
//! [bench]
//! benchmark_label = "sharegpt"
//! num_prompts = 1000
//! max_concurrency = 40
//! request_rate = 100.0
//!
//! # A generated shape takes its flags without the leading `--`:
//! # dataset_name = "generated-shared-prefix"
//! # [bench.shape]
//! # gsp_num_groups = 1
//! # gsp_prompts_per_group = 1024
//! ```

use crate::load::client::Api;
use crate::load::run::{DatasetName, RunArgs};
use crate::load::shapes::ShapeArgs;
use anyhow::{bail, Context, Result};
use clap::Parser;
use indexmap::IndexMap;
use prefixgate_filter::config::BackendConfig;
use prefixgate_filter::{ConfigError, FilterConfig, PolicyKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole sweep: where to run, what to compare, how to load it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Fleet and router settings (all optional).
    #[serde(default)]
    pub server: ServerSettings,
    /// Strategies in run order: label → policy name, or a table with `policy`
    /// and further filter settings (`miss_policy`, `imbalanced_threshold`, …).
    pub strategies: IndexMap<String, Strategy>,
    /// Benchmark settings; each defaults to `prefixgate-bench run`'s default.
    #[serde(default)]
    pub bench: BenchSettings,
}

/// Which router sits in front of the fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Router {
    /// The `prefixgate` proxy with the embedded filter.
    #[default]
    Prefixgate,
    /// Envoy with the filter module (needs `envoy` and the `.wasm`).
    Envoy,
}

impl Router {
    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefixgate => "prefixgate",
            Self::Envoy => "envoy",
        }
    }
}

/// How a sweep runs each strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real processes on loopback: `vllm-sim` replicas behind the router, on the wall clock.
    #[default]
    Wall,
    /// In process and in virtual time: the filter's native code in front of simulated
    /// engines (`prefixgate-bench lab`); `router`, `router_port`, `time_scale` and
    /// `startup_timeout_s` do not apply.
    Lab,
}

/// The fleet and the router.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `wall` (default: processes on the wall clock) or `lab` (virtual time, in process).
    pub mode: Mode,
    /// Independent routers in front of the fleet, each with its own index (in `wall` mode,
    /// one process each); request `i` goes to router `i mod K`. Default 1.
    pub routers: usize,
    /// Router in front of the replicas. Default `prefixgate`.
    pub router: Router,
    /// Router listen port on 127.0.0.1. Default 0: a free port.
    pub router_port: u16,
    /// Served model name. Default `Qwen/Qwen2.5-1.5B-Instruct`.
    pub model_name: String,
    /// `vllm-sim` profile (GPU and model timing). Default `l4-qwen2.5-1.5b`.
    pub profile: String,
    /// GPU column of the results. Default: the profile's GPU (`L4`), or
    /// `unknown` with real backends.
    pub gpu_type: Option<String>,
    /// Simulated replicas per strategy. Default 4.
    pub num_servers: usize,
    /// Prefix caching in the replicas. Default true.
    pub enable_prefix_caching: bool,
    /// Chunked prefill in the replicas. Default true.
    pub enable_chunked_prefill: bool,
    /// Simulated seconds per wall-clock second. Default 1; must be 1 with real backends.
    pub time_scale: f64,
    /// KV blocks per simulated replica (`vllm-sim --num-gpu-blocks`), e.g. to
    /// cut the caches below the working set. Default: the profile's.
    pub num_gpu_blocks: Option<usize>,
    /// Real replicas (`ip:port`) instead of a fresh simulated fleet per
    /// strategy. Their caches are not reset between strategies. Default none.
    pub backends: Vec<String>,
    /// Seconds a replica or the router may take to be ready. Default 60.
    pub startup_timeout_s: f64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Wall,
            routers: 1,
            router: Router::Prefixgate,
            router_port: 0,
            model_name: "Qwen/Qwen2.5-1.5B-Instruct".into(),
            profile: "l4-qwen2.5-1.5b".into(),
            gpu_type: None,
            num_servers: 4,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            time_scale: 1.0,
            num_gpu_blocks: None,
            backends: Vec::new(),
            startup_timeout_s: 60.0,
        }
    }
}

impl ServerSettings {
    /// The GPU column: given, else derived from the profile name.
    pub fn gpu_type(&self) -> String {
        if let Some(g) = &self.gpu_type {
            return g.clone();
        }
        if !self.backends.is_empty() {
            return "unknown".into();
        }
        let stem = Path::new(&self.profile).file_stem().and_then(|s| s.to_str()).unwrap_or(&self.profile);
        stem.split('-').next().unwrap_or(stem).to_uppercase()
    }

    /// Number of replicas behind the router.
    pub fn num_servers(&self) -> usize {
        if self.backends.is_empty() {
            self.num_servers
        } else {
            self.backends.len()
        }
    }
}

/// One routing strategy: the filter configuration it runs, checked as the
/// filter checks it when the sweep file is read; only the backends (the
/// fleet's, known when it starts) are left to fill in.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "StrategyEntry")]
pub struct Strategy {
    /// The configuration with no backends.
    config: FilterConfig,
}

/// A strategy as the sweep file writes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrategyEntry {
    /// `label = "pow2"`.
    Policy(String),
    /// `label = { policy = "prefix_aware", miss_policy = "least_loaded" }`:
    /// `policy` and further plugin configuration fields.
    Detailed(serde_json::Map<String, serde_json::Value>),
}

/// Stands in for the fleet while a strategy is validated.
const PLACEHOLDER_BACKEND: &str = "127.0.0.1:9";

/// A strategy the filter would refuse.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// A table without `policy`.
    #[error("`policy` is required, e.g. `{{ policy = \"prefix_aware\" }}`")]
    NoPolicy,
    /// A table naming backends.
    #[error("`backends` is the fleet's: set `server.backends`, not a strategy's")]
    Backends,
    /// A setting the filter refuses (named in the error).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl TryFrom<StrategyEntry> for Strategy {
    type Error = StrategyError;

    fn try_from(entry: StrategyEntry) -> Result<Self, StrategyError> {
        let mut fields = match entry {
            StrategyEntry::Policy(policy) => {
                serde_json::Map::from_iter([("policy".to_owned(), serde_json::Value::String(policy))])
            }
            StrategyEntry::Detailed(fields) => fields,
        };
        if !fields.contains_key("policy") {
            return Err(StrategyError::NoPolicy);
        }
        if fields.contains_key("backends") {
            return Err(StrategyError::Backends);
        }
        fields.insert("backends".to_owned(), vec![PLACEHOLDER_BACKEND].into());
        let json = serde_json::Value::Object(fields).to_string();
        let mut config = FilterConfig::from_json(json.as_bytes())?;
        config.backends.clear();
        Ok(Self { config })
    }
}

impl Strategy {
    /// A strategy running `policy` with every other setting at its default.
    pub fn of_policy(policy: PolicyKind) -> Self {
        let mut config = FilterConfig::new(Vec::new());
        config.policy = policy;
        Self { config }
    }

    /// The policy.
    pub fn policy(&self) -> PolicyKind {
        self.config.policy
    }

    /// The filter configuration this strategy runs in front of `backends` (`ip:port`).
    pub fn filter_config(&self, backends: &[String]) -> FilterConfig {
        let mut config = self.config.clone();
        config.backends = backends.iter().map(|b| BackendConfig::Address(b.clone())).collect();
        config
    }
}

/// Benchmark settings; a missing one takes `prefixgate-bench run`'s default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchSettings {
    /// Label of the whole sweep (the CSVs' `benchmark_label`). Default `sweep`.
    pub benchmark_label: Option<String>,
    /// Send one request before measuring. Default false.
    pub with_warmup: bool,
    /// `vllm` (completions) or `vllm-chat`. Default `vllm`.
    pub backend: Option<Api>,
    /// `sharegpt`, `synthetic`, or a generated shape (`random`, `generated-shared-prefix`,
    /// `long-document`, `decode-heavy`). Default: `sharegpt` with a path, else `synthetic`.
    pub dataset_name: Option<DatasetName>,
    /// ShareGPT JSON file, relative to the config file.
    pub dataset_path: Option<PathBuf>,
    /// ShareGPT conversations with fewer messages in the file are left out. Default 0 (all).
    pub min_messages: Option<usize>,
    /// Conversations considered. Default 10,000.
    pub max_conversations: Option<usize>,
    /// Requests per strategy. Default 1,000.
    pub num_prompts: Option<usize>,
    /// Shortest output, tokens. Default 10.
    pub min_output_len: Option<u64>,
    /// Longest output, tokens. Default 200.
    pub max_output_len: Option<u64>,
    /// Shortest prompt kept, tokens. Default 1,500.
    pub min_prompt_len: Option<usize>,
    /// Longest prompt kept, tokens. Default 8,192.
    pub max_prompt_len: Option<usize>,
    /// Requests per second (Poisson); `inf` sends all at once. Default `inf`.
    pub request_rate: Option<f64>,
    /// Gamma shape of the gaps between arrivals (bench_serving's
    /// `--burstiness`): 1 is Poisson, below 1 bursty. Default 1.
    pub burstiness: Option<f64>,
    /// Requests in flight at most. Default unlimited.
    pub max_concurrency: Option<usize>,
    /// Non-streaming requests. Default false.
    pub disable_stream: bool,
    /// Let outputs end at EOS. Default false.
    pub disable_ignore_eos: bool,
    /// Seed of sampling and arrivals. Default 1.
    pub seed: Option<u64>,
    /// `tokenizer.json` for client-side token counts, relative to the config file.
    pub tokenizer: Option<PathBuf>,
    /// The generated shapes' flags, named as `run` names them without the leading `--`
    /// (`gsp_num_groups = 1`, `random-input-len = 512`). Default: `run`'s.
    pub shape: toml::Table,
}

/// `RunArgs` with clap's defaults, so the sweep and `run` share one set.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    args: RunArgs,
}

impl BenchSettings {
    /// The run flags for one strategy, before the URLs are known.
    pub fn run_args(&self, label: &str, model: &str, time_scale: f64) -> Result<RunArgs> {
        let mut a = Defaults::try_parse_from(["run"]).context("default run settings")?.args;
        a.label = Some(label.to_owned());
        a.model = Some(model.to_owned());
        a.time_scale = time_scale;
        a.with_warmup = self.with_warmup;
        a.disable_stream = self.disable_stream;
        a.disable_ignore_eos = self.disable_ignore_eos;
        a.max_concurrency = self.max_concurrency;
        a.dataset_name = self.dataset_name;
        a.dataset_path = self.dataset_path.clone();
        a.tokenizer = self.tokenizer.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { a.$f = v; } )* };
        }
        set!(backend, min_messages, max_conversations, num_prompts, min_output_len, max_output_len);
        set!(min_prompt_len, max_prompt_len, request_rate, burstiness, seed);
        a.shapes = self.shape_args()?;
        Ok(a)
    }

    /// `[bench.shape]` parsed as `run` parses the shapes' flags.
    fn shape_args(&self) -> Result<ShapeArgs> {
        let mut argv = vec!["shape".to_owned()];
        for (key, value) in &self.shape {
            argv.push(format!("--{}", key.replace('_', "-")));
            argv.push(match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        let command = <ShapeArgs as clap::Args>::augment_args(clap::Command::new("shape"));
        let matches =
            command.try_get_matches_from(argv).map_err(|e| anyhow::anyhow!("`bench.shape`: {e}"))?;
        <ShapeArgs as clap::FromArgMatches>::from_arg_matches(&matches).context("`bench.shape`")
    }

    /// The sweep's label.
    pub fn benchmark_label(&self) -> &str {
        self.benchmark_label.as_deref().unwrap_or("sweep")
    }
}

impl SweepConfig {
    /// Reads and validates a sweep file; relative paths in it are resolved
    /// against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("in {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.bench.dataset_path, &mut config.bench.tokenizer].into_iter().flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parses and validates sweep TOML.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-empty strategies with file-safe labels,
    /// a fleet size, a usable time scale.
    pub fn validate(&self) -> Result<()> {
        if self.strategies.is_empty() {
            bail!("`strategies`: give at least one, e.g. `pow2 = \"pow2\"`");
        }
        for label in self.strategies.keys() {
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
                bail!("`strategies.{label}`: a label may only use letters, digits, `_`, `-` and `.`");
            }
        }
        let s = &self.server;
        if s.mode == Mode::Lab && !s.backends.is_empty() {
            bail!("`server.backends`: a `lab` sweep simulates its own fleet");
        }
        if s.routers == 0 {
            bail!("`server.routers`: at least one router is needed");
        }
        if s.routers > 1 && s.router_port != 0 {
            bail!(
                "`server.router_port`: {} routers cannot share port {}; leave it 0 so that each picks a free one",
                s.routers,
                s.router_port
            );
        }
        if s.backends.is_empty() && s.num_servers == 0 {
            bail!("`server.num_servers`: at least one replica is needed");
        }
        if !(s.time_scale.is_finite() && s.time_scale > 0.0) {
            bail!("`server.time_scale`: must be a positive number, got {}", s.time_scale);
        }
        if !s.backends.is_empty() && s.time_scale != 1.0 {
            bail!("`server.time_scale`: only simulated replicas run scaled; with `server.backends` it must be 1");
        }
        if !(s.startup_timeout_s.is_finite() && s.startup_timeout_s > 0.0) {
            bail!("`server.startup_timeout_s`: must be a positive number of seconds");
        }
        if let Some(r) = self.bench.request_rate {
            if r.is_nan() || r <= 0.0 {
                bail!("`bench.request_rate`: must be positive (or `inf`), got {r}");
            }
        }
        if let Some(b) = self.bench.burstiness {
            if !(b.is_finite() && b > 0.0) {
                bail!("`bench.burstiness`: must be a number above 0, got {b}");
            }
        }
        self.bench.shape_args()?;
        if let (Some(lo), Some(hi)) = (self.bench.min_output_len, self.bench.max_output_len) {
            if lo > hi {
                bail!("`bench.min_output_len` ({lo}) is above `bench.max_output_len` ({hi})");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_keep_file_order_and_carry_filter_settings() {
        let c = SweepConfig::parse(
            "[strategies]\nz = \"pow2\"\na = { policy = \"prefix_aware\", miss_policy = \"least_loaded\" }\n\
             [bench]\nrequest_rate = inf\nnum_prompts = 20\nmin_messages = 16\n",
        )
        .unwrap();
        let labels: Vec<&str> = c.strategies.keys().map(String::as_str).collect();
        assert_eq!(labels, ["z", "a"]);
        let pc = c.strategies["a"].filter_config(&["127.0.0.1:1".into()]);
        assert_eq!(pc.policy, PolicyKind::PrefixAware);
        assert_eq!(pc.miss_policy, prefixgate_filter::MissPolicy::LeastLoaded);
        assert_eq!(pc.backends, [BackendConfig::Address("127.0.0.1:1".into())]);
        assert_eq!(c.strategies["z"], Strategy::of_policy(PolicyKind::Pow2), "defaults for the rest");
        let args = c.bench.run_args("a", "m", 2.0).unwrap();
        assert_eq!((args.num_prompts, args.min_messages), (20, 16));
        assert!(args.request_rate.is_infinite());
        assert_eq!(args.max_output_len, 200, "unset fields keep run's default");
        assert_eq!(c.server.gpu_type(), "L4");
    }

    #[test]
    fn the_shipped_sweeps_are_valid() {
        for text in [include_str!("../../sweeps/demo.toml"), include_str!("../../sweeps/miss-policy.toml")] {
            let c = SweepConfig::parse(text).unwrap();
            assert!(c.strategies.len() >= 2);
            assert_eq!(c.bench.run_args("x", "m", 1.0).unwrap().num_prompts, 1000);
        }
    }

    #[test]
    fn a_shape_takes_its_flags_from_bench_shape() {
        let c = SweepConfig::parse(
            "[strategies]\na = \"pow2\"\n[bench]\ndataset_name = \"generated-shared-prefix\"\n\
             [bench.shape]\ngsp_num_groups = 1\ngsp-prompts-per-group = 300\nrandom_range_ratio = 0.5\n",
        )
        .unwrap();
        let a = c.bench.run_args("x", "m", 1.0).unwrap();
        assert_eq!(a.dataset_name, Some(DatasetName::GeneratedSharedPrefix));
        assert_eq!((a.shapes.gsp_num_groups, a.shapes.gsp_prompts_per_group), (1, 300));
        assert_eq!(a.shapes.random_range_ratio, 0.5);
        assert_eq!(a.shapes.gsp_system_prompt_len, 2048, "the others keep run's defaults");
        let bad = SweepConfig::parse("[strategies]\na = \"pow2\"\n[bench.shape]\nnum_prompts = 3\n");
        let e = format!("{:#}", bad.unwrap_err());
        assert!(e.contains("bench.shape") && e.contains("--num-prompts"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = |t: &str| format!("{:#}", SweepConfig::parse(t).unwrap_err());
        assert!(e("[strategies]\n").contains("`strategies`"));
        assert!(e("[strategies]\n\"a b\" = \"pow2\"\n").contains("strategies.a b"));
        assert!(e("[server]\nnum_servrs = 2\n[strategies]\na = \"pow2\"\n").contains("num_servrs"));
        assert!(e("[server]\ntime_scale = 0\n[strategies]\na = \"pow2\"\n").contains("server.time_scale"));
        let shared_port = e("[server]\nrouters = 2\nrouter_port = 8000\n[strategies]\na = \"pow2\"\n");
        assert!(
            shared_port.contains("server.router_port") && shared_port.contains("2 routers"),
            "{shared_port}"
        );
        assert!(e("[server]\nbackends = [\"127.0.0.1:1\"]\ntime_scale = 5\n[strategies]\na = \"pow2\"\n")
            .contains("server.backends"));
        assert!(e("[strategies]\na = \"pow2\"\n[bench]\nmin_output_len = 9\nmax_output_len = 3\n")
            .contains("bench.min_output_len"));
        // A strategy is checked as the filter checks it, when the file is read.
        let bad_policy = e("[strategies]\nbroken = \"no_such_policy\"\n");
        assert!(bad_policy.contains("broken") && bad_policy.contains("no_such_policy"), "{bad_policy}");
        let bad_field = e("[strategies]\na = { policy = \"pow2\", match_rate_threshold = 7 }\n");
        assert!(bad_field.contains("match_rate_threshold"), "{bad_field}");
        let typo = e("[strategies]\na = { policy = \"pow2\", mis_policy = \"least_loaded\" }\n");
        assert!(typo.contains("mis_policy"), "{typo}");
        assert!(e("[strategies]\na = { miss_policy = \"least_loaded\" }\n").contains("`policy` is required"));
        assert!(e("[strategies]\na = { policy = \"pow2\", backends = [] }\n").contains("server.backends"));
    }
}
