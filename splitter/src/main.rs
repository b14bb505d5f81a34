//! `splitter`: offline previews of tenant assignment.
//!
//! ```text
//! splitter assign --policy NAME [--salt SALT] --percent P [--overrides FILE] < tenants.txt
//! ```
//! reads tenant ids one per line and writes CSV `tenant,bucket,assignment`. Bad lines go to
//! stderr with their line number; the good ones are still written; the exit code is then 1.

use clap::{Parser, Subcommand};
use splitter::{Actor, BasisPoints, Pin, PolicyConfig, PolicyName, Simulator, TenantId, Version};
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "splitter",
    version,
    about = "Offline previews of APX Canary tenant assignment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Assign tenant ids (one per line on stdin) to canary or stable; CSV on stdout.
    Assign {
        /// The policy name (also the default salt).
        #[arg(long)]
        policy: String,
        /// The bucketing salt, if the policy's config sets one.
        #[arg(long)]
        salt: Option<String>,
        /// The canary share: 12.5, 12.5% or 1250bp.
        #[arg(long, allow_hyphen_values = true)]
        percent: String,
        /// Pinned tenants, one `tenant,canary` or `tenant,stable` per line (`#` comments).
        #[arg(long)]
        overrides: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Assign {
            policy,
            salt,
            percent,
            overrides,
        } => match assign(&policy, salt, &percent, overrides) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(message) => {
                eprintln!("splitter: {message}");
                ExitCode::from(2)
            }
        },
    }
}

fn read_overrides(path: &PathBuf) -> Result<BTreeMap<TenantId, Pin>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read overrides file {}: {e}", path.display()))?;
    let mut pins = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let at = |e: String| format!("{}:{}: {e}", path.display(), i + 1);
        // The pin is after the last comma, so tenant ids may contain commas.
        let (tenant, pin) = line
            .rsplit_once(',')
            .ok_or_else(|| at("expected `tenant,canary` or `tenant,stable`".into()))?;
        let tenant = TenantId::new(tenant).map_err(|e| at(e.to_string()))?;
        let pin: Pin = pin
            .parse()
            .map_err(|e: splitter::Error| at(e.to_string()))?;
        if pins.insert(tenant.clone(), pin).is_some() {
            return Err(at(format!("tenant '{tenant}' is pinned twice")));
        }
    }
    Ok(pins)
}

/// Returns Ok(false) when some input lines were bad (they were reported on stderr).
fn assign(
    policy: &str,
    salt: Option<String>,
    percent: &str,
    overrides: Option<PathBuf>,
) -> Result<bool, String> {
    let policy = PolicyName::new(policy).map_err(|e| e.to_string())?;
    let share = BasisPoints::parse(percent).map_err(|e| e.to_string())?;
    let salt = salt.unwrap_or_else(|| policy.to_string());
    splitter::names::validate_salt(&salt).map_err(|e| e.to_string())?;
    let overrides = match overrides {
        Some(path) => read_overrides(&path)?,
        None => BTreeMap::new(),
    };
    // A preview has no versions; placeholders stand in so pins and shares apply as they would.
    let mut config = PolicyConfig::new(
        policy,
        Version::new("stable").expect("valid"),
        Some(Version::new("canary").expect("valid")),
        share,
        Actor::new("splitter-cli").expect("valid actor"),
        jiff::Timestamp::now(),
    );
    config.salt = salt;
    config.overrides = overrides;
    let simulator = Simulator::new(&config, share);
    let stdout = io::stdout().lock();
    let mut out = csv::Writer::from_writer(BufWriter::new(stdout));
    let mut stderr = io::stderr().lock();
    let result = (|| -> io::Result<splitter::SimulationCounts> {
        out.write_record(["tenant", "bucket", "assignment"])?;
        let stdin = io::stdin().lock();
        simulator.stream(
            io::BufReader::with_capacity(1 << 16, stdin),
            |row| {
                let bucket = row.bucket.to_string();
                let assignment = if row.canary_proposed {
                    "canary"
                } else {
                    "stable"
                };
                out.write_record([row.tenant, bucket.as_str(), assignment])
                    .map_err(io::Error::other)
            },
            |line, err| writeln!(stderr, "line {line}: {err}"),
        )
    })();
    let counts = result.map_err(|e| format!("cannot write output: {e}"))?;
    out.flush()
        .map_err(|e| format!("cannot write output: {e}"))?;
    if counts.invalid > 0 {
        eprintln!(
            "splitter: {} bad line(s) skipped; {} tenant(s) assigned",
            counts.invalid, counts.tenants
        );
    }
    Ok(counts.invalid == 0)
}
