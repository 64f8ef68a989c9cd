//! Choosing the next token from the logits: OpenAI's presence and frequency penalties, then greedy decoding at
//! temperature 0, else temperature-scaled softmax with nucleus (top-p) sampling from a seeded generator.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SamplingParams;

/// Temperatures at or below this are greedy (argmax): deterministic whatever the seed.
const GREEDY_TEMPERATURE: f32 = 1e-4;

/// The sampler of one generation.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    rng: StdRng,
    /// How often each token was generated so far (for the penalties).
    counts: HashMap<u32, u32>,
}

impl Sampler {
    /// A sampler for `params`; without a seed it seeds itself from the OS.
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            temperature: params.temperature,
            top_p: params.top_p,
            presence_penalty: params.presence_penalty,
            frequency_penalty: params.frequency_penalty,
            rng,
            counts: HashMap::new(),
        }
    }

    /// Picks the next token from `logits` (modified in place) and records it for the penalties.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            for (&token, &count) in &self.counts {
                if let Some(l) = logits.get_mut(token as usize) {
                    *l -= count as f32 * self.frequency_penalty + self.presence_penalty;
                }
            }
        }
        let token = if self.temperature <= GREEDY_TEMPERATURE {
            argmax(logits)
        } else {
            self.nucleus(logits)
        };
        *self.counts.entry(token).or_insert(0) += 1;
        token
    }

    fn nucleus(&mut self, logits: &[f32]) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                (
                    u32::try_from(i).unwrap_or(u32::MAX),
                    ((l - max) / self.temperature).exp(),
                )
            })
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // Keep the most likely tokens until their mass reaches top_p (always at least one).
        let limit = self.top_p * total;
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1;
            if kept >= limit {
                cut = i + 1;
                break;
            }
        }
        probs.truncate(cut.max(1));
        let mass: f32 = probs.iter().map(|p| p.1).sum();
        let mut r = self.rng.random::<f32>() * mass;
        for &(token, p) in &probs {
            if r < p {
                return token;
            }
            r -= p;
        }
        probs.last().map_or(0, |p| p.0)
    }
}

/// Index of the largest logit (the first one on ties, so greedy decoding is reproducible).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(&params(0.0, 1.0, 1));
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn the_same_seed_samples_the_same_tokens() {
        let logits = [1.0, 1.1, 0.9, 1.05, 0.2];
        let run = |seed| {
            let mut s = Sampler::new(&params(1.0, 1.0, seed));
            (0..50)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn a_small_top_p_keeps_only_the_most_likely_token() {
        let mut s = Sampler::new(&params(1.0, 0.01, 3));
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 5.0, 4.0, 1.0]), 1);
        }
    }

    #[test]
    fn frequency_penalty_moves_away_from_repeated_tokens() {
        let mut s = Sampler::new(&SamplingParams {
            temperature: 0.0,
            frequency_penalty: 2.0,
            ..SamplingParams::default()
        });
        let logits = [1.0, 2.5, 2.0];
        assert_eq!(s.sample(&mut logits.clone()), 1);
        // Token 1 now pays 2.0 per use: 0.5 < 2.0.
        assert_eq!(s.sample(&mut logits.clone()), 2);
    }
}
