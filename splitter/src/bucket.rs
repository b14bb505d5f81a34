//! The bucketing contract: `salt + ":" + tenant` → SHA-256 → first 8 bytes big-endian → mod 10 000.
//!
//! This is a compatibility contract shared with every port of the splitter; `vectors/` holds the
//! cases that prove it.

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// Number of buckets; one bucket is one basis point (0.01%) of tenants.
pub const BUCKETS: u16 = 10_000;

/// A tenant's bucket for one salt, in `0..10_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Bucket(u16);

impl Bucket {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The bucket of `tenant` under `salt`.
///
/// Keys of up to 119 bytes (nearly all) are padded on the stack and fed straight to the SHA-256
/// compression function: no allocation, no streaming buffer. Longer keys take the streaming
/// hasher. Both give the standard SHA-256 (the unit tests and `vectors/` check each path).
pub fn bucket(salt: &str, tenant: &str) -> Bucket {
    let (s, t) = (salt.as_bytes(), tenant.as_bytes());
    let len = s.len() + 1 + t.len();
    let first8 = if len <= 119 {
        let mut block = [0u8; 128];
        block[..s.len()].copy_from_slice(s);
        block[s.len()] = b':';
        block[s.len() + 1..len].copy_from_slice(t);
        block[len] = 0x80;
        let blocks = if len <= 55 { 1 } else { 2 };
        let end = blocks * 64;
        block[end - 8..end].copy_from_slice(&((len as u64) * 8).to_be_bytes());
        let mut state = H0;
        let (b1, b2) = block.split_at(64);
        let b1 = *GenericArray::from_slice(b1);
        if blocks == 1 {
            sha2::compress256(&mut state, &[b1]);
        } else {
            sha2::compress256(&mut state, &[b1, *GenericArray::from_slice(b2)]);
        }
        (u64::from(state[0]) << 32) | u64::from(state[1])
    } else {
        let digest = Sha256::new()
            .chain_update(s)
            .chain_update(b":")
            .chain_update(t)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    };
    Bucket((first8 % u64::from(BUCKETS)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_vectors() {
        // The table in the issue that specified the contract.
        let cases = [
            ("payment-api", "tenant-123", 3729),
            ("payment-api", "tenant-124", 1123),
            ("payment-api", "acme-corp", 7105),
            ("search-api", "acme-corp", 9878),
            ("checkout", "über-gmbh", 3035),
            ("payment-api:v2", "tenant-123", 6605),
            ("billing", "t-000001", 44),
            ("billing", "T-000001", 8653),
        ];
        for (salt, tenant, expected) in cases {
            assert_eq!(bucket(salt, tenant).get(), expected, "{salt} {tenant}");
        }
    }

    /// Every key length, across the one-block, two-block and streaming paths and their edges
    /// (55/56 and 119/120 bytes), equals the plain SHA-256 of the concatenated key.
    #[test]
    fn every_key_length_matches_plain_sha256() {
        for salt_len in [1usize, 7, 20] {
            for tenant_len in 1..=300 {
                let salt = "s".repeat(salt_len);
                let tenant: String = (0..tenant_len)
                    .map(|i| (b'a' + (i % 26) as u8) as char)
                    .collect();
                let digest = Sha256::digest(format!("{salt}:{tenant}").as_bytes());
                let expected = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 10_000;
                assert_eq!(
                    u64::from(bucket(&salt, &tenant).get()),
                    expected,
                    "{salt_len}+1+{tenant_len} bytes"
                );
            }
        }
    }
}
