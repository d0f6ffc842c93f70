//! `handover` binary: parse the command line, set up logging, load the config, run.

// jemalloc rather than the system allocator: glibc's malloc/free were ~17 % of the CPU per
// call at 2,000 calls/s, jemalloc's cost ~30 % less per call than glibc's and keeps a held call
// at 7.8 KB (mimalloc was as fast but held 8.7 KB). Figures: README "Benchmark".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::Parser;
use handover::cli::{check_config, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => {
            let (code, out) = check_config(&args.file);
            if code == 0 {
                print!("{out}");
            } else {
                eprint!("{out}");
            }
            ExitCode::from(code)
        }
        Command::Run(args) => {
            let filter = tracing_subscriber::EnvFilter::try_new(args.log_filter())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(false)
                .init();
            let config = match args.load_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            let runtime = match runtime(config.sip.worker_threads) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let path = args.config.clone();
            runtime.block_on(async move {
                match handover::app::start_from(config, path).await {
                    Ok(server) => {
                        serve(server).await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("cannot start: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}

/// The runtime: `[sip] worker_threads` workers (default 1), or `TOKIO_WORKER_THREADS` when
/// set (tokio reads it itself).
///
/// One worker by default: a datagram is then received, parsed, handed to its call actor and
/// answered on the same thread, with no wake-up of another worker. With one worker per core
/// (tokio's default) every message woke a second, idle worker to look for work it did not
/// find; those thread switches were the largest single cost in a profile (bench/README.md).
/// Measured side by side with the shared harness on 2 vCPUs: CPU per call at 2000 calls/s
/// fell from ~185 µs to ~150 µs, at 1000 calls/s from ~240 µs to ~195 µs. More workers
/// spread calls over more cores when one is not enough.
///
/// One worker is tokio's current-thread scheduler, on the main thread: the multi-thread
/// scheduler with a single worker still pays for what only several need (work-stealing
/// queues and atomics, and per-batch poll statistics that read the clock and call `pow`),
/// ~1.7 % of the instructions per call (`bench/instructions.sh`).
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let from_env = std::env::var_os("TOKIO_WORKER_THREADS").is_some();
    if workers <= 1 && !from_env {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if !from_env {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// How long calls may go on after SIGTERM before they are ended.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs until SIGTERM or Ctrl-C (graceful drain); SIGHUP reloads the config and reopens the
/// CDR file.
async fn serve(server: handover::app::RunningServer) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = hup.recv() => {
                        server.reopen_cdr();
                        match server.reload().await {
                            Ok(()) => tracing::info!("SIGHUP: configuration reloaded, CDR file reopened"),
                            Err(errors) => {
                                for e in errors {
                                    tracing::error!("SIGHUP: reload refused: {e}");
                                }
                            }
                        }
                    }
                }
            }
            tracing::info!("shutting down");
            return server.drain_and_shutdown(DRAIN).await;
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.drain_and_shutdown(DRAIN).await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::runtime;
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_worker_is_the_current_thread_scheduler_and_more_are_the_multi_thread_one() {
        if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            return; // the variable chooses the multi-thread scheduler on purpose
        }
        let one = runtime(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        // What the server needs of it: spawned tasks, blocking work (the CDR writer), timers.
        let answer = one.block_on(async {
            let task = tokio::spawn(async { 40 });
            let blocking = tokio::task::spawn_blocking(|| 2);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            task.await.unwrap() + blocking.await.unwrap()
        });
        assert_eq!(answer, 42);
        let two = runtime(2).unwrap();
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
    }
}
