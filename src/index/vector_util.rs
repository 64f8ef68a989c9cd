//! Helpers of the vector index: normalisation, a SIMD-friendly dot product, top-k selection,
//! and the semaphore that caps concurrent usearch calls.

use std::sync::{Condvar, Mutex, PoisonError};

use crate::index::vector::{THREAD_SLOTS, VectorError};

/// Vectors whose norm is below this cannot be normalised (all zeros).
const MIN_NORM: f32 = 1e-12;

/// `vector` scaled to unit length.
pub(super) fn normalised(vector: &[f32], dims: usize) -> Result<Vec<f32>, VectorError> {
    if vector.len() != dims {
        return Err(VectorError::Dimensions {
            expected: dims,
            got: vector.len(),
        });
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm < MIN_NORM {
        return Err(VectorError::NotNormalisable);
    }
    Ok(vector.iter().map(|x| x / norm).collect())
}

/// Lanes of the dot product's independent accumulators: lets the compiler use SIMD (a single
/// running sum is a serial dependency chain it may not reorder).
const DOT_LANES: usize = 8;

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; DOT_LANES];
    let (ca, cb) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for i in 0..DOT_LANES {
            acc[i] += xa[i] * xb[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `k` best `(key, similarity)` pairs, best first (ties by key, for determinism).
pub(super) fn top_k(mut scored: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
    let order = |a: &(u64, f32), b: &(u64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
    }
    scored.sort_unstable_by(order);
    scored.truncate(k);
    scored
}

/// A counting semaphore capping concurrent usearch calls at [`THREAD_SLOTS`].
pub(super) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

pub(super) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub(super) fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

pub(super) fn new_slots() -> Slots {
    Slots {
        free: Mutex::new(THREAD_SLOTS),
        freed: Condvar::new(),
    }
}
