//! `apx-canary`: the dashboard server. Embedded store by default; Firestore with
//! `--firestore-project` (honours `FIRESTORE_EMULATOR_HOST`). `apx-canary loadgen` sends
//! traffic to a running server on this machine.

use clap::Parser;
use leptos::config::LeptosOptions;
use splitter::store::{embedded::EmbeddedStore, firestore::FirestoreStore, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Rendering a page allocates and frees thousands of small strings: mimalloc does that in a
/// fraction of glibc's time (BENCHMARKS.md, "Pages at 32 connections").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage accounts (in the store the server uses).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens (in the store the server uses).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input (one line) or, on a
    /// terminal, typed without echo.
    Add {
        /// Account name: lowercase letters, digits, '.', '_', '@', '-'.
        name: String,
        /// Make it an admin (same as --role admin).
        #[arg(long)]
        admin: bool,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// For operators: the policy-name patterns the grant covers (e.g. "payments-*").
        #[arg(long, default_value = "")]
        policies: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete an account and end its sessions on every replica.
    Delete {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (once) on standard output.
    Add {
        name: String,
        /// viewer, operator, admin or service.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        policies: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Directory of the embedded store (created on first run).
    #[arg(long, env = "APX_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Use Firestore in this Google Cloud project instead of the embedded store.
    #[arg(long, env = "APX_FIRESTORE_PROJECT")]
    firestore_project: Option<String>,
}

impl StoreArgs {
    async fn open(&self) -> Result<Arc<dyn Store>, splitter::Error> {
        Ok(match &self.firestore_project {
            Some(project) => FirestoreStore::connect(project, Duration::from_secs(10)).await?,
            None => Arc::new(EmbeddedStore::open(self.data_dir.join("canary.redb"))?),
        })
    }
}

#[derive(clap::Args)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "APX_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Serve the demo service (`/demo/{policy}`) behind the routing layer.
    #[arg(long, env = "APX_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    demo: bool,
    /// Always mark the session cookie Secure (it is also marked behind a proxy that sends
    /// `X-Forwarded-Proto: https`).
    #[arg(long, env = "APX_SECURE_COOKIES", value_parser = clap::builder::BoolishValueParser::new())]
    secure_cookies: bool,
    /// Behind Google's Identity-Aware Proxy: the audience its assertions are signed for
    /// (`/projects/NUMBER/global/backendServices/ID`). Turns IAP sign-in on.
    #[arg(long, env = "APX_IAP_AUDIENCE")]
    iap_audience: Option<String>,
    /// The JWK set IAP signs with, as a file (re-read on the refresh schedule and on an
    /// unknown key id).
    #[arg(
        long,
        env = "APX_IAP_JWKS",
        requires = "iap_audience",
        conflicts_with = "iap_jwks_url"
    )]
    iap_jwks: Option<PathBuf>,
    /// The JWK set IAP signs with, fetched from this URL (default without --iap-jwks:
    /// https://www.gstatic.com/iap/verify/public_key-jwk).
    #[arg(long, env = "APX_IAP_JWKS_URL", requires = "iap_audience")]
    iap_jwks_url: Option<String>,
    /// Seconds between refreshes of the IAP key set (an unknown key id also refreshes it, at
    /// most once per 30 s).
    #[arg(long, env = "APX_IAP_JWKS_REFRESH_SECS", default_value_t = server::auth::iap::DEFAULT_REFRESH_SECS, requires = "iap_audience")]
    iap_jwks_refresh_secs: u64,
    /// Roles for IAP users: ROLE=EMAIL or ROLE=@DOMAIN (repeat; the exact e-mail wins).
    #[arg(long = "iap-role", requires = "iap_audience")]
    iap_roles: Vec<String>,
    /// Do not create demo policies in an empty embedded store.
    #[arg(long)]
    no_demo: bool,
    /// Do not send the built-in demo traffic to the embedded store's demo policies (it never
    /// runs on Firestore).
    #[arg(long, env = "APX_NO_DEMO_TRAFFIC", value_parser = clap::builder::BoolishValueParser::new())]
    no_demo_traffic: bool,
    /// The built site (`cargo leptos build --release` writes it to target/site): the hashed
    /// WASM, JS and CSS under pkg/, with their .br and .gz.
    #[arg(long, env = "APX_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Seconds between writes of recorded traffic to the store.
    #[arg(long, env = "APX_TRAFFIC_FLUSH_SECS", default_value_t = 5.0)]
    traffic_flush_secs: f64,
    /// Where to POST plan notices (advanced, promoted, paused, rolled back) as JSON with a
    /// Slack-compatible `text` field; repeat for several.
    #[arg(long = "webhook", env = "APX_WEBHOOKS", value_delimiter = ',')]
    webhooks: Vec<String>,
    /// Seconds between the plan controller's looks at running plans.
    #[arg(long, env = "APX_PLAN_SECS", default_value_t = 10.0)]
    plan_secs: f64,
    /// The host names (HOST or HOST:PORT as browsers send them in `Host`) this server answers
    /// to; others are refused (421), so a page on another name that resolves here (DNS
    /// rebinding) cannot use it. Repeat, or comma-separate. `*`: any. Default: on a loopback
    /// address, that address and `localhost` with its port; on any other address, any.
    #[arg(
        long = "allowed-host",
        env = "APX_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Names this replica in stored traffic (default: host name and process id).
    #[arg(long, env = "APX_REPLICA")]
    replica: Option<String>,
    /// A proxy whose X-Forwarded-For names the client for the sign-in limiter (CIDR, e.g.
    /// 35.191.0.0/16; repeat). Without it, the TCP peer is the client.
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "APX_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<server::auth::limiter::Cidr>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to standard error: standard output carries what a command prints (a new token).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Loadgen(load)) => {
            let report = server::loadgen::run(&load).await?;
            print!("{report}");
            if report.responses() == 0 {
                return Err(
                    format!("no responses from {}: is the server running?", load.target).into(),
                );
            }
            return Ok(());
        }
        Some(Command::User(UserCommand::Add {
            name,
            admin,
            role,
            policies,
            store,
        })) => {
            let role = if admin { "admin".to_string() } else { role };
            let store = store.open().await?;
            let password = read_password()?;
            server::auth::cli::add_user(&*store, &name, &role, &policies, &password).await?;
            eprintln!("account '{name}' created ({role})");
            return Ok(());
        }
        Some(Command::User(UserCommand::List { store })) => {
            print!(
                "{}",
                server::auth::cli::list_users(&*store.open().await?).await?
            );
            return Ok(());
        }
        Some(Command::User(UserCommand::Delete { name, store })) => {
            let message = server::auth::cli::delete_user(&*store.open().await?, &name).await?;
            eprintln!("{message}");
            return Ok(());
        }
        Some(Command::Token(TokenCommand::Add {
            name,
            role,
            policies,
            store,
        })) => {
            let store = store.open().await?;
            let secret = server::auth::cli::add_token(&*store, &name, &role, &policies).await?;
            println!("{secret}");
            return Ok(());
        }
        None => {}
    }
    let args = cli.serve;
    if !(0.1..=300.0).contains(&args.traffic_flush_secs) {
        return Err(format!(
            "--traffic-flush-secs: {} is outside 0.1–300",
            args.traffic_flush_secs
        )
        .into());
    }
    if !(0.5..=300.0).contains(&args.plan_secs) {
        return Err(format!("--plan-secs: {} is outside 0.5–300", args.plan_secs).into());
    }
    let mut traffic = server::TrafficSettings {
        flush_every: Duration::from_secs_f64(args.traffic_flush_secs),
        plan_every: Duration::from_secs_f64(args.plan_secs),
        webhooks: server::webhooks::parse_urls(&args.webhooks)?,
        ..Default::default()
    };
    if let Some(r) = &args.replica {
        traffic.replica = r.clone();
    }
    let store = args.store.open().await?;
    if args.store.firestore_project.is_none() && !args.no_demo {
        let n = server::seed::seed_if_empty(&*store).await?;
        if n > 0 {
            tracing::info!("created {n} demo policies in the empty store");
        }
    }
    // cargo-leptos passes its settings through LEPTOS_* variables; without it, use ours.
    let from_cargo_leptos = std::env::var("LEPTOS_OUTPUT_NAME").is_ok();
    let mut leptos = match from_cargo_leptos.then(|| leptos::config::get_configuration(None)) {
        Some(Ok(conf)) => conf.leptos_options,
        _ => LeptosOptions::builder()
            .output_name("apx-canary")
            .site_root(args.site_root.to_string_lossy().as_ref())
            .site_pkg_dir("pkg")
            // A hashed build leaves hash.txt beside the binary.
            .hash_files(app::ssr::assets::hash_file().is_some())
            .build(),
    };
    app::ssr::assets::init(&leptos);
    server::headers::allow_live_reload(&leptos);
    leptos.site_addr = args.addr;
    let mut auth = server::auth::Auth::new(store.clone());
    auth.secure_cookies = args.secure_cookies;
    auth.trusted_proxies = args.trusted_proxies.clone();
    auth.allowed_hosts = server::auth::allowed_hosts(args.addr, &args.allowed_hosts)?;
    if auth.allowed_hosts.is_none() {
        tracing::info!(
            "answering to any Host name (set --allowed-host to the names users reach this server by)"
        );
    }
    auth.metrics_token = std::env::var("APX_METRICS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let iap = args.iap_audience.is_some();
    if let Some(audience) = &args.iap_audience {
        if !(1..=86_400).contains(&args.iap_jwks_refresh_secs) {
            return Err(format!(
                "--iap-jwks-refresh-secs: {} is outside 1–86400",
                args.iap_jwks_refresh_secs
            )
            .into());
        }
        let source = server::auth::iap::JwksSource::from_flags(
            args.iap_jwks.clone(),
            args.iap_jwks_url.as_deref(),
        )?;
        let verifier =
            server::auth::iap::Iap::load(audience, source.clone(), &args.iap_roles).await?;
        verifier.spawn_refresher(Duration::from_secs(args.iap_jwks_refresh_secs));
        tracing::info!(
            audience = %audience,
            jwks = %source,
            keys = ?verifier.key_ids(),
            "IAP mode: signing in by Google's signed assertion (no setup link)"
        );
        if args.iap_roles.is_empty() {
            tracing::warn!("IAP mode without --iap-role: every IAP user is refused");
        }
        auth.enable_iap(verifier).await?;
    }
    let auth = Arc::new(auth);
    // Behind IAP nobody uses the local setup link: the console must not offer one.
    let setup = match iap {
        true => None,
        false => auth.setup_token(15).await?,
    };
    if let Some(token) = setup {
        // Printed for the person at the console, once (never logged): like Jupyter's token URL.
        println!(
            "\nNo account exists yet. Create the first admin within 15 minutes at:\n    http://{}/setup?token={token}\n(or run `apx-canary user add --admin NAME`)\n",
            args.addr
        );
    }
    let state = server::app_state(store.clone(), store, traffic).await?;
    let firestore = args.store.firestore_project.is_some();
    if server::demo_traffic::enabled(firestore, args.no_demo, args.no_demo_traffic) {
        server::demo_traffic::spawn(state.clone());
        tracing::info!(
            "demo traffic: {} requests/s to the demo policies (off: --no-demo-traffic)",
            server::demo_traffic::per_second()
        );
    }
    tracing::info!(store = %state.store_label, "listening on http://{}", args.addr);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let (recorder, store) = (state.recorder.clone(), state.traffic_store.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        let app = server::router(leptos, state, auth, args.demo);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
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
        Ok(docs) => tracing::info!("stopped; wrote {} traffic document(s)", docs.len()),
        Err(e) => {
            tracing::error!(error = %e, lost = recorder.stats().unflushed_requests, "stopped; the last traffic could not be written")
        }
    }
    Ok(())
}

/// A password from standard input: typed without echo on a terminal, else the first line.
fn read_password() -> Result<String, Box<dyn std::error::Error>> {
    use std::io::{BufRead, IsTerminal};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!(
            "Password (at least {} characters): ",
            server::auth::credentials::MIN_PASSWORD
        );
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
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
