//! `apx-canary`: the dashboard server. Embedded store by default; Firestore with
//! `--firestore-project` (honours `FIRESTORE_EMULATOR_HOST`). `apx-canary loadgen` sends
//! traffic to a running server on this machine.

use clap::Parser;
use leptos::config::LeptosOptions;
use splitter::store::{embedded::EmbeddedStore, firestore::FirestoreStore, ConfigStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "APX Canary dashboard", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Send realistic traffic (Zipf tenants, failing canary) to a running server on 127.0.0.1.
    Loadgen(server::loadgen::LoadArgs),
}

#[derive(clap::Args)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "APX_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Directory of the embedded store (created on first run).
    #[arg(long, env = "APX_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Use Firestore in this Google Cloud project instead of the embedded store.
    #[arg(long, env = "APX_FIRESTORE_PROJECT")]
    firestore_project: Option<String>,
    /// Do not create demo policies in an empty embedded store.
    #[arg(long)]
    no_demo: bool,
    /// Seconds between writes of recorded traffic to the store.
    #[arg(long, env = "APX_TRAFFIC_FLUSH_SECS", default_value_t = 5.0)]
    traffic_flush_secs: f64,
    /// Names this replica in stored traffic (default: host name and process id).
    #[arg(long, env = "APX_REPLICA")]
    replica: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::Loadgen(load)) = cli.command {
        let report = server::loadgen::run(&load).await?;
        print!("{report}");
        if report.responses() == 0 {
            return Err(
                format!("no responses from {}: is the server running?", load.target).into(),
            );
        }
        return Ok(());
    }
    let args = cli.serve;
    if !(0.1..=300.0).contains(&args.traffic_flush_secs) {
        return Err(format!(
            "--traffic-flush-secs: {} is outside 0.1–300",
            args.traffic_flush_secs
        )
        .into());
    }
    let mut traffic = server::TrafficSettings {
        flush_every: Duration::from_secs_f64(args.traffic_flush_secs),
        ..Default::default()
    };
    if let Some(r) = &args.replica {
        traffic.replica = r.clone();
    }
    let store: Arc<dyn ConfigStore> = match &args.firestore_project {
        Some(project) => FirestoreStore::connect(project, Duration::from_secs(10)).await?,
        None => {
            let store = Arc::new(EmbeddedStore::open(args.data_dir.join("canary.redb"))?);
            if !args.no_demo {
                let n = server::seed::seed_if_empty(&*store).await?;
                if n > 0 {
                    tracing::info!("created {n} demo policies in the empty store");
                }
            }
            store
        }
    };
    // cargo-leptos passes its settings through LEPTOS_* variables; without it, use ours.
    let from_cargo_leptos = std::env::var("LEPTOS_OUTPUT_NAME").is_ok();
    let mut leptos = match from_cargo_leptos.then(|| leptos::config::get_configuration(None)) {
        Some(Ok(conf)) => conf.leptos_options,
        _ => LeptosOptions::builder()
            .output_name("apx-canary")
            .site_root("target/site")
            .site_pkg_dir("pkg")
            .build(),
    };
    leptos.site_addr = args.addr;
    let state = server::app_state(store, traffic).await?;
    tracing::info!(store = %state.store_label, "listening on http://{}", args.addr);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let (recorder, store) = (state.recorder.clone(), state.store.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, server::router(leptos, state))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tokio::select! {
        result = &mut server => { result??; }
        _ = shutdown_signal() => {
            tracing::info!("stopping: finishing open requests (at most 5 s)");
            let _ = stop_tx.send(());
            // Live pages hold server-sent-event streams open: do not wait for them forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
        }
    }
    // Write what was recorded since the last flush before leaving.
    let now = splitter::traffic::minute_of(jiff::Timestamp::now());
    match recorder.flush(&*store, now).await {
        Ok(n) => tracing::info!("stopped; wrote {n} traffic document(s)"),
        Err(e) => {
            tracing::error!(error = %e, lost = recorder.stats().unflushed_requests, "stopped; the last traffic could not be written")
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
