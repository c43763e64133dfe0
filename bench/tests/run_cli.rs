//! `prefixgate-bench run` as a user runs it, against a `vllm-sim` fleet:
//! a run in which every request fails exits non-zero with the first error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_every_request_fails_exits_non_zero_with_the_first_error() {
    let config = vllm_sim::config::SimConfig { time_scale: 50.0, ..Default::default() };
    let fleet = vllm_sim::fleet::Fleet::start(config, 1).await.unwrap();
    let url = fleet.urls()[0].clone();
    let run = |model: &'static str| {
        let url = url.clone();
        async move {
            let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prefixgate-bench"))
                .args(["run", "--base-url", &url, "--model", model, "--dataset-name", "random"])
                .args(["--num-prompts", "4", "--random-input-len", "64", "--random-output-len", "4"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap()
        }
    };
    let wrong = run("no-such-model").await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "a run with no success must fail: {stderr}");
    assert!(stderr.contains("every request failed (4 of 4)") && stderr.contains("no-such-model"), "{stderr}");
    // The same run with the served model succeeds: the failure was the model.
    let right = run("Qwen/Qwen2.5-1.5B-Instruct").await;
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    fleet.shutdown().await;
}
