//! Per-route latency over a sliding window, for `GET /api/v1/performance/metrics`. Each route keeps its
//! most recent samples (bounded), so memory stays flat under any load; the percentiles are computed when
//! asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How far back the report looks.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Samples kept per route.
const MAX_SAMPLES: usize = 10_000;

struct Sample {
    at: Instant,
    seconds: f32,
    error: bool,
}

static SAMPLES: LazyLock<Mutex<HashMap<String, VecDeque<Sample>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Records one request of `route` (a method and route template, e.g. `GET /api/v1/files/:file_id`).
pub fn record(route: &str, seconds: f64, status: u16) {
    let mut all = SAMPLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !all.contains_key(route) {
        all.insert(route.to_owned(), VecDeque::new());
    }
    let Some(q) = all.get_mut(route) else {
        return;
    };
    if q.len() == MAX_SAMPLES {
        q.pop_front();
    }
    // Latency needs no double precision.
    q.push_back(Sample {
        at: Instant::now(),
        seconds: seconds as f32,
        error: status >= 500,
    });
}

/// Latency statistics of one route over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStats {
    /// Method and route template.
    pub route: String,
    /// Requests in the window (at most the samples kept).
    pub count: usize,
    /// Requests per second over the window (or since the first sample, when more recent).
    pub requests_per_second: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile in milliseconds.
    pub p90_ms: f64,
    /// 99th percentile in milliseconds.
    pub p99_ms: f64,
    /// Slowest in milliseconds.
    pub max_ms: f64,
    /// Answers with a 5xx status.
    pub server_errors: usize,
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    f64::from(sorted[i]) * 1000.0
}

/// Statistics of every route seen in the window, busiest first.
pub fn report() -> Vec<RouteStats> {
    let now = Instant::now();
    let mut all = SAMPLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Vec::new();
    for (route, q) in all.iter_mut() {
        while q.front().is_some_and(|s| now.duration_since(s.at) > WINDOW) {
            q.pop_front();
        }
        if q.is_empty() {
            continue;
        }
        let mut lat: Vec<f32> = q.iter().map(|s| s.seconds).collect();
        lat.sort_by(f32::total_cmp);
        let span = q
            .front()
            .map_or(WINDOW, |s| now.duration_since(s.at))
            .max(Duration::from_secs(1));
        let rps = q.len() as f64 / span.as_secs_f64();
        out.push(RouteStats {
            route: route.clone(),
            count: q.len(),
            requests_per_second: rps,
            p50_ms: percentile(&lat, 0.5),
            p90_ms: percentile(&lat, 0.9),
            p99_ms: percentile(&lat, 0.99),
            max_ms: percentile(&lat, 1.0),
            server_errors: q.iter().filter(|s| s.error).count(),
        });
    }
    all.retain(|_, q| !q.is_empty());
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.route.cmp(&b.route)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_requests() {
        for ms in 1..=100 {
            record("GET /test-perf", f64::from(ms) / 1000.0, 200);
        }
        record("GET /test-perf", 0.5, 503);
        let r = report();
        let s = r
            .iter()
            .find(|s| s.route == "GET /test-perf")
            .expect("route");
        assert_eq!(s.count, 101);
        assert!((s.p50_ms - 51.0).abs() < 1.5, "{s:?}");
        assert!((s.max_ms - 500.0).abs() < 0.01, "{s:?}");
        assert_eq!(s.server_errors, 1);
    }
}
