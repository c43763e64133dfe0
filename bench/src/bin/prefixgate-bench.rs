//! `prefixgate-bench`: a load driver compatible with SGLang's bench_serving.
//!
//! ```text
//! prefixgate-bench run --base-url http://127.0.0.1:8000 --num-prompts 1000 \
//!     --request-rate 100 --max-concurrency 40 --replica-urls http://127.0.0.1:8001,...
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use prefixgate_bench::load::run::{run, summary_table, write_record, RunArgs};
use std::process::ExitCode;

/// Benchmark an OpenAI-compatible server (prefixgate, Envoy, a peer router or vLLM itself).
#[derive(Debug, Parser)]
#[command(name = "prefixgate-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a dataset's prompts and report bench_serving's metrics.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prefixgate-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prefixgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => {
            let output = args.output_file.clone();
            let report = run(args, true).await?;
            print!("{}", summary_table(&report));
            if let Some(path) = output {
                write_record(&report, &path)?;
            }
            if report.metrics.failed > 0 {
                let first = report.outcomes.iter().find_map(|o| o.error.clone()).unwrap_or_default();
                eprintln!(
                    "prefixgate-bench: {} requests failed; first error: {first}",
                    report.metrics.failed
                );
            }
            Ok(())
        }
    }
}
