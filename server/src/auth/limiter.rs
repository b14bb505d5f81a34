//! Sign-in attempts, limited per account and per client address: after too many failures in
//! the window, further attempts are refused (even with the right password) until the oldest
//! failure leaves the window. Kept in this replica's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct Limiter {
    window: i64,
    per_account: usize,
    per_address: usize,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Default for Limiter {
    /// 5 failures per account and 20 per address in 15 minutes.
    fn default() -> Self {
        Limiter::new(15 * 60, 5, 20)
    }
}

impl Limiter {
    pub fn new(window_secs: i64, per_account: usize, per_address: usize) -> Limiter {
        Limiter {
            window: window_secs,
            per_account,
            per_address,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` until another attempt is allowed for this account or address.
    pub fn check(&self, account: &str, address: &str, now: i64) -> Result<(), i64> {
        let mut f = self.failures.lock().unwrap();
        let wait = |key: String, limit: usize, f: &mut HashMap<String, VecDeque<i64>>| {
            let q = f.entry(key).or_default();
            while q.front().is_some_and(|&t| now - t >= self.window) {
                q.pop_front();
            }
            (q.len() >= limit).then(|| q.front().map_or(1, |&t| t + self.window - now))
        };
        let a = wait(format!("account:{account}"), self.per_account, &mut f);
        let b = wait(format!("address:{address}"), self.per_address, &mut f);
        match a.into_iter().chain(b).max() {
            Some(secs) => Err(secs.max(1)),
            None => Ok(()),
        }
    }

    pub fn failed(&self, account: &str, address: &str, now: i64) {
        let mut f = self.failures.lock().unwrap();
        if f.len() > 100_000 {
            // Bounded memory under a flood of made-up names: forget the oldest state.
            f.clear();
        }
        for key in [format!("account:{account}"), format!("address:{address}")] {
            f.entry(key).or_default().push_back(now);
        }
    }

    pub fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .unwrap()
            .remove(&format!("account:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_account_until_the_window_moves() {
        let l = Limiter::new(900, 5, 20);
        for t in 0..5 {
            assert!(l.check("alice", "1.2.3.4", t).is_ok());
            l.failed("alice", "1.2.3.4", t);
        }
        assert_eq!(l.check("alice", "5.6.7.8", 10), Err(890));
        assert!(
            l.check("bob", "1.2.3.4", 10).is_ok(),
            "other accounts are fine"
        );
        assert!(
            l.check("alice", "1.2.3.4", 900).is_ok(),
            "the first failure left"
        );
    }

    #[test]
    fn one_address_trying_many_accounts_is_limited() {
        let l = Limiter::new(900, 5, 20);
        for i in 0..20 {
            l.failed(&format!("user{i}"), "9.9.9.9", 0);
        }
        assert!(l.check("someone", "9.9.9.9", 1).is_err());
        assert!(l.check("someone", "8.8.8.8", 1).is_ok());
    }
}
