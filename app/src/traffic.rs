//! What the policy page shows about recorded traffic: per-version rates, error rates and the
//! observed canary share against the configured one, as charts (SVG) and as numbers. Built on
//! the server (`crate::ssr::traffic`) from the stored minutes (summed over replicas) and the
//! audit trail; these are the types that travel to the page.

use serde::{Deserialize, Serialize};
use splitter::VersionRole;

/// The window selector's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    M15,
    H1,
    H24,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::M15, Window::H1, Window::H24];

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "" | "15m" => Some(Window::M15),
            "1h" => Some(Window::H1),
            "24h" => Some(Window::H24),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Window::M15 => "15m",
            Window::H1 => "1h",
            Window::H24 => "24h",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::M15 => "15 min",
            Window::H1 => "1 hour",
            Window::H24 => "24 hours",
        }
    }

    pub fn minutes(self) -> i64 {
        match self {
            Window::M15 => 15,
            Window::H1 => 60,
            Window::H24 => 24 * 60,
        }
    }

    /// Minutes per chart point: 24 hours are drawn in 5-minute steps (288 points, not 1 440),
    /// which keeps the page small; the numbers table always sums every minute.
    pub fn step_minutes(self) -> i64 {
        match self {
            Window::M15 | Window::H1 => 1,
            Window::H24 => 5,
        }
    }
}

/// One chart: its SVG and a text alternative that states what it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub svg: String,
    pub alt: String,
}

/// One version's totals over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    pub version: String,
    pub role: VersionRole,
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPage {
    pub window: Window,
    pub from_minute: i64,
    pub to_minute: i64,
    pub requests: u64,
    /// Canary requests / all requests over the window (`None` without requests).
    pub observed_share: Option<f64>,
    pub configured_share: f64,
    pub versions: Vec<VersionRow>,
    pub charts: Vec<Chart>,
    /// The recorder of the replica that served this page: not yet written, and lost.
    pub unflushed_requests: u64,
    pub lost_requests: u64,
    pub recorder_error: Option<String>,
}
