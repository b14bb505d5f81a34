//! ns per routing decision from a cached snapshot, next to the raw SHA-256 of the same key.
//! Run: cargo bench -p splitter --bench decision

use criterion::{criterion_group, criterion_main, Criterion};
use sha2::{Digest, Sha256};
use splitter::snapshot::Splitter;
use splitter::{Actor, BasisPoints, PolicyConfig, PolicyName, Version};
use std::hint::black_box;

fn config(name: &str) -> PolicyConfig {
    PolicyConfig::new(
        PolicyName::new(name).unwrap(),
        Version::new("v1").unwrap(),
        Some(Version::new("v2").unwrap()),
        BasisPoints::new(1250).unwrap(),
        Actor::new("bench").unwrap(),
        jiff::Timestamp::now(),
    )
}

fn bench(c: &mut Criterion) {
    // 200 policies in the snapshot, as a busy gateway might hold.
    let split = Splitter::from_configs((0..200).map(|i| config(&format!("policy-{i:03}"))));
    let tenants: Vec<String> = (0..1024).map(|i| format!("tenant-{i:06}")).collect();
    let keys: Vec<String> = tenants.iter().map(|t| format!("policy-042:{t}")).collect();
    let mut g = c.benchmark_group("decision");
    let mut i = 0usize;
    g.bench_function("raw_sha256_of_key", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(Sha256::digest(black_box(keys[i].as_bytes())))
        })
    });
    let mut i = 0usize;
    g.bench_function("select_version", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(split.select_version(
                black_box("policy-042"),
                Some(black_box(tenants[i].as_str())),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
