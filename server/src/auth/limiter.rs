//! Sign-in attempts, limited per account and per client address: after too many failures in
//! the window, further attempts are refused (even with the right password) until the oldest
//! failure leaves the window.
//!
//! This replica's memory is the fast first line. An attempt *reserves* its failure slot here
//! before the password is checked ([`Limiter::reserve`]), under one lock, and gives it back only
//! when the password was right ([`Limiter::release`]): a burst of parallel attempts can never
//! have more passwords checked than the limit allows. Per-account counts are also kept in the
//! store, shared by every replica (see [`super::records::reserve_failure_slot`]).
//!
//! Memory is bounded ([`Limiter::with_capacity`]): when the map is full, entries whose failures
//! have all left the window go first, then entries that are not locked. A locked entry is never
//! dropped, so a flood of made-up names cannot lift anybody's lockout. If every entry is locked,
//! a new account or address is not remembered here (its attempts are still refused by the
//! entries that are: the flooding address itself, and per account by the store's count) until
//! entries expire; the map is scanned for room at most once a second meanwhile.
//!
//! Also here: where a request comes from ([`client_ip`], trusting `X-Forwarded-For` only from
//! configured proxies, [`Cidr`]) and how user-supplied text is written to logs ([`for_log`]).

use axum::http::HeaderValue;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept at most by default (a few hundred bytes each at most: some tens of MB).
pub const DEFAULT_CAPACITY: usize = 100_000;

pub struct Limiter {
    window: i64,
    per_account: usize,
    per_address: usize,
    capacity: usize,
    state: Mutex<State>,
    /// The store window whose old failure slots this replica last swept.
    swept: std::sync::atomic::AtomicI64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// When a search for room last found none (every entry locked).
    full_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(String),
}

#[derive(Default)]
struct Entry {
    /// Failures and attempts in flight (reserved, not yet known to be right), oldest first.
    times: VecDeque<i64>,
    /// For accounts: what this replica last learnt about the store's failure slots.
    slots: Option<StoreSlots>,
}

/// What this replica knows about an account's failure slots in the store for one window: the
/// next slot to try first, and whether all were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSlots {
    pub window: i64,
    pub next: usize,
    pub full: bool,
}

/// A reserved attempt: counted as a failure unless [`Limiter::release`]d.
#[derive(Debug)]
#[must_use = "a reservation counts as a failure unless released"]
pub struct Reservation {
    account: Option<String>,
    address: String,
    at: i64,
}

impl Reservation {
    /// The attempt failed: it stays counted until it leaves the window.
    pub fn failed(self) {}
}

impl Default for Limiter {
    /// 5 failures per account and 20 per address in 15 minutes.
    fn default() -> Self {
        Limiter::new(15 * 60, 5, 20)
    }
}

impl Limiter {
    pub fn new(window_secs: i64, per_account: usize, per_address: usize) -> Limiter {
        Limiter::with_capacity(window_secs, per_account, per_address, DEFAULT_CAPACITY)
    }

    /// A limiter that keeps at most `capacity` accounts and addresses.
    pub fn with_capacity(
        window_secs: i64,
        per_account: usize,
        per_address: usize,
        capacity: usize,
    ) -> Limiter {
        Limiter {
            window: window_secs.max(1),
            per_account: per_account.max(1),
            per_address: per_address.max(1),
            capacity: capacity.max(2),
            state: Mutex::new(State::default()),
            swept: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// The window (seconds) and the failures allowed per account in it.
    pub fn window(&self) -> i64 {
        self.window
    }

    pub fn per_account(&self) -> usize {
        self.per_account
    }

    /// How many accounts and addresses are remembered.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn limit(&self, key: &Key) -> usize {
        match key {
            Key::Account(_) => self.per_account,
            Key::Address(_) => self.per_address,
        }
    }

    /// Seconds until an attempt is allowed, if the entry is at its limit at `now`.
    fn wait(&self, key: &Key, entry: &Entry, now: i64) -> Option<i64> {
        let live: Vec<i64> = entry
            .times
            .iter()
            .copied()
            .filter(|&t| now - t < self.window)
            .collect();
        let limit = self.limit(key);
        if live.len() < limit {
            return None;
        }
        // The attempt is allowed once all but `limit - 1` of these have left the window.
        let mut sorted = live;
        sorted.sort_unstable();
        let t = sorted[sorted.len() - limit];
        Some((t + self.window - now).max(1))
    }

    fn keys(account: Option<&str>, address: &str) -> Vec<Key> {
        let mut keys = Vec::with_capacity(2);
        if let Some(a) = account {
            keys.push(Key::Account(a.to_string()));
        }
        keys.push(Key::Address(address.to_string()));
        keys
    }

    /// `Err(seconds)` while another attempt is not allowed for this account or address.
    /// Remembers nothing: use [`Limiter::reserve`] to make an attempt.
    pub fn check(&self, account: Option<&str>, address: &str, now: i64) -> Result<(), i64> {
        let state = self.state.lock().unwrap();
        let wait = Self::keys(account, address)
            .iter()
            .filter_map(|k| state.entries.get(k).and_then(|e| self.wait(k, e, now)))
            .max();
        match wait {
            Some(secs) => Err(secs),
            None => Ok(()),
        }
    }

    /// Makes an attempt for `account` (`None`: not a valid account name, counted against the
    /// address only) from `address`: `Err(seconds)` if either is at its limit; otherwise the
    /// attempt counts as a failure from now on, unless released ([`Limiter::release`]) when
    /// the password was right. Checking and counting happen under one lock.
    pub fn reserve(
        &self,
        account: Option<&str>,
        address: &str,
        now: i64,
    ) -> Result<Reservation, i64> {
        let mut state = self.state.lock().unwrap();
        let keys = Self::keys(account, address);
        let mut wait = None;
        for k in &keys {
            if let Some(e) = state.entries.get_mut(k) {
                e.times.retain(|&t| now - t < self.window);
                wait = wait.max(self.wait(k, e, now));
            }
        }
        if let Some(secs) = wait {
            return Err(secs);
        }
        for k in &keys {
            if !state.entries.contains_key(k) && !self.make_room(&mut state, now, &keys) {
                continue; // every entry is locked: this one is not remembered (see above)
            }
            state
                .entries
                .entry(k.clone())
                .or_default()
                .times
                .push_back(now);
        }
        Ok(Reservation {
            account: account.map(str::to_string),
            address: address.to_string(),
            at: now,
        })
    }

    /// Gives back a reserved attempt (the password was right, or it was never checked).
    pub fn release(&self, r: Reservation) {
        let mut state = self.state.lock().unwrap();
        for k in Self::keys(r.account.as_deref(), &r.address) {
            if let Some(e) = state.entries.get_mut(&k) {
                if let Some(i) = e.times.iter().rposition(|&t| t == r.at) {
                    e.times.remove(i);
                }
                if e.times.is_empty() && e.slots.is_none() {
                    state.entries.remove(&k);
                }
            }
        }
    }

    /// What this replica knows about `account`'s failure slots in the store for `window`.
    pub fn store_slots(&self, account: &str, window: i64) -> Option<StoreSlots> {
        let state = self.state.lock().unwrap();
        state
            .entries
            .get(&Key::Account(account.to_string()))
            .and_then(|e| e.slots)
            .filter(|s| s.window == window)
    }

    /// Remembers what the store said about `account`'s slots (only while the account has an
    /// entry here: this never adds one).
    pub fn note_store_slots(&self, account: &str, slots: StoreSlots) {
        let mut state = self.state.lock().unwrap();
        if let Some(e) = state.entries.get_mut(&Key::Account(account.to_string())) {
            e.slots = Some(slots);
        }
    }

    /// True once per store window (per replica): time to delete old failure slots.
    pub fn sweep_due(&self, window: i64) -> bool {
        use std::sync::atomic::Ordering;
        self.swept.fetch_max(window, Ordering::SeqCst) < window
    }

    /// Makes room for one more entry (never dropping `keep`); false if every entry is locked.
    fn make_room(&self, state: &mut State, now: i64, keep: &[Key]) -> bool {
        if state.entries.len() < self.capacity {
            return true;
        }
        if state.full_at == Some(now) {
            return false;
        }
        let window = self.window;
        // First: entries with nothing left in the window.
        state
            .entries
            .retain(|k, e| keep.contains(k) || e.times.iter().any(|&t| now - t < window));
        // Then: entries that are not locked, down to 90% so that this scan is rare.
        if state.entries.len() >= self.capacity {
            let target = self.capacity - self.capacity / 10 - 1;
            let mut excess = state.entries.len() - target;
            state.entries.retain(|k, e| {
                if excess == 0 || keep.contains(k) || self.wait(k, e, now).is_some() {
                    return true;
                }
                excess -= 1;
                false
            });
        }
        let room = state.entries.len() < self.capacity;
        state.full_at = (!room).then_some(now);
        room
    }
}

/// An IP network (`35.191.0.0/16`, `2600:1900::/28`, or one address) from `--trusted-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = |why: &str| {
            format!(
                "'{}' is not a CIDR ({why}): write e.g. 35.191.0.0/16, 10.0.0.7 or 2600:1900::/28",
                for_log(s)
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(bad(&format!("the prefix length must be 0–{max}"))),
            },
        };
        let cidr = Cidr { net, prefix };
        if !cidr.contains(net) || cidr.network() != net {
            return Err(bad("address bits are set past the prefix length"));
        }
        Ok(cidr)
    }
}

impl Cidr {
    fn network(&self) -> IpAddr {
        match self.net {
            IpAddr::V4(n) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(n) & mask).into())
            }
            IpAddr::V6(n) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(n) & mask).into())
            }
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    e.parse::<IpAddr>()
        .ok()
        .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address: the TCP peer's, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` address that is not itself a trusted proxy (each proxy appends
/// the address it was reached from, so everything left of that is the client's say-so). If
/// every listed address is a trusted proxy, the left-most; if the entry where the search stops
/// is not an address, the last trusted hop's.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hop = peer;
    // Header lines in order, entries in order: the right-most is the nearest proxy's.
    let lines: Vec<&HeaderValue> = forwarded_for.collect();
    for line in lines.iter().rev() {
        let Ok(text) = line.to_str() else {
            return hop;
        };
        for entry in text.rsplit(',') {
            if entry.trim().is_empty() {
                continue;
            }
            match forwarded_ip(entry) {
                Some(ip) if is_trusted(ip) => hop = ip,
                Some(ip) => return ip,
                None => return hop,
            }
        }
    }
    hop
}

/// The limiter's key for an address: IPv4 as is, IPv6 by its /64 (one host usually holds a
/// whole /64, so single IPv6 addresses would cost an attacker nothing).
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let net = std::net::Ipv6Addr::from(u128::from(a) & (u128::MAX << 64));
            format!("{net}/64")
        }
    }
}

/// User-supplied text for a log line: at most 64 characters, control characters (newlines
/// too) and quotes escaped, and an ellipsis when cut.
pub fn for_log(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_account_until_the_window_moves() {
        let l = Limiter::new(900, 5, 20);
        for t in 0..5 {
            assert!(l.check(Some("alice"), "1.2.3.4", t).is_ok());
            let _ = l.reserve(Some("alice"), "1.2.3.4", t).unwrap();
        }
        assert_eq!(l.check(Some("alice"), "5.6.7.8", 10), Err(890));
        assert_eq!(l.reserve(Some("alice"), "5.6.7.8", 10).unwrap_err(), 890);
        assert!(
            l.check(Some("bob"), "1.2.3.4", 10).is_ok(),
            "other accounts are fine"
        );
        assert!(
            l.check(Some("alice"), "1.2.3.4", 900).is_ok(),
            "the first failure left"
        );
    }

    #[test]
    fn one_address_trying_many_accounts_is_limited() {
        let l = Limiter::new(900, 5, 20);
        for i in 0..20 {
            let _ = l.reserve(Some(&format!("user{i}")), "9.9.9.9", 0).unwrap();
        }
        assert!(l.check(Some("someone"), "9.9.9.9", 1).is_err());
        assert!(l.check(None, "9.9.9.9", 1).is_err(), "invalid names too");
        assert!(l.check(Some("someone"), "8.8.8.8", 1).is_ok());
    }

    #[test]
    fn check_remembers_nothing_and_a_released_attempt_is_not_a_failure() {
        let l = Limiter::new(900, 2, 20);
        assert!(l.check(Some("a"), "1.1.1.1", 0).is_ok());
        assert_eq!(l.len(), 0, "check must not insert");
        let r = l.reserve(Some("a"), "1.1.1.1", 0).unwrap();
        let _kept = l.reserve(Some("a"), "1.1.1.1", 0).unwrap();
        assert!(l.reserve(Some("a"), "1.1.1.1", 0).is_err(), "two in flight");
        l.release(r);
        assert!(l.reserve(Some("a"), "1.1.1.1", 1).is_ok());
    }

    #[test]
    fn a_full_map_drops_expired_then_unlocked_entries_never_locked_ones() {
        let l = Limiter::with_capacity(900, 5, 20, 100);
        // A locked account and a locked address.
        for t in 0..20 {
            let _ = l.reserve(Some(&format!("v{}", t % 4)), "6.6.6.6", t);
        }
        for _ in 0..5 {
            let _ = l.reserve(Some("victim"), "7.7.7.7", 30);
        }
        assert!(l.check(Some("victim"), "1.1.1.1", 31).is_err());
        for i in 0..10_000 {
            let _ = l.reserve(
                Some(&format!("made-up-{i}")),
                &format!("10.0.{}.{}", i / 250, i % 250),
                40 + i / 100,
            );
            assert!(l.len() <= 100, "{}", l.len());
        }
        assert!(
            l.check(Some("victim"), "1.1.1.1", 200).is_err(),
            "still locked"
        );
        assert!(l.check(None, "6.6.6.6", 200).is_err(), "still locked");
    }

    #[test]
    fn when_every_entry_is_locked_new_keys_are_not_remembered() {
        let l = Limiter::with_capacity(900, 1, 1, 4);
        for i in 0..2 {
            let _ = l
                .reserve(Some(&format!("a{i}")), &format!("1.1.1.{i}"), 0)
                .unwrap();
        }
        assert_eq!(l.len(), 4);
        let _ = l.reserve(Some("new"), "2.2.2.2", 1).unwrap();
        assert_eq!(l.len(), 4, "no room, and no lockout lifted");
        assert!(l.check(Some("a0"), "3.3.3.3", 1).is_err());
        assert!(
            l.reserve(Some("new"), "2.2.2.3", 901).is_ok(),
            "room again once expired"
        );
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "35.191.0.0/16".parse().unwrap();
        assert!(c.contains("35.191.7.8".parse().unwrap()));
        assert!(c.contains("::ffff:35.191.7.8".parse().unwrap()));
        assert!(!c.contains("35.192.0.1".parse().unwrap()));
        let one: Cidr = "10.0.0.7".parse().unwrap();
        assert_eq!(one.to_string(), "10.0.0.7/32");
        let v6: Cidr = "2600:1900::/28".parse().unwrap();
        assert!(v6.contains("2600:1901::1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        for bad in [
            "35.191.0.0/33",
            "35.191.1.0/16",
            "nonsense",
            "1.2.3.4/x",
            "",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains("is not a CIDR"), "{e}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = |s: &'static str| HeaderValue::from_static(s);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = [h("6.6.6.6, 1.2.3.4"), h("10.1.1.1")];
        assert_eq!(
            client_ip(ip("8.8.8.8"), xff.iter(), &trusted),
            ip("8.8.8.8")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff.iter(), &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), [].iter(), &trusted),
            ip("10.0.0.2")
        );
        let all = [h("10.9.9.9, 10.1.1.1")];
        assert_eq!(
            client_ip(ip("10.0.0.2"), all.iter(), &trusted),
            ip("10.9.9.9")
        );
        let junk = [h("1.2.3.4, junk, 10.1.1.1")];
        assert_eq!(
            client_ip(ip("10.0.0.2"), junk.iter(), &trusted),
            ip("10.1.1.1")
        );
        let port = [h("[2001:db8::1]:443")];
        assert_eq!(
            client_ip(ip("10.0.0.2"), port.iter(), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(address_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(address_key(ip("::ffff:1.2.3.4")), "1.2.3.4");
    }

    #[test]
    fn log_text_is_bounded_and_escaped() {
        assert_eq!(for_log("alice"), "alice");
        assert_eq!(for_log("a\nb\"c"), "a\\nb\\\"c");
        let long = for_log(&"x".repeat(2_000_000));
        assert_eq!(long.chars().count(), 65);
    }
}
