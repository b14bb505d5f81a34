//! Builds the policy page's traffic section ([`TrafficPage`]) from stored minutes and the audit
//! trail: per-version numbers, chart series drawn as SVG, text alternatives. Pure: the caller
//! passes the minutes, the trail and the clock.

use crate::charts::{self, Role, Series, TimeChart};
use crate::traffic::{Chart, TrafficPage, VersionRow, Window};
use splitter::traffic::VersionTraffic;
use splitter::{AuditEvent, PolicyConfig, VersionRole};
use std::collections::BTreeMap;

/// The effective canary share of a config, as a fraction (0 without one).
fn share_of(c: Option<&PolicyConfig>) -> f64 {
    c.map_or(0.0, |c| c.effective_share().fraction())
}

/// The config in force at the end of `minute`, from the audit trail (newest first); `None`
/// when the trail does not reach back that far (the caller uses the current config).
fn config_at(events: &[AuditEvent], minute: i64) -> Option<Option<&PolicyConfig>> {
    let end = (minute + 1) * 60;
    events
        .iter()
        .find(|e| e.time.as_second() < end)
        .map(|e| e.after.as_ref())
        .or_else(|| events.last().map(|e| e.before.as_ref()))
}

fn marker_label(e: &AuditEvent) -> String {
    match (e.action.as_str(), e.after.as_ref()) {
        ("set_share", Some(a)) => format!("share {}", a.canary_basis_points),
        (action, _) => action.replace('_', " "),
    }
}

pub struct TrafficInput<'a> {
    pub config: &'a PolicyConfig,
    /// Newest first (as the stores return them).
    pub events: &'a [AuditEvent],
    /// Per minute, per version, summed over replicas.
    pub minutes: &'a BTreeMap<i64, BTreeMap<String, VersionTraffic>>,
    /// Per minute, when the newest totals were taken (Unix seconds; see
    /// [`splitter::traffic::written_through`]).
    pub through: &'a BTreeMap<i64, i64>,
    pub window: Window,
    pub now: jiff::Timestamp,
}

/// The window's minutes and how many seconds each one's counts cover.
struct Span {
    from: i64,
    now_minute: i64,
    /// Seconds the current minute's counts cover: up to when they were written (replicas flush
    /// every few seconds), not up to now — dividing by "now" would show a dip at every flush lag.
    current_seconds: f64,
}

impl Span {
    fn of(input: &TrafficInput<'_>) -> Span {
        let now_minute = splitter::traffic::minute_of(input.now);
        let current_seconds = match input.through.get(&now_minute) {
            Some(&t) => t - now_minute * 60,
            None => input.now.as_second() - now_minute * 60,
        }
        .clamp(1, 60) as f64;
        Span {
            from: now_minute - input.window.minutes() + 1,
            now_minute,
            current_seconds,
        }
    }

    /// Seconds minute `m` covers.
    fn seconds(&self, m: i64) -> f64 {
        if m == self.now_minute {
            self.current_seconds
        } else {
            60.0
        }
    }

    fn total_seconds(&self) -> f64 {
        (self.now_minute - self.from) as f64 * 60.0 + self.current_seconds
    }
}

/// Totals per version over the window, as table rows: stable, canary, then earlier versions.
fn version_rows(input: &TrafficInput<'_>, span: &Span) -> Vec<VersionRow> {
    let mut totals: BTreeMap<&str, VersionTraffic> = BTreeMap::new();
    for versions in input
        .minutes
        .range(span.from..=span.now_minute)
        .map(|(_, v)| v)
    {
        for (v, t) in versions {
            totals.entry(v.as_str()).or_default().add(t);
        }
    }
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let mut rows: Vec<VersionRow> = totals
        .iter()
        .map(|(v, t)| VersionRow {
            version: v.to_string(),
            role: input.config.role_of(v),
            requests: t.requests,
            rps: t.requests as f64 / span.total_seconds(),
            errors: t.errors,
            error_rate: t.error_rate(),
            p50_ms: ms(t.quantile(0.50)),
            p95_ms: ms(t.quantile(0.95)),
            p99_ms: ms(t.quantile(0.99)),
        })
        .collect();
    rows.sort_by(|a, b| (a.role, &a.version).cmp(&(b.role, &b.version)));
    rows
}

/// The window cut into chart steps (aligned to the epoch): per step, the seconds it covers,
/// its traffic per version, and its canary and total requests (canary: the version that was
/// canary in each minute), plus the configured share at the end of each step.
#[derive(Default)]
struct Steps<'a> {
    per_step: BTreeMap<i64, (f64, BTreeMap<&'a str, VersionTraffic>)>,
    share: BTreeMap<i64, (u64, u64)>,
    configured: Vec<(i64, f64)>,
}

impl<'a> Steps<'a> {
    fn of(input: &TrafficInput<'a>, span: &Span) -> Steps<'a> {
        let step = input.window.step_minutes();
        let mut out = Steps::default();
        for m in span.from..=span.now_minute {
            let s = m.div_euclid(step) * step;
            let in_force = config_at(input.events, m).unwrap_or(Some(input.config));
            if m == span.now_minute || m == s + step - 1 {
                out.configured.push((s, share_of(in_force)));
            }
            let slot = out.per_step.entry(s).or_default();
            slot.0 += span.seconds(m);
            let Some(versions) = input.minutes.get(&m) else {
                continue;
            };
            for (v, t) in versions {
                slot.1.entry(v.as_str()).or_default().add(t);
            }
            let canary = in_force.and_then(|c| c.canary_version.as_ref());
            let on_canary = canary.and_then(|cv| versions.get(cv.as_str()));
            let share = out.share.entry(s).or_default();
            share.0 += on_canary.map_or(0, |t| t.requests);
            share.1 += versions.values().map(|t| t.requests).sum::<u64>();
        }
        out
    }

    /// (canary requests, all requests) over the window.
    fn canary_and_all(&self) -> (u64, u64) {
        self.share
            .values()
            .fold((0, 0), |(c, a), (sc, sa)| (c + sc, a + sa))
    }

    /// The observed canary share per step that had requests.
    fn observed(&self) -> Vec<(i64, f64)> {
        self.share
            .iter()
            .filter(|(_, (_, total))| *total > 0)
            .map(|(s, (canary, total))| (*s, *canary as f64 / *total as f64))
            .collect()
    }

    /// One series per version of `f` (which sees a step's traffic and seconds).
    fn series(
        &self,
        rows: &[VersionRow],
        f: impl Fn(&VersionTraffic, f64) -> Option<f64>,
    ) -> Vec<Series> {
        let mut earlier = 0;
        rows.iter()
            .map(|r| {
                let nth = earlier;
                earlier += usize::from(r.role == VersionRole::Earlier);
                let points = self
                    .per_step
                    .iter()
                    .filter_map(|(s, (secs, vs))| {
                        let t = vs.get(r.version.as_str())?;
                        f(t, *secs).map(|y| (*s, y))
                    })
                    .collect();
                Series {
                    label: format!("{} ({})", r.version, r.role),
                    role: Role::Version { role: r.role, nth },
                    points,
                }
            })
            .collect()
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The text alternatives of the three per-version charts (rate, errors, latency).
fn version_alts(rows: &[VersionRow], window: Window) -> [String; 3] {
    let per_version = |part: &dyn Fn(&VersionRow) -> String| {
        if rows.is_empty() {
            format!("No requests recorded in the last {}.", window.label())
        } else {
            rows.iter().map(part).collect::<Vec<_>>().join("; ")
        }
    };
    let ms = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.2} ms"));
    [
        per_version(&|r| {
            format!(
                "{} ({}): {} requests, {:.2} per second on average",
                r.version, r.role, r.requests, r.rps
            )
        }),
        per_version(&|r| {
            format!(
                "{} ({}): {} of {} requests failed with 5xx ({})",
                r.version,
                r.role,
                r.errors,
                r.requests,
                r.error_rate.map_or("—".into(), pct)
            )
        }),
        per_version(&|r| {
            format!(
                "{} ({}): p50 {}, p95 {}, p99 {} over the window",
                r.version,
                r.role,
                ms(r.p50_ms),
                ms(r.p95_ms),
                ms(r.p99_ms)
            )
        }),
    ]
}

/// One chart's definition before drawing: id, title, y axis, series, minimum top, percent axis.
struct ChartSpec {
    id: &'static str,
    title: &'static str,
    y_label: &'static str,
    series: Vec<Series>,
    y_min_top: f64,
    percent: bool,
    alt: String,
}

fn draw(
    spec: ChartSpec,
    input: &TrafficInput<'_>,
    span: &Span,
    markers: &[(i64, String)],
) -> Chart {
    let title = format!("{}, last {}", spec.title, input.window.label());
    let svg = charts::time_chart(&TimeChart {
        title: title.clone(),
        y_label: spec.y_label.into(),
        step: input.window.step_minutes(),
        from: span.from,
        to: span.now_minute,
        y_min_top: spec.y_min_top,
        series: spec.series,
        markers: markers.to_vec(),
        percent: spec.percent,
    });
    Chart {
        id: spec.id.to_string(),
        title,
        svg,
        alt: spec.alt,
    }
}

/// Builds the numbers and the charts.
pub fn build(input: &TrafficInput<'_>) -> TrafficPage {
    let span = Span::of(input);
    let versions = version_rows(input, &span);
    let steps = Steps::of(input, &span);
    let (canary_requests, all_requests) = steps.canary_and_all();
    let markers: Vec<(i64, String)> = input
        .events
        .iter()
        .filter(|e| e.time.as_second().div_euclid(60) >= span.from)
        .map(|e| (e.time.as_second().div_euclid(60), marker_label(e)))
        .collect();
    let observed_share = (all_requests > 0).then(|| canary_requests as f64 / all_requests as f64);
    let configured_share = share_of(Some(input.config));
    let share_alt = format!(
        "Observed canary share {} of {} requests against {} configured now; {} config change(s) in the window.",
        observed_share.map_or("—".into(), pct),
        all_requests,
        pct(configured_share),
        markers.len()
    );
    let [rate_alt, error_alt, latency_alt] = version_alts(&versions, input.window);
    let specs = [
        ChartSpec {
            id: "rps",
            title: "Requests per second by version",
            y_label: "requests/s",
            series: steps.series(&versions, |t, secs| Some(t.requests as f64 / secs.max(1.0))),
            y_min_top: 1.0,
            percent: false,
            alt: rate_alt,
        },
        ChartSpec {
            id: "errors",
            title: "Error rate (5xx) by version",
            y_label: "5xx share",
            series: steps.series(&versions, |t, _| t.error_rate()),
            y_min_top: 0.05,
            percent: true,
            alt: error_alt,
        },
        ChartSpec {
            id: "latency",
            title: "p95 latency by version",
            y_label: "p95 latency (ms)",
            series: steps.series(&versions, |t, _| {
                t.quantile(0.95).map(|q| q.as_secs_f64() * 1000.0)
            }),
            y_min_top: 1.0,
            percent: false,
            alt: latency_alt,
        },
        ChartSpec {
            id: "share",
            title: "Canary share: observed vs configured",
            y_label: "canary share",
            series: vec![
                Series {
                    label: "configured".into(),
                    role: Role::Configured,
                    points: steps.configured.clone(),
                },
                Series {
                    label: "observed (canary / all requests)".into(),
                    role: Role::Version {
                        role: VersionRole::Canary,
                        nth: 0,
                    },
                    points: steps.observed(),
                },
            ],
            y_min_top: 0.1,
            percent: true,
            alt: share_alt,
        },
    ];
    TrafficPage {
        window: input.window,
        from_minute: span.from,
        to_minute: span.now_minute,
        requests: all_requests,
        observed_share,
        configured_share,
        charts: specs
            .into_iter()
            .map(|spec| draw(spec, input, &span, &markers))
            .collect(),
        versions,
        unflushed_requests: 0,
        lost_requests: 0,
        recorder_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitter::{Actor, BasisPoints, PolicyName, Version};
    use std::time::Duration;

    fn config(bp: u32) -> PolicyConfig {
        let mut c = PolicyConfig::new(
            PolicyName::new("pay").unwrap(),
            Version::new("v1").unwrap(),
            Some(Version::new("v2").unwrap()),
            BasisPoints::new(bp).unwrap(),
            Actor::new("t").unwrap(),
            jiff::Timestamp::from_second(0).unwrap(),
        );
        c.revision = 2;
        c
    }

    fn traffic(requests: u64, errors: u64) -> VersionTraffic {
        let mut t = VersionTraffic::default();
        for i in 0..requests {
            t.record(
                if i < errors { 503 } else { 200 },
                Duration::from_millis(10),
            );
        }
        t
    }

    #[test]
    fn numbers_and_charts_follow_the_recorded_minutes_and_the_trail() {
        let before = config(1000);
        let after = config(2500);
        let event = AuditEvent {
            id: "pay.1".into(),
            policy_name: PolicyName::new("pay").unwrap(),
            action: "set_share".into(),
            before: Some(before),
            after: Some(after.clone()),
            actor: Actor::new("ann").unwrap(),
            reason: "ramp".into(),
            time: jiff::Timestamp::from_second(995 * 60 + 10).unwrap(),
            revision: 2,
        };
        let mut minutes = BTreeMap::new();
        // Before the change: 10 % canary; after: 25 %. v2 fails 2 of its requests.
        minutes.insert(
            990,
            [
                ("v1".to_string(), traffic(90, 0)),
                ("v2".to_string(), traffic(10, 2)),
            ]
            .into(),
        );
        minutes.insert(
            1000,
            [
                ("v1".to_string(), traffic(75, 0)),
                ("v2".to_string(), traffic(25, 0)),
            ]
            .into(),
        );
        // Outside the 15-minute window (from minute 986): ignored.
        minutes.insert(900, [("v1".to_string(), traffic(1000, 0))].into());
        let page = build(&TrafficInput {
            config: &after,
            events: std::slice::from_ref(&event),
            minutes: &minutes,
            through: &[(1000, 1000 * 60 + 30)].into(),
            window: Window::M15,
            now: jiff::Timestamp::from_second(1000 * 60 + 40).unwrap(),
        });
        assert_eq!((page.from_minute, page.to_minute), (986, 1000));
        assert_eq!(page.requests, 200);
        assert_eq!(page.observed_share, Some(35.0 / 200.0));
        assert_eq!(page.configured_share, 0.25);
        let v2 = &page.versions[1];
        assert_eq!((v2.version.as_str(), v2.role), ("v2", VersionRole::Canary));
        assert_eq!((v2.requests, v2.errors), (35, 2));
        assert_eq!(v2.error_rate, Some(2.0 / 35.0));
        // 14 whole minutes and the 30 s of the current one the store's totals cover (the page
        // is read 10 s later).
        assert!((v2.rps - 35.0 / (14.0 * 60.0 + 30.0)).abs() < 1e-9);
        assert!(v2.p50_ms.is_some_and(|p| (8.0..12.0).contains(&p)));
        let ids: Vec<&str> = page.charts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["rps", "errors", "latency", "share"]);
        let latency = &page.charts[2];
        assert!(latency.svg.contains("p95 latency (ms)"));
        // Every request took 10 ms: the estimate lies in its bucket (9.05–12.8 ms).
        assert!(
            v2.p95_ms.is_some_and(|p| (9.05..=12.8).contains(&p)),
            "{:?}",
            v2.p95_ms
        );
        assert!(latency
            .alt
            .contains(&format!("v2 (canary): p50 {:.2} ms", v2.p50_ms.unwrap())));
        let share = &page.charts[3];
        assert!(share.svg.contains("share 25%"), "the change is marked");
        assert!(share.svg.contains("configured") && share.svg.contains("observed"));
        assert!(share.alt.contains("17.50%") && share.alt.contains("25.00%"));
        assert!(page.charts[1]
            .alt
            .contains("v2 (canary): 2 of 35 requests failed"));
        assert!(
            page.charts[0].svg.contains("v1 (stable)")
                && page.charts[0].svg.contains("v2 (canary)")
        );
    }

    #[test]
    fn a_busy_day_is_drawn_in_five_minute_steps_and_stays_small() {
        let c = config(1000);
        let mut minutes = BTreeMap::new();
        for m in 0..1440 {
            minutes.insert(
                10_000 + m,
                [
                    ("v1".to_string(), traffic(90, 0)),
                    ("v2".to_string(), traffic(10, 1)),
                ]
                .into(),
            );
        }
        let now = jiff::Timestamp::from_second((10_000 + 1439) * 60 + 30).unwrap();
        let page = build(&TrafficInput {
            config: &c,
            events: &[],
            minutes: &minutes,
            through: &BTreeMap::new(),
            window: Window::H24,
            now,
        });
        assert_eq!(page.requests, 144_000, "the numbers sum every minute");
        assert_eq!(page.versions[1].errors, 1440);
        assert_eq!(page.observed_share, Some(0.1));
        let bytes: usize = page.charts.iter().map(|c| c.svg.len()).sum();
        assert!(bytes < 100_000, "four 24-hour charts take {bytes} bytes");
        // Full 5-minute steps run at 100 requests per minute: 1.5 and 0.17 per second.
        assert!(page.charts[0].svg.contains("v1 (stable)"));
    }

    #[test]
    fn an_idle_window_says_so() {
        let c = config(1000);
        let page = build(&TrafficInput {
            config: &c,
            events: &[],
            minutes: &BTreeMap::new(),
            through: &BTreeMap::new(),
            window: Window::H24,
            now: jiff::Timestamp::from_second(10_000 * 60).unwrap(),
        });
        assert_eq!(page.requests, 0);
        assert_eq!(page.observed_share, None);
        assert!(page.charts[0]
            .alt
            .contains("No requests recorded in the last 24 hours"));
        assert_eq!(Window::parse("1h"), Some(Window::H1));
        assert_eq!(Window::parse("2h"), None);
    }
}
