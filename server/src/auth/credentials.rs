//! Secrets: argon2id password hashes, random session ids and API tokens, and their digests.
//! Only digests are stored; a session id or token is shown once and never logged.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask for more).
pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 256;

/// argon2id with OWASP's minimum parameters: 19 MiB of memory, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the operating system's random number generator");
    b
}

/// A random secret as URL-safe text (32 bytes: 43 characters).
pub fn random_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The digest under which a high-entropy secret (session id, token) is stored: SHA-256, hex.
pub fn digest(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(secret.as_bytes()) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Checks a new password's length; the message says what would do.
pub fn check_password_rules(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!(
            "password: {n} characters; use at least {MIN_PASSWORD} (a phrase of a few words works)"
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("password: at most {MAX_PASSWORD} bytes"));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) to store for `password`.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes make a salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password of at most 256 bytes")
        .to_string()
}

/// Whether `password` matches the stored PHC string (its own parameters are used).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the account does not exist, so that a wrong name costs as
/// long as a wrong password (no account enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("no such account, no such password"));
    &DUMMY
}

/// Password hashing and checking, off the async worker threads: each runs on Tokio's blocking
/// pool, at most `concurrent` at a time (argon2id takes 19 MiB and tens of milliseconds of one
/// core each). An attempt waits at most `wait` for its turn, then is told the server is busy.
pub struct Hasher {
    permits: Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
    /// Passwords checked so far (each sign-in that reached argon2id, the dummy hash included).
    pub verifications: Arc<AtomicU64>,
    running: Arc<AtomicUsize>,
    /// The most hashes or checks that ran at once.
    pub peak: Arc<AtomicUsize>,
}

/// No turn to hash came within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What a caller whose turn did not come is told.
pub const BUSY: &str = "The server is busy checking other sign-ins: try again in a few seconds.";

impl Default for Hasher {
    /// Two at a time, waiting at most 3 s.
    fn default() -> Self {
        Hasher::new(2, std::time::Duration::from_secs(3))
    }
}

impl Hasher {
    pub fn new(concurrent: usize, wait: std::time::Duration) -> Hasher {
        Hasher {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
            wait,
            verifications: Arc::new(AtomicU64::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        // The permit moves into the blocking task: it is held until the hash is done, even if
        // the request that asked is dropped meanwhile.
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = work();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(|_| Busy)
    }

    /// Whether `password` matches `stored`; with `None` (no such account) the dummy hash is
    /// checked instead, so that a wrong name costs as long as a wrong password.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Busy> {
        let (password, stored) = (password.to_string(), stored.map(str::to_string));
        let count = self.verifications.clone();
        self.run(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let ok = verify_password(&password, stored.as_deref().unwrap_or(dummy_hash()));
            ok && stored.is_some()
        })
        .await
    }

    /// [`hash_password`], off the async workers.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let password = password.to_string();
        self.run(move || hash_password(&password)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn secrets_are_random_and_stored_as_digests() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same_secret(&a, &a.clone()) && !same_secret(&a, &b));
        assert!(check_password_rules("short").is_err());
        assert!(check_password_rules("twelve chars").is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hasher_runs_at_most_its_bound_at_once_and_says_when_busy() {
        let h = Arc::new(Hasher::new(1, std::time::Duration::from_millis(1)));
        let stored = hash_password("correct horse battery");
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (h, stored) = (h.clone(), stored.clone());
                tokio::spawn(async move { h.verify("correct horse battery", Some(&stored)).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(results.contains(&Ok(true)), "{results:?}");
        assert!(results.contains(&Err(Busy)), "a 1 ms wait: {results:?}");
        assert_eq!(h.peak.load(Ordering::SeqCst), 1);
        let busy = results.iter().filter(|r| r.is_err()).count() as u64;
        assert_eq!(
            h.verifications.load(Ordering::SeqCst),
            4 - busy,
            "busy ones never ran"
        );
        assert_eq!(
            Hasher::default().verify("x", None).await,
            Ok(false),
            "no account: never right"
        );
    }
}
