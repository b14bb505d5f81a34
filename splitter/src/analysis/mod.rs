//! Judging a canary step: pure functions (minutes by cohort and guards in, a verdict with its
//! numbers out), no clock and no I/O, so they are tested on simulated worlds.
//!
//! **What is compared with what.** A share sends whole tenants to the canary, and tenants
//! differ (one fails 2 % on every version, another 0.1 %). So a step is judged on the tenants
//! that moved at it, against *the same tenants* before the step, corrected by what changed
//! meanwhile for the tenants that did not move (difference-in-differences): a shared incident
//! or the time of day moves both alike and cancels; a heavy, error-prone tenant is compared with
//! itself. At 100 % the unmoved tenants are those already on the canary since earlier steps.
//! Cohorts ([`crate::cohort`], 0.1 % of tenants each) are the unit; each cohort-minute's
//! residual enters the variance, so one tenant's burst widens the uncertainty instead of
//! counting as evidence ([`did`]).
//!
//! **How often it may look.** The test is an always-valid mixture sequential probability ratio
//! ([`stats::log_mixture_ratio_over`], averaged over widths of 1–64 margins): its false-alarm level holds however many times and replicas
//! look, so the verdict depends on the data, not on the cadence. The level `alpha` is split over
//! the plan's steps (half to the first, [`step_weight`]) and the three metrics (half to 5xx, a
//! quarter each to requests slower than stable's p95 and slower than its p99). A 5xx failure
//! with few errors must also pass an exact Poisson (mid-p) test.
//!
//! **What pauses instead.** No baseline for the moved tenants (no traffic from them in the
//! [`Guards::baseline_minutes`] before the step), a request share that moved away from the
//! moved tenants' own share before the step (sample-ratio mismatch: a canary losing or
//! duplicating requests), or no tenant that moved at all: the data cannot be trusted, so the plan
//! pauses for a person, never rolls back. Too little traffic waits.

mod did;
pub mod stats;

use crate::cohort::{Counts, Detail};
use crate::traffic::VersionTraffic;
pub use did::{Estimate, Role};
use serde::{Deserialize, Serialize};
pub use stats::normal_quantile;
use std::collections::BTreeMap;

/// What a plan tolerates before it rolls back (and when it distrusts its data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Guards {
    /// Requests from the moved tenants (since the step) needed before anything is judged.
    pub min_requests: u64,
    /// Tolerated excess of the moved tenants' 5xx rate: at least this much (absolute, 0.001 =
    /// 0.1 points) …
    pub error_margin: f64,
    /// … or this fraction of their rate before the step if that is more (0.5: 1.5 × passes).
    pub error_margin_relative: f64,
    /// Canary 5xx needed before the error rate can fail.
    pub min_errors: u64,
    /// False rollbacks allowed over a whole plan (split over steps and metrics).
    pub alpha: f64,
    /// Tolerated excess share of requests slower than stable's p95 (0.05: 5 points); at p99, a
    /// fifth of it.
    pub slow_margin: f64,
    /// A p95 difference below this is never a regression (milliseconds).
    pub latency_slack_ms: f64,
    /// Minutes before a step that are the moved tenants' baseline.
    pub baseline_minutes: u32,
    /// False sample-ratio pauses allowed over a whole plan.
    pub srm_alpha: f64,
    /// Tolerated change of the moved tenants' request share (0.01: 1 %).
    pub srm_margin: f64,
}

impl Default for Guards {
    fn default() -> Guards {
        Guards {
            min_requests: 100,
            error_margin: 0.001,
            error_margin_relative: 0.5,
            min_errors: 5,
            alpha: 0.01,
            slow_margin: 0.05,
            latency_slack_ms: 5.0,
            baseline_minutes: 60,
            srm_alpha: 0.001,
            srm_margin: 0.01,
        }
    }
}

/// Moved requests needed before p99 is compared (below it, only p95).
pub const P99_MIN_REQUESTS: u64 = 1_000;
/// The mixture's widths, in margins (averaged): effects from about a margin to a hundred
/// margins are all found quickly.
pub const TAUS_PER_MARGIN: [f64; 4] = [1.0, 4.0, 16.0, 64.0];

fn taus(margin: f64) -> [f64; 4] {
    TAUS_PER_MARGIN.map(|k| k * margin)
}
/// Seconds after a minute ends before it counts as complete (every replica flushes within 5 s).
pub const GRACE_SECS: i64 = 8;

/// One group's totals over some minutes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub requests: u64,
    pub errors: u64,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Side {
    pub fn of(c: &Counts) -> Side {
        let mut t = VersionTraffic {
            requests: c.requests,
            errors: c.errors,
            latency: vec![0; c.from],
            latency_sum_us: 0,
        };
        t.latency.extend(&c.latency);
        let ms = |q: f64| t.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        Side {
            requests: c.requests,
            errors: c.errors,
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
        }
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The outcome of one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Enough data and no regression.
    Pass,
    /// A regression: the plan rolls back.
    Fail,
    /// Too few requests to judge: the step waits.
    Inconclusive,
    /// No traffic at all in the judged minutes.
    NoData,
    /// The data cannot be trusted (no baseline, sample-ratio mismatch, nobody moved): the plan
    /// pauses for a person.
    Untrusted,
}

/// One group of cohorts before the step and since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub cohorts: u32,
    pub before: Side,
    pub after: Side,
}

/// One metric's test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// `5xx`, `slower than p95`, `slower than p99` or `request share`.
    pub metric: String,
    pub before: f64,
    pub after: f64,
    pub control_change: f64,
    pub excess: f64,
    pub margin: f64,
    /// ln of the evidence (mixture likelihood ratio) and the bar it must reach, ln(1/α).
    pub evidence: f64,
    pub bar: f64,
    pub failed: bool,
}

/// A tenant that contributes to the canary's excess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hurt {
    pub tenant: String,
    /// Since the step, on the canary.
    pub requests: u64,
    pub errors: u64,
    /// 5xx and slow requests (above stable's p95) beyond what its own rates before the step
    /// predict.
    pub excess_errors: f64,
    pub excess_slow: f64,
}

/// The comparison a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub moved: Group,
    pub unmoved: Group,
    pub baseline_minutes: usize,
    pub step_minutes: usize,
    pub tests: Vec<Test>,
}

/// A verdict with the numbers it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The moved tenants since the step (on the canary) and the unmoved ones.
    pub canary: Side,
    pub stable: Side,
    /// Why, in words an operator can check.
    pub reason: String,
    pub comparison: Option<Comparison>,
    /// The tenants contributing most to the canary's excess, worst first (at most 5).
    pub hurt: Vec<Hurt>,
}

/// The step being judged.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub canary: &'a str,
    pub stable: &'a str,
    /// The step's share in basis points.
    pub share: u16,
    /// When the step's share was set (Unix seconds).
    pub entered: i64,
    /// Now (Unix seconds).
    pub now: i64,
    /// Which step this is (0: the first) and how many the plan has (for splitting `alpha`,
    /// [`step_weight`]).
    pub index: usize,
    pub steps: usize,
}

/// The share of a plan's `alpha` that step `index` of `steps` may spend: half to the first,
/// half of the rest to the next, and so on, the last taking what is left (4 steps: 1/2, 1/4,
/// 1/8, 1/8). The first step has the fewest tenants and is where a bad canary must be caught
/// soonest; each later one holds more traffic, so it finds the same effect with less `alpha`.
pub fn step_weight(index: usize, steps: usize) -> f64 {
    let steps = steps.max(1);
    let index = index.min(steps - 1);
    let halvings = if index + 1 == steps { index } else { index + 1 };
    0.5f64.powi(halvings as i32)
}

/// The share of a step's `alpha` each metric may spend: half to the 5xx rate, a quarter to
/// each of p95 and p99.
pub const METRIC_WEIGHTS: [f64; 3] = [0.5, 0.25, 0.25];

impl Step<'_> {
    /// The baseline's minutes and the step's complete minutes (the first is the minute the
    /// share changed in).
    pub fn minutes(
        &self,
        guards: &Guards,
    ) -> (std::ops::RangeInclusive<i64>, std::ops::RangeInclusive<i64>) {
        let first = self.entered.div_euclid(60);
        let last = (self.now - GRACE_SECS).div_euclid(60) - 1;
        (
            first - i64::from(guards.baseline_minutes)..=first - 1,
            first..=last,
        )
    }
}

/// Judges a step from its minutes by cohort (`detail`: minute → replicas summed), covering at
/// least [`Step::minutes`].
pub fn judge(detail: &BTreeMap<i64, Detail>, step: &Step, guards: &Guards) -> Verdict {
    let (pre, post) = step.minutes(guards);
    let data = did::read(detail, pre, post, step.canary, step.stable, step.share);
    Judgement::new(&data, step, guards).verdict(detail)
}

/// A step's comparison kept from one look to the next, for a caller that looks often (the world
/// simulator; a controller could too): each new complete minute is read once, and the verdict
/// is the one [`judge`] gives on the same minutes (tested). Rebuilt whole when the step, its
/// baseline's minutes or its first minute (part of the baseline) change.
pub struct Judging {
    key: (i64, u16, String, String, i64),
    data: did::Data,
    /// The last step minute read.
    through: i64,
}

impl Judging {
    fn key(step: &Step, guards: &Guards) -> (i64, u16, String, String, i64) {
        let (pre, _) = step.minutes(guards);
        (
            step.entered,
            step.share,
            step.canary.to_string(),
            step.stable.to_string(),
            *pre.start(),
        )
    }

    pub fn new(detail: &BTreeMap<i64, Detail>, step: &Step, guards: &Guards) -> Judging {
        let (pre, post) = step.minutes(guards);
        Judging {
            key: Judging::key(step, guards),
            data: did::read(
                detail,
                pre,
                post.clone(),
                step.canary,
                step.stable,
                step.share,
            ),
            through: *post.end(),
        }
    }

    /// The verdict at `step` (its `now` may have moved on) on `detail`, which holds the same
    /// complete minutes as the last look's plus any that completed since.
    pub fn verdict(
        &mut self,
        detail: &BTreeMap<i64, Detail>,
        step: &Step,
        guards: &Guards,
    ) -> Verdict {
        let (_, post) = step.minutes(guards);
        let same = self.key == Judging::key(step, guards);
        if !same || self.through < *post.start() || *post.end() < self.through {
            *self = Judging::new(detail, step, guards);
        } else {
            for d in did::within(detail, self.through + 1..=*post.end()) {
                self.data.push(d);
            }
            self.through = *post.end();
        }
        Judgement::new(&self.data, step, guards).verdict(detail)
    }
}

struct Judgement<'a> {
    data: &'a did::Data,
    step: &'a Step<'a>,
    guards: &'a Guards,
    comparison: Comparison,
}

impl<'a> Judgement<'a> {
    fn new(data: &'a did::Data, step: &'a Step<'a>, guards: &'a Guards) -> Judgement<'a> {
        let count = |role| data.roles.iter().filter(|r| **r == role).count() as u32;
        let comparison = Comparison {
            moved: Group {
                cohorts: count(Role::Moved),
                before: Side::of(&data.moved_before),
                after: Side::of(&data.moved_after),
            },
            unmoved: Group {
                cohorts: count(Role::Unmoved),
                before: Side::of(&data.unmoved_before),
                after: Side::of(&data.unmoved_after),
            },
            baseline_minutes: data.volume_before.len(),
            step_minutes: data.post_minutes,
            tests: Vec::new(),
        };
        Judgement {
            data,
            step,
            guards,
            comparison,
        }
    }

    fn verdict(mut self, detail: &BTreeMap<i64, Detail>) -> Verdict {
        let outcome_reason = self.decide();
        let hurt = hurt(detail, self.step, self.guards, &self.data.slow_after);
        let (outcome, reason) = outcome_reason;
        let hurt_words = if outcome == Outcome::Fail && !hurt.is_empty() {
            let names: Vec<String> = hurt
                .iter()
                .map(|h| format!("{} ({} 5xx in {})", h.tenant, h.errors, h.requests))
                .collect();
            format!("; most affected: {}", names.join(", "))
        } else {
            String::new()
        };
        Verdict {
            outcome,
            canary: self.comparison.moved.after.clone(),
            stable: self.comparison.unmoved.after.clone(),
            reason: format!("{reason}{hurt_words}"),
            comparison: Some(self.comparison),
            hurt,
        }
    }

    fn decide(&mut self) -> (Outcome, String) {
        let (moved, unmoved) = (&self.comparison.moved, &self.comparison.unmoved);
        let minutes = format!(
            "{} baseline and {} step minutes",
            self.comparison.baseline_minutes, self.comparison.step_minutes
        );
        if moved.after.requests == 0 && unmoved.after.requests == 0 {
            return (
                Outcome::NoData,
                format!("no requests recorded by tenant in {minutes}"),
            );
        }
        if moved.cohorts == 0 {
            return (
                Outcome::Untrusted,
                "no tenant moved to the canary at this step (they were on it before): there is \
                 no baseline of the same tenants to compare with"
                    .into(),
            );
        }
        // Too little traffic since the step waits (whatever the baseline); with enough, no
        // baseline to compare it with is a reason to stop.
        let min = self.guards.min_requests;
        if moved.after.requests < min {
            return (
                Outcome::Inconclusive,
                format!(
                    "{} requests from the moved tenants in {minutes}; {min} are needed to judge",
                    moved.after.requests
                ),
            );
        }
        if moved.before.requests < min {
            return (
                Outcome::Untrusted,
                format!(
                    "no pre-step baseline: the tenants that moved sent {} requests in the {} \
                     minutes before the step; {min} are needed",
                    moved.before.requests, self.guards.baseline_minutes
                ),
            );
        }
        // A failure rolls back even when the data is also suspect (stable is the safe side);
        // otherwise suspect data pauses.
        let mismatch = self.sample_ratio();
        if let Some(why) = self.metrics() {
            return (Outcome::Fail, why);
        }
        if let Some(why) = mismatch {
            return (Outcome::Untrusted, why);
        }
        let (silent, expected) = did::silent(self.data);
        if silent > 0 {
            return (
                Outcome::Untrusted,
                format!(
                    "tenants gone silent: {silent} of the moved tenant groups sent no request \
                     since the step, though they sent requests in every minute before it and \
                     their traffic predicts about {expected:.0}; the canary may be dropping some \
                     tenants' requests, so its numbers cannot be trusted"
                ),
            );
        }
        (Outcome::Pass, self.summary())
    }

    /// ln(1/α) for a test that may spend `share` of this step's part of `alpha`.
    fn bar(&self, alpha: f64, share: f64) -> f64 {
        (1.0 / (alpha * share * step_weight(self.step.index, self.step.steps))).ln()
    }

    fn sample_ratio(&mut self) -> Option<String> {
        let (change, se) = did::share_change(self.data)?;
        let m = self.guards.srm_margin;
        let evidence = stats::log_mixture_ratio_over(change.abs(), m, se, &taus(m));
        let bar = self.bar(self.guards.srm_alpha, 1.0);
        let failed = evidence >= bar;
        self.comparison.tests.push(Test {
            metric: "request share".into(),
            before: 0.0,
            after: change,
            control_change: 0.0,
            excess: change,
            margin: m,
            evidence,
            bar,
            failed,
        });
        failed.then(|| {
            format!(
                "sample-ratio mismatch: the moved tenants sent {:+.1}% requests against their \
                 share before the step (tolerated ±{:.0}%); the canary may be losing or \
                 duplicating requests, so its numbers cannot be trusted",
                change * 100.0,
                m * 100.0
            )
        })
    }

    /// Runs the metric tests; the first failure's words.
    fn metrics(&mut self) -> Option<String> {
        let with_p99 = self.comparison.moved.after.requests >= P99_MIN_REQUESTS;
        let mut failure = None;
        for m in [did::ERRORS, did::SLOW_P95, did::SLOW_P99] {
            if m == did::SLOW_P99 && !with_p99 {
                continue;
            }
            if m != did::ERRORS && self.data.slow_after[m - 1].is_none() {
                continue;
            }
            let Some(test) = self.test(m) else { continue };
            let why = test.failed.then(|| self.failure_words(m, &test));
            self.comparison.tests.push(test);
            if failure.is_none() {
                failure = why;
            }
        }
        failure
    }

    fn margin(&self, m: usize) -> f64 {
        let g = self.guards;
        match m {
            did::ERRORS => {
                let before = self.comparison.moved.before.error_rate();
                g.error_margin.max(g.error_margin_relative * before)
            }
            did::SLOW_P95 => g.slow_margin,
            _ => g.slow_margin / 5.0,
        }
    }

    fn test(&self, m: usize) -> Option<Test> {
        let margin = self.margin(m);
        let e = did::estimate(self.data, m, margin)?;
        let evidence = stats::log_mixture_ratio_over(e.excess, margin, e.se, &taus(margin));
        let bar = self.bar(self.guards.alpha, METRIC_WEIGHTS[m]);
        let mut failed = evidence >= bar;
        if m == did::ERRORS {
            let errors = self.comparison.moved.after.errors;
            let exact =
                stats::poisson_mid_p(e.hits.round() as u64, e.expected + margin * e.requests);
            failed &= errors >= self.guards.min_errors && exact < (-bar).exp();
        } else {
            let (before, after) = (&self.comparison.moved.before, &self.comparison.moved.after);
            let pick = |s: &Side| {
                if m == did::SLOW_P95 {
                    s.p95_ms
                } else {
                    s.p99_ms
                }
            };
            let slower = match (pick(after), pick(before)) {
                (Some(a), Some(b)) => a - b > self.guards.latency_slack_ms,
                _ => false,
            };
            failed &= slower;
        }
        let metric = [
            "5xx",
            "slower than stable's p95",
            "slower than stable's p99",
        ][m];
        Some(Test {
            metric: metric.into(),
            before: e.before,
            after: e.after,
            control_change: e.control_change,
            excess: e.excess,
            margin,
            evidence,
            bar,
            failed,
        })
    }

    fn failure_words(&self, m: usize, t: &Test) -> String {
        let what = [
            "5xx rate",
            "share of requests slower than stable's p95",
            "share slower than stable's p99",
        ][m];
        let latency = if m == did::ERRORS {
            String::new()
        } else {
            let (b, a) = (&self.comparison.moved.before, &self.comparison.moved.after);
            let pick = |s: &Side| {
                if m == did::SLOW_P95 {
                    s.p95_ms
                } else {
                    s.p99_ms
                }
            };
            let q = if m == did::SLOW_P95 { "p95" } else { "p99" };
            format!("; their {q} {} → {}", fmt_ms(pick(b)), fmt_ms(pick(a)))
        };
        format!(
            "{what}: the moved tenants went from {:.2}% before the step to {:.2}% on the canary \
             ({} 5xx in {} requests), while the others changed {:+.2} points: {:+.2} points \
             beyond them, {:.2} tolerated; evidence {:.1} ≥ {:.1}{latency}",
            t.before * 100.0,
            t.after * 100.0,
            self.comparison.moved.after.errors,
            self.comparison.moved.after.requests,
            t.control_change * 100.0,
            t.excess * 100.0,
            t.margin * 100.0,
            t.evidence,
            t.bar,
        )
    }

    fn summary(&self) -> String {
        let c = &self.comparison;
        let tests: Vec<String> = c
            .tests
            .iter()
            .map(|t| {
                if t.metric == "request share" {
                    format!("request share {:+.1}%", t.excess * 100.0)
                } else {
                    format!(
                        "{} {:+.2} points beyond the others (≤ {:.2}; evidence {:.1} < {:.1})",
                        t.metric,
                        t.excess * 100.0,
                        t.margin * 100.0,
                        t.evidence,
                        t.bar
                    )
                }
            })
            .collect();
        format!(
            "moved tenants: 5xx {:.2}% before the step, {:.2}% on the canary ({} of {}); {}",
            c.moved.before.error_rate() * 100.0,
            c.moved.after.error_rate() * 100.0,
            c.moved.after.errors,
            c.moved.after.requests,
            tests.join("; ")
        )
    }
}

fn fmt_ms(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{x:.1} ms"))
}

/// Who is hurt: the heavy tenants on the canary since the step whose 5xx and slow requests
/// exceed what their own traffic before the step predicts, worst first.
fn hurt(
    detail: &BTreeMap<i64, Detail>,
    step: &Step,
    guards: &Guards,
    slow_after: &[Option<did::Threshold>; 2],
) -> Vec<Hurt> {
    let (pre, post) = step.minutes(guards);
    let sum = |range: std::ops::RangeInclusive<i64>, version: &str| {
        let mut out: BTreeMap<&str, Counts> = BTreeMap::new();
        for d in did::within(detail, range.clone()) {
            for h in d.heavy.iter().filter(|h| h.version == version) {
                out.entry(h.tenant.as_str()).or_default().add(&h.counts);
            }
        }
        out
    };
    let (before, after) = (sum(pre, step.stable), sum(post, step.canary));
    let slow = |c: &Counts| slow_after[0].map_or(0.0, |t| t.slow(c));
    let mut out: Vec<Hurt> = after
        .iter()
        .filter_map(|(tenant, a)| {
            let b = before.get(tenant)?;
            if b.requests == 0 || a.requests == 0 {
                return None;
            }
            let n = a.requests as f64;
            let rate = |x: f64, c: &Counts| x / c.requests as f64;
            let excess_errors = a.errors as f64 - n * rate(b.errors as f64, b);
            let excess_slow = slow(a) - n * rate(slow(b), b);
            (excess_errors > 0.5 || excess_slow > 0.5).then(|| Hurt {
                tenant: tenant.to_string(),
                requests: a.requests,
                errors: a.errors,
                excess_errors,
                excess_slow,
            })
        })
        .collect();
    out.sort_by(|x, y| {
        (y.excess_errors + y.excess_slow)
            .total_cmp(&(x.excess_errors + x.excess_slow))
            .then(x.tenant.cmp(&y.tenant))
    });
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests;
