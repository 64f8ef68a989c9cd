//! Throughput benchmark of the embedding core (used by `make bench`).
//!
//! Runs on the calling thread plus a dedicated rayon pool per thread count; nothing else runs meanwhile.
//! The figure to compare with is sentence-transformers' ~20-word sentences per second at batch 32.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;

use super::{EmbedError, Embedder};

/// Words per benchmark sentence, as in the peers' measurements.
const WORDS_PER_SENTENCE: usize = 20;
/// Seed of the sentence generator, so every run embeds the same text.
const SENTENCE_SEED: u64 = 0x5eed_cafe;
/// Everyday words the sentences are drawn from (all in the WordPiece vocabulary, so about one token each).
const WORDS: &[&str] = &[
    "the",
    "report",
    "shows",
    "that",
    "our",
    "team",
    "finished",
    "project",
    "before",
    "deadline",
    "while",
    "customers",
    "asked",
    "for",
    "better",
    "support",
    "with",
    "new",
    "features",
    "and",
    "faster",
    "delivery",
    "of",
    "orders",
    "in",
    "every",
    "region",
    "during",
    "last",
    "quarter",
    "because",
    "prices",
    "rose",
    "again",
    "after",
    "market",
    "changed",
    "its",
    "rules",
    "about",
    "energy",
    "water",
    "city",
    "council",
    "meeting",
    "will",
    "discuss",
    "budget",
    "school",
    "hospital",
    "roads",
    "next",
    "week",
    "people",
    "said",
    "they",
    "would",
    "like",
    "more",
    "parks",
    "trains",
    "buses",
    "cheaper",
    "housing",
    "near",
    "river",
    "old",
    "bridge",
    "was",
    "closed",
    "repairs",
    "engineers",
    "found",
    "cracks",
    "steel",
    "under",
    "main",
    "road",
];
/// Multiplier and increment of the linear congruential generator (Knuth's MMIX constants).
const LCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
const LCG_INCREMENT: u64 = 1_442_695_040_888_963_407;

/// One benchmark measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Compute threads.
    pub threads: usize,
    /// Texts per forward pass.
    pub max_batch: usize,
    /// Sentences embedded per round.
    pub sentences: usize,
    /// Median seconds of one round.
    pub seconds: f64,
    /// `sentences / seconds`.
    pub sentences_per_sec: f64,
}

/// `count` deterministic sentences of [`WORDS_PER_SENTENCE`] everyday words.
pub fn bench_sentences(count: usize) -> Vec<String> {
    let mut state = SENTENCE_SEED;
    let mut next_word = move || {
        state = state
            .wrapping_mul(LCG_MULTIPLIER)
            .wrapping_add(LCG_INCREMENT);
        // The high bits of an LCG are the well-mixed ones.
        let index = usize::try_from(state >> 33).unwrap_or(0) % WORDS.len();
        WORDS[index]
    };
    (0..count)
        .map(|_| {
            let words: Vec<&str> = (0..WORDS_PER_SENTENCE).map(|_| next_word()).collect();
            let mut sentence = words.join(" ");
            if let Some(first) = sentence.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            sentence.push('.');
            sentence
        })
        .collect()
}

/// Embeds `sentences` benchmark sentences for every combination of `batches` (texts per forward pass) and
/// `threads` (compute pool size) on the CPU, `rounds` times each after one warm-up batch, and returns the
/// median throughput of each combination.
pub fn bench_throughput(
    model_dir: &Path,
    sentences: usize,
    batches: &[usize],
    threads: &[usize],
    rounds: usize,
) -> Result<Vec<BenchResult>, EmbedError> {
    let texts = bench_sentences(sentences);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut results = Vec::new();
    for &max_batch in batches {
        let embedder = Embedder::load(model_dir, &Device::Cpu, max_batch)?;
        for &n_threads in threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n_threads)
                .build()
                .map_err(|err| EmbedError::InvalidConfig(format!("compute pool: {err}")))?;
            let mut seconds: Vec<f64> = pool.install(|| {
                embedder.embed_detailed(&texts[..max_batch.min(texts.len())])?;
                (0..rounds.max(1))
                    .map(|_| {
                        let started = Instant::now();
                        embedder.embed_detailed(&texts)?;
                        Ok(started.elapsed().as_secs_f64())
                    })
                    .collect::<Result<Vec<f64>, EmbedError>>()
            })?;
            seconds.sort_by(f64::total_cmp);
            let median = seconds[seconds.len() / 2];
            results.push(BenchResult {
                threads: n_threads,
                max_batch,
                sentences,
                seconds: median,
                sentences_per_sec: sentences as f64 / median,
            });
        }
    }
    Ok(results)
}
