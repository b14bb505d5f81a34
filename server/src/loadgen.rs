//! `apx-canary loadgen`: realistic traffic for a running server on this machine. Tenants follow
//! a Zipf-like distribution (a few tenants send most requests, as in real multi-tenant APIs),
//! requests go through the demo service behind the routing layer (`/demo/{policy}`), canary can
//! be told to fail a share of its requests, and the run always ends after `--seconds`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// The server to load; only this machine (127.0.0.1, localhost, [::1]) is accepted.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub target: String,
    /// Policies to send traffic for (comma-separated), chosen uniformly per request.
    #[arg(long, value_delimiter = ',', required = true)]
    pub policy: Vec<String>,
    /// How long to run (1–600 s).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Requests per second over all workers (0: as fast as the server answers).
    #[arg(long, default_value_t = 200)]
    pub rps: u32,
    /// Distinct tenants (`tenant-1` … `tenant-N`).
    #[arg(long, default_value_t = 10_000)]
    pub tenants: u32,
    /// Zipf exponent: 0 is uniform, 1.1 means the top 1 % of tenants send about half of all requests.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Share of canary requests the demo service answers with 503 (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub canary_error_rate: f64,
    /// Share of the heaviest tenant's (`tenant-1`'s) requests answered 503 on either version
    /// (0–1): a customer that fails whatever it is served.
    #[arg(long, default_value_t = 0.0)]
    pub heaviest_error_rate: f64,
    /// Mean handler time for every request, in ms, 0–5000 (jittered ±50 %).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Mean handler time for canary requests, in ms (default: --latency-ms).
    #[arg(long)]
    pub canary_latency_ms: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seed for the tenant sequence (same seed, same tenants).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl LoadArgs {
    /// Checks every setting; the message says which one and why.
    pub fn validate(&self) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.target)
            .map_err(|e| format!("--target '{}': {e}", self.target))?;
        match url.host_str() {
            Some("127.0.0.1" | "localhost" | "[::1]") => {}
            other => {
                return Err(format!(
                    "--target: load tests run only against this machine (127.0.0.1), not {}",
                    other.unwrap_or("(no host)")
                ))
            }
        }
        if !(1..=600).contains(&self.seconds) {
            return Err(format!("--seconds: {} is outside 1–600", self.seconds));
        }
        if !(1..=1_000_000).contains(&self.tenants) {
            return Err(format!("--tenants: {} is outside 1–1000000", self.tenants));
        }
        if !(0.0..=5.0).contains(&self.zipf) {
            return Err(format!("--zipf: {} is outside 0–5", self.zipf));
        }
        if !(0.0..=1.0).contains(&self.heaviest_error_rate) {
            return Err(format!(
                "--heaviest-error-rate: {} is outside 0–1",
                self.heaviest_error_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.canary_error_rate) {
            return Err(format!(
                "--canary-error-rate: {} is outside 0–1",
                self.canary_error_rate
            ));
        }
        for (flag, ms) in [
            ("--latency-ms", Some(self.latency_ms)),
            ("--canary-latency-ms", self.canary_latency_ms),
        ] {
            if ms.is_some_and(|ms| ms > 5_000) {
                return Err(format!("{flag}: {} is more than 5000", ms.unwrap_or(0)));
            }
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err(format!(
                "--concurrency: {} is outside 1–1024",
                self.concurrency
            ));
        }
        for p in &self.policy {
            splitter::PolicyName::new(p).map_err(|e| format!("--policy: {e}"))?;
        }
        Ok(url)
    }
}

/// Tenant ranks 1..=n drawn with probability ∝ 1/rankˢ.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// The rank for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> u32 {
        (self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
            + 1) as u32
    }
}

/// xorshift64*: small, fast, seedable; quality is ample for picking tenants.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a run sent and got back.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub elapsed: Duration,
    /// Per (policy, version from `X-Apx-Canary-Version` or `stable`): (responses, 5xx).
    pub by_version: BTreeMap<(String, String), (u64, u64)>,
    /// Requests that got no HTTP response (connection refused, timeout).
    pub failed: u64,
}

impl LoadReport {
    pub fn responses(&self) -> u64 {
        self.by_version.values().map(|v| v.0).sum()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "{} responses in {secs:.1} s ({:.0}/s), {} without a response",
            self.responses(),
            self.responses() as f64 / secs.max(1e-9),
            self.failed
        )?;
        for ((policy, version), (n, errors)) in &self.by_version {
            writeln!(
                f,
                "  {policy:<24} {version:<12} {n:>9} responses {errors:>7} 5xx"
            )?;
        }
        Ok(())
    }
}

/// The version that served a response: the canary's label from `X-Apx-Canary-Version`, else
/// `stable`.
fn served_by(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-apx-canary-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("stable")
        .to_string()
}

pub async fn run(args: &LoadArgs) -> Result<LoadReport, String> {
    let base = args.validate()?;
    let zipf = Arc::new(Zipf::new(args.tenants, args.zipf));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    // Fail fast on a typo or a server without the demo service: one probe per policy (no
    // tenant, so it is served by stable), counted in the report like any other response.
    let mut probes = LoadReport::default();
    for policy in &args.policy {
        let mut url = base.clone();
        url.set_path(&format!("/demo/{policy}"));
        let res = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", args.target))?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(format!(
                "{} has no demo service: start it with --demo (or APX_DEMO=1)",
                args.target
            ));
        }
        let version = served_by(&res);
        let failed = res.status().is_server_error();
        let body = res.text().await.unwrap_or_default();
        if body.contains("\"no_config\"") {
            return Err(format!(
                "policy '{policy}' does not exist on {}",
                args.target
            ));
        }
        let e = probes
            .by_version
            .entry((policy.clone(), version))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(failed);
    }
    let report = Arc::new(Mutex::new(probes));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let period =
        (args.rps > 0).then(|| Duration::from_secs_f64(args.concurrency as f64 / args.rps as f64));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, zipf, report, args, base) = (
            client.clone(),
            zipf.clone(),
            report.clone(),
            args.clone(),
            base.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng((args.seed.wrapping_add(1) << 16 | w as u64) | 1);
            let mut ticker = period.map(|p| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(w as f64 / args.concurrency as f64),
                    p,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let policy = &args.policy
                    [(rng.uniform() * args.policy.len() as f64) as usize % args.policy.len()];
                let rank = zipf.rank(rng.uniform());
                let tenant = format!("tenant-{rank}");
                let mut url = base.clone();
                url.set_path(&format!("/demo/{policy}"));
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("canary_error_rate", &args.canary_error_rate.to_string());
                    if rank == 1 && args.heaviest_error_rate > 0.0 {
                        q.append_pair("error_rate", &args.heaviest_error_rate.to_string());
                    }
                    q.append_pair("latency_ms", &args.latency_ms.to_string());
                    if let Some(ms) = args.canary_latency_ms {
                        q.append_pair("canary_latency_ms", &ms.to_string());
                    }
                }
                let result = client.get(url).header("X-Tenant-ID", &tenant).send().await;
                let mut r = report.lock().unwrap();
                match result {
                    Ok(res) => {
                        let version = served_by(&res);
                        let e = r.by_version.entry((policy.clone(), version)).or_default();
                        e.0 += 1;
                        e.1 += u64::from(res.status().is_server_error());
                    }
                    Err(_) => r.failed += 1,
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| format!("a load worker failed: {e}"))?;
    }
    let mut report = report.lock().unwrap().clone();
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_covers_the_range() {
        let z = Zipf::new(1000, 1.1);
        let mut rng = Rng(7);
        let mut counts = vec![0u32; 1001];
        for _ in 0..100_000 {
            counts[z.rank(rng.uniform()) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1] > counts[2] && counts[2] > counts[10] && counts[10] > counts[500]);
        // P(rank 1) = 1 / H(1000, 1.1) ≈ 0.19.
        let p1 = counts[1] as f64 / 100_000.0;
        assert!((p1 - 0.19).abs() < 0.02, "{p1}");
        let uniform = Zipf::new(10, 0.0);
        assert_eq!(uniform.rank(0.0), 1);
        assert_eq!(uniform.rank(0.999_999), 10);
    }

    #[test]
    fn only_this_machine_is_a_target() {
        let args = |target: &str| LoadArgs {
            target: target.into(),
            policy: vec!["p".into()],
            seconds: 1,
            rps: 1,
            tenants: 10,
            zipf: 1.0,
            canary_error_rate: 0.0,
            heaviest_error_rate: 0.0,
            latency_ms: 0,
            canary_latency_ms: None,
            concurrency: 1,
            seed: 1,
        };
        assert!(args("http://127.0.0.1:3000").validate().is_ok());
        let err = args("http://example.com").validate().unwrap_err();
        assert!(err.contains("only against this machine"), "{err}");
        let mut bad = args("http://127.0.0.1:1");
        bad.canary_error_rate = 1.5;
        assert!(bad.validate().unwrap_err().contains("--canary-error-rate"));
        let mut heavy = args("http://127.0.0.1:1");
        heavy.heaviest_error_rate = -0.1;
        assert!(heavy
            .validate()
            .unwrap_err()
            .contains("--heaviest-error-rate"));
        let mut slow = args("http://127.0.0.1:1");
        slow.canary_latency_ms = Some(9_000);
        assert!(slow
            .validate()
            .unwrap_err()
            .contains("--canary-latency-ms: 9000 is more than 5000"));
    }
}
