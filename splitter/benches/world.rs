//! False rollbacks and catches of the product's plan controller in a world of tenants (issue
//! #17, "Measured"): `cargo bench -p splitter --bench world` (1 000 rollouts a cell) or
//! `-- --quick` (100), `-- --rollouts N`. Prints markdown tables; the world is described in
//! `tests/world/mod.rs`. Nothing here is asserted: it measures today's judge.

#[path = "../tests/world/mod.rs"]
mod world;

use splitter::analysis::Guards;
use splitter::plans::preset;
use world::{run_cell, threads, Canary, CellResult, Events, Rates, WorldSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rollouts = args
        .iter()
        .position(|a| a == "--rollouts")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if args.iter().any(|a| a == "--quick") {
            100
        } else {
            1_000
        });
    let threads = threads();
    let started = std::time::Instant::now();
    let guards = Guards::default();
    let probe = WorldSpec::new(1_000.0, Rates::Equal, Canary::Healthy);
    let steps: Vec<String> = preset(1.0)
        .iter()
        .map(|s| format!("{} {} min", s.share, s.hold_secs / 60))
        .collect();
    println!(
        "World simulator: {rollouts} rollouts a cell, {threads} threads. Plan: {} then promote; \
         guards: default ({guards:?}). {} tenants, Zipf({}), mean 5xx {} %, median {} ms, request \
         latency log-sd {}; {} replicas judging every {} s (staggered), flushing every {} s.\n",
        steps.join(" / "),
        probe.tenants,
        probe.zipf,
        probe.error_rate * 100.0,
        probe.median_ms,
        probe.request_latency_sd,
        probe.replicas,
        probe.plan_every_ms / 1000,
        probe.flush_every_ms / 1000,
    );

    let rate_worlds = [
        Rates::Equal,
        Rates::Beta { kappa: 200.0 },
        Rates::Beta { kappa: 50.0 },
        Rates::Beta { kappa: 10.0 },
    ];
    // The judge's own world first: every tenant alike, in errors and in latency.
    let mut healthy: Vec<WorldSpec> = [1_000.0, 100.0]
        .map(|v| WorldSpec::new(v, Rates::Equal, Canary::Healthy).with_tenant_latency_sd(0.0))
        .to_vec();
    for volume in [1_000.0, 100.0] {
        for rates in rate_worlds {
            healthy.push(WorldSpec::new(volume, rates, Canary::Healthy));
        }
    }
    for rates in rate_worlds {
        healthy.push(WorldSpec::new(1_000.0, rates, Canary::Healthy).with_events(Events::EVENTFUL));
    }
    for volume in [1_000.0, 100.0] {
        healthy.push(
            WorldSpec::new(volume, Rates::Equal, Canary::Healthy).with_tenant_latency_sd(0.4),
        );
    }
    healthy.push(
        WorldSpec::new(1_000.0, Rates::Beta { kappa: 50.0 }, Canary::Healthy)
            .with_events(Events::EVENTFUL)
            .with_tenant_latency_sd(0.4),
    );

    println!("### Healthy canaries (exactly as good as stable, tenant by tenant)\n");
    println!(
        "| world | canary req/min @5% | rollouts | rolled back | rate | 95% CP upper | by 5xx / latency | promoted | paused | looks taken / assumed | s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, spec) in healthy.iter().enumerate() {
        let cell = run_cell(spec, rollouts, 0x4845_414c_0000 + i as u64, threads);
        println!(
            "| {} | {:.0} | {} | {} | {:.1}% | {:.1}% | {} / {} | {} | {} | {:.0} / {} | {:.1} |",
            spec.world_label(),
            spec.canary_per_minute(),
            cell.rollouts,
            cell.rolled_back,
            cell.rollback_rate() * 100.0,
            cell.rollback_upper() * 100.0,
            cell.by_errors,
            cell.by_latency,
            cell.promoted,
            cell.paused + cell.timed_out,
            cell.looks_taken as f64 / cell.rollouts as f64,
            cell.looks_assumed,
            cell.elapsed.as_secs_f64(),
        );
    }

    let bad_kinds = [
        Canary::ErrorsTimes(5.0),
        Canary::ErrorsTimes(3.0),
        Canary::SlowerBy(1.5),
        Canary::AtMargin,
        Canary::Loses(0.05),
    ];
    println!("\n### Bad canaries (bad from the plan's start; caught = rolled back)\n");
    println!(
        "| canary | world | canary req/min @5% | rollouts | caught | caught % | by 5xx / latency | catch p50 min | catch p95 min | promoted | s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut i = 0u64;
    for canary in bad_kinds {
        for rates in [Rates::Equal, Rates::Beta { kappa: 50.0 }] {
            for volume in [1_000.0, 100.0] {
                let spec = WorldSpec::new(volume, rates, canary);
                let cell = run_cell(&spec, rollouts, 0x4241_4400_0000 + i, threads);
                i += 1;
                print_bad(&spec, &cell);
            }
        }
    }
    println!(
        "\nAt the margin: each tenant's canary rate × (1 + max(error_margin / mean rate, \
         error_margin_relative)) = × {:.2}, exactly what the guards tolerate: a rollback there is \
         allowed, not required. Catch times: minutes from the plan's start, over the rollouts \
         caught. Total {:.0} s.",
        1.0 + (guards.error_margin / probe.error_rate).max(guards.error_margin_relative),
        started.elapsed().as_secs_f64()
    );
}

fn print_bad(spec: &WorldSpec, cell: &CellResult) {
    let minutes = |q| {
        cell.rollback_minutes(q)
            .map_or("—".to_string(), |m| format!("{m:.1}"))
    };
    println!(
        "| {} | {} | {:.0} | {} | {} | {:.1}% | {} / {} | {} | {} | {} | {:.1} |",
        spec.canary.label(),
        spec.world_label(),
        spec.canary_per_minute(),
        cell.rollouts,
        cell.rolled_back,
        cell.rollback_rate() * 100.0,
        cell.by_errors,
        cell.by_latency,
        minutes(0.5),
        minutes(0.95),
        cell.promoted,
        cell.elapsed.as_secs_f64(),
    );
}
