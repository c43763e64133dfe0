//! The `prefixgate` binary.

use clap::Parser;
use prefixgate::app::{self, StartError};
use prefixgate::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = cli.run.workers {
        runtime.worker_threads(usize::from(workers));
    }
    let rt = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match cli.command {
            Some(Command::Swap(args)) => report(prefixgate::swap::run(args).await),
            Some(Command::Check(args)) => check(args).await,
            None => run(cli.run).await,
        }
    })
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration the options and the file describe, or exit code 2
/// with the reason.
fn load_config(args: &prefixgate::cli::RunArgs) -> Result<prefixgate::config::Config, ExitCode> {
    args.config().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Says why the filter could not start (or be checked): exit code 2 for
/// bad input (the configuration, or a module or plugin configuration the
/// filter refuses), 1 otherwise.
fn start_failure(e: StartError) -> ExitCode {
    match e {
        StartError::Config(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        StartError::Filter(e) if e.is_refusal() => {
            eprintln!("error: filter: {}", prefixgate::error_chain(&e));
            ExitCode::from(2)
        }
        e => {
            eprintln!("error: {}", prefixgate::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `prefixgate check`: one line on stdout when the filter passes, the
/// reason on stderr (exit code 2) when a swap would refuse it.
async fn check(args: prefixgate::cli::RunArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match app::check(config).await {
        Ok(sha256) => {
            println!("filter ok: sha256 {sha256}; the canary request and tick passed");
            ExitCode::SUCCESS
        }
        Err(e) => start_failure(e),
    }
}

async fn run(args: prefixgate::cli::RunArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let running = match app::start(config).await {
        Ok(r) => r,
        Err(e) => return start_failure(e),
    };
    // One line on stdout, for scripts and tests started with port 0.
    println!("prefixgate listening on http://{} admin http://{}", running.listen, running.admin);
    wait_for_signals(&running, args.config).await;
    ExitCode::SUCCESS
}

/// Waits for ctrl-c or SIGTERM; SIGHUP reloads the config file.
async fn wait_for_signals(running: &app::Running, path: Option<std::path::PathBuf>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term)) = (signal(SignalKind::hangup()), signal(SignalKind::terminate())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match &path {
                Some(p) => match app::reload_from_file(&running.app, p).await {
                    Ok(()) => tracing::info!("configuration reloaded from {}", p.display()),
                    Err(e) => tracing::warn!(
                        "reload refused, the previous filter keeps serving: {}",
                        prefixgate::error_chain(&e)
                    ),
                },
                None => tracing::warn!("SIGHUP ignored: no --config file"),
            },
        }
    }
}
