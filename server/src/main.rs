//! `apx-canary`: the dashboard server. Embedded store by default; Firestore with
//! `--firestore-project` (honours `FIRESTORE_EMULATOR_HOST`).

use clap::Parser;
use leptos::config::LeptosOptions;
use splitter::store::{embedded::EmbeddedStore, firestore::FirestoreStore, ConfigStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "APX Canary dashboard")]
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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
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
    let state = server::app_state(store).await?;
    tracing::info!(store = %state.store_label, "listening on http://{}", args.addr);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    axum::serve(listener, server::router(leptos, state)).await?;
    Ok(())
}
