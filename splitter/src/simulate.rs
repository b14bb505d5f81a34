//! Previewing a share change: which tenants are on canary now, which would be, and who moves.
//! Every row comes from [`crate::decision::evaluate`], so it equals what `select_version` says.

use crate::bucket::{bucket, Bucket};
use crate::config::PolicyConfig;
use crate::decision::evaluate;
use crate::error::Error;
use crate::names::TenantId;
use crate::share::BasisPoints;
use serde::Serialize;
use std::io::BufRead;

/// One tenant's assignment now and under the proposed share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimulatedTenant<T> {
    pub tenant: T,
    pub bucket: Bucket,
    pub canary_now: bool,
    pub canary_proposed: bool,
}

impl<T> SimulatedTenant<T> {
    pub fn moves(&self) -> bool {
        self.canary_now != self.canary_proposed
    }
}

/// Totals over a simulated population.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimulationCounts {
    pub tenants: u64,
    pub canary_now: u64,
    pub canary_proposed: u64,
    /// Stable now, canary under the proposal.
    pub to_canary: u64,
    /// Canary now, stable under the proposal.
    pub to_stable: u64,
    /// Lines or ids that are not valid tenant ids (not counted in `tenants`).
    pub invalid: u64,
}

impl SimulationCounts {
    fn add<T>(&mut self, row: &SimulatedTenant<T>) {
        self.tenants += 1;
        self.canary_now += u64::from(row.canary_now);
        self.canary_proposed += u64::from(row.canary_proposed);
        self.to_canary += u64::from(!row.canary_now && row.canary_proposed);
        self.to_stable += u64::from(row.canary_now && !row.canary_proposed);
    }

    #[cfg_attr(not(feature = "parallel"), allow(dead_code))]
    fn merge(mut self, other: SimulationCounts) -> SimulationCounts {
        self.tenants += other.tenants;
        self.canary_now += other.canary_now;
        self.canary_proposed += other.canary_proposed;
        self.to_canary += other.to_canary;
        self.to_stable += other.to_stable;
        self.invalid += other.invalid;
        self
    }

    /// Observed share of tenants on canary under the proposal, in `0.0..=1.0`.
    pub fn observed_proposed_share(&self) -> f64 {
        if self.tenants == 0 {
            0.0
        } else {
            self.canary_proposed as f64 / self.tenants as f64
        }
    }
}

/// A policy's config now and the same config with a proposed share.
#[derive(Debug, Clone)]
pub struct Simulator {
    now: PolicyConfig,
    proposed: PolicyConfig,
}

/// How many lines [`Simulator::stream`] reads before evaluating them (in parallel) and writing.
const STREAM_CHUNK: usize = 32 * 1024;

impl Simulator {
    pub fn new(config: &PolicyConfig, proposed: BasisPoints) -> Simulator {
        let mut next = config.clone();
        next.canary_basis_points = proposed;
        Simulator {
            now: config.clone(),
            proposed: next,
        }
    }

    /// The config with the proposed share.
    pub fn proposed_config(&self) -> &PolicyConfig {
        &self.proposed
    }

    /// One tenant (already validated): one hash, two evaluations.
    #[inline]
    pub fn tenant<T: AsRef<str>>(&self, tenant: T) -> SimulatedTenant<T> {
        let t = tenant.as_ref();
        let b = bucket(&self.now.salt, t);
        let (canary_now, canary_proposed) =
            if self.now.overrides.is_empty() && self.now.canary_version.is_some() {
                // The common case, without pins: exactly what `evaluate` says, minus its lookups.
                (
                    b.get() < self.now.canary_basis_points.get(),
                    b.get() < self.proposed.canary_basis_points.get(),
                )
            } else {
                (
                    evaluate(&self.now, t, || b).0,
                    evaluate(&self.proposed, t, || b).0,
                )
            };
        SimulatedTenant {
            tenant,
            bucket: b,
            canary_now,
            canary_proposed,
        }
    }

    /// Rows for a slice of tenants, in order, evaluated on all cores.
    pub fn rows<'a, T: AsRef<str> + Sync>(
        &self,
        tenants: &'a [T],
    ) -> Vec<SimulatedTenant<&'a str>> {
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            tenants
                .par_iter()
                .map(|t| self.tenant(t.as_ref()))
                .collect()
        }
        #[cfg(not(feature = "parallel"))]
        {
            tenants.iter().map(|t| self.tenant(t.as_ref())).collect()
        }
    }

    /// Counts only, for a slice of tenants, on all cores.
    pub fn counts<T: AsRef<str> + Sync>(&self, tenants: &[T]) -> SimulationCounts {
        // A plain loop per chunk keeps the per-tenant work inlined.
        let chunk = |part: &[T]| {
            let mut acc = SimulationCounts::default();
            for t in part {
                acc.add(&self.tenant(t.as_ref()));
            }
            acc
        };
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            tenants
                .par_chunks(8192)
                .map(chunk)
                .reduce(SimulationCounts::default, SimulationCounts::merge)
        }
        #[cfg(not(feature = "parallel"))]
        {
            chunk(tenants)
        }
    }

    /// Streams tenant ids, one per line, from `input` without holding them all: each chunk is
    /// evaluated on all cores, then handed to `on_row` in input order. Invalid lines go to
    /// `on_invalid` with their 1-based line number and do not stop the others.
    pub fn stream<R: BufRead>(
        &self,
        mut input: R,
        mut on_row: impl FnMut(&SimulatedTenant<&str>) -> std::io::Result<()>,
        mut on_invalid: impl FnMut(u64, Error) -> std::io::Result<()>,
    ) -> std::io::Result<SimulationCounts> {
        let mut counts = SimulationCounts::default();
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        let mut chunk: Vec<String> = Vec::with_capacity(STREAM_CHUNK);
        loop {
            buf.clear();
            let read = input.read_until(b'\n', &mut buf)?;
            if read > 0 {
                line_no += 1;
                let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                match std::str::from_utf8(line) {
                    Err(_) => {
                        counts.invalid += 1;
                        on_invalid(line_no, Error::invalid("tenant id", "is not valid UTF-8"))?;
                    }
                    Ok(t) => match TenantId::new(t) {
                        Ok(_) => chunk.push(t.to_string()),
                        Err(e) => {
                            counts.invalid += 1;
                            on_invalid(line_no, e)?;
                        }
                    },
                }
            }
            if chunk.len() == STREAM_CHUNK || (read == 0 && !chunk.is_empty()) {
                for row in self.rows(&chunk) {
                    counts.add(&row);
                    on_row(&row)?;
                }
                chunk.clear();
            }
            if read == 0 {
                return Ok(counts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Actor, PolicyName, Version};

    fn config(bp: u16) -> PolicyConfig {
        PolicyConfig::new(
            PolicyName::new("payment-api").unwrap(),
            Version::new("v1").unwrap(),
            Some(Version::new("v2").unwrap()),
            BasisPoints::new(bp.into()).unwrap(),
            Actor::new("t").unwrap(),
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn counts_movers() {
        // Buckets: tenant-123 3729, tenant-124 1123, acme-corp 7105.
        let sim = Simulator::new(&config(2000), BasisPoints::new(8000).unwrap());
        let c = sim.counts(&["tenant-123", "tenant-124", "acme-corp"]);
        assert_eq!(
            c,
            SimulationCounts {
                tenants: 3,
                canary_now: 1,
                canary_proposed: 3,
                to_canary: 2,
                to_stable: 0,
                invalid: 0
            }
        );
        let down = Simulator::new(&config(8000), BasisPoints::new(2000).unwrap());
        assert_eq!(
            down.counts(&["tenant-123", "tenant-124", "acme-corp"])
                .to_stable,
            2
        );
    }

    #[test]
    fn stream_keeps_order_across_chunks_and_reports_bad_lines() {
        let n = STREAM_CHUNK * 2 + 17;
        let mut input = String::new();
        for i in 0..n {
            input.push_str(&format!("tenant-{i}\n"));
            if i == 5 {
                input.push('\n');
            }
        }
        let sim = Simulator::new(&config(1000), BasisPoints::new(5000).unwrap());
        let mut seen = Vec::new();
        let mut bad = Vec::new();
        let counts = sim
            .stream(
                input.as_bytes(),
                |row| {
                    seen.push(row.tenant.to_string());
                    Ok(())
                },
                |line, e| {
                    bad.push((line, e.to_string()));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(seen.len(), n);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(i, t)| *t == format!("tenant-{i}")));
        assert_eq!(bad, [(7, "tenant id: is empty".to_string())]);
        assert_eq!(counts.tenants, n as u64);
        assert_eq!(counts.invalid, 1);
        let all: Vec<String> = (0..n).map(|i| format!("tenant-{i}")).collect();
        assert_eq!(
            SimulationCounts {
                invalid: 1,
                ..sim.counts(&all)
            },
            counts
        );
    }
}
