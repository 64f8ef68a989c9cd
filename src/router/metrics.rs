//! Counts of the router's decisions per tier: how often each tier answered (and how often only after
//! another failed) and how often it failed. A plain counter API; Prometheus export reads [`RouterMetrics::snapshot`].

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TierCounts {
    /// Requests this tier answered.
    pub answered: u64,
    /// Of those, answered after an earlier tier failed.
    pub after_fallback: u64,
    /// Attempts that failed before answering.
    pub failed: u64,
}

/// Decision counters, per tier name.
#[derive(Debug, Default)]
pub struct RouterMetrics {
    counts: Mutex<BTreeMap<String, TierCounts>>,
}

impl RouterMetrics {
    fn update(&self, tier: &str, f: impl FnOnce(&mut TierCounts)) {
        // A poisoned lock only means another thread panicked mid-increment; the counts stay usable.
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(counts.entry(tier.to_owned()).or_default());
    }

    /// Records that `tier` answered.
    pub fn decided(&self, tier: &str, after_fallback: bool) {
        crate::telemetry::metrics::router_decision(tier);
        self.update(tier, |c| {
            c.answered += 1;
            c.after_fallback += u64::from(after_fallback);
        });
    }

    /// Records that `tier` failed before answering.
    pub fn failed(&self, tier: &str) {
        self.update(tier, |c| c.failed += 1);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, TierCounts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_tier() {
        let m = RouterMetrics::default();
        m.decided("fast", false);
        m.failed("remote");
        m.decided("strong", true);
        m.decided("fast", false);
        let s = m.snapshot();
        assert_eq!(s["fast"].answered, 2);
        assert_eq!(
            s["strong"],
            TierCounts {
                answered: 1,
                after_fallback: 1,
                failed: 0
            }
        );
        assert_eq!(s["remote"].failed, 1);
    }
}
