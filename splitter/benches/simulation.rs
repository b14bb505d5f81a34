//! Simulating 1M tenants, next to 1M raw SHA-256 hashes of the same keys (one core).
//! Run: cargo bench -p splitter --bench simulation

use criterion::{criterion_group, criterion_main, Criterion};
use sha2::{Digest, Sha256};
use splitter::{Actor, BasisPoints, PolicyConfig, PolicyName, Simulator, Version};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let config = PolicyConfig::new(
        PolicyName::new("payment-api").unwrap(),
        Version::new("v1").unwrap(),
        Some(Version::new("v2").unwrap()),
        BasisPoints::new(1000).unwrap(),
        Actor::new("bench").unwrap(),
        jiff::Timestamp::now(),
    );
    let tenants: Vec<String> = (0..1_000_000).map(|i| format!("tenant-{i:08}")).collect();
    let keys: Vec<String> = tenants.iter().map(|t| format!("payment-api:{t}")).collect();
    let sim = Simulator::new(&config, BasisPoints::new(2500).unwrap());
    eprintln!("simulation uses {} threads", rayon::current_num_threads());

    let mut g = c.benchmark_group("simulate_1m");
    g.sample_size(10);
    g.bench_function("raw_sha256_1m_one_core", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for k in &keys {
                acc ^= Sha256::digest(k.as_bytes())[0];
            }
            black_box(acc)
        })
    });
    g.bench_function("raw_sha256_1m_all_cores", |b| {
        use rayon::prelude::*;
        b.iter(|| {
            let acc = keys
                .par_iter()
                .with_min_len(4096)
                .map(|k| Sha256::digest(k.as_bytes())[0])
                .reduce(|| 0, |a, b| a ^ b);
            black_box(acc)
        })
    });
    g.bench_function("bucket_fn_1m_one_core", |b| {
        b.iter(|| {
            let mut acc = 0u16;
            for t in &tenants {
                acc ^= splitter::bucket("payment-api", t).get();
            }
            black_box(acc)
        })
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("simulate_counts_1m_one_thread", |b| {
        b.iter(|| one.install(|| black_box(sim.counts(black_box(&tenants)))))
    });
    g.bench_function("simulate_counts_1m", |b| {
        b.iter(|| black_box(sim.counts(black_box(&tenants))))
    });
    g.bench_function("simulate_rows_1m", |b| {
        b.iter(|| black_box(sim.rows(black_box(&tenants)).len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
