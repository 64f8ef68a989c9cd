//! Throughput benchmark of the embedding core (used by `make bench`).
//!
//! Runs on the calling thread plus a dedicated rayon pool per thread count; nothing else runs meanwhile.
//! The figure to compare with is sentence-transformers' ~20-word sentences per second at batch 32.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;

use crate::models::embed::{EmbedError, Embedder};

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
/// Index of `utime` among the fields of `/proc/self/stat` that follow the command name.
const UTIME_FIELD_AFTER_NAME: usize = 11;
/// `sysconf(_SC_CLK_TCK)`, 100 on every mainstream Linux build.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// Multiplier and increment of the linear congruential generator (Knuth's MMIX constants).
const LCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
const LCG_INCREMENT: u64 = 1_442_695_040_888_963_407;

/// One benchmark measurement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// Sentences per second of CPU time the process used in the median round (user + system, all threads;
    /// `None` off Linux). Stays comparable when other work on the machine steals cores from the benchmark.
    pub sentences_per_cpu_sec: Option<f64>,
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
            let mut measured: Vec<(f64, Option<f64>)> = pool.install(|| {
                embedder.embed_detailed(&texts[..max_batch.min(texts.len())])?;
                (0..rounds.max(1))
                    .map(|_| {
                        let cpu_before = process_cpu_seconds();
                        let started = Instant::now();
                        embedder.embed_detailed(&texts)?;
                        let wall = started.elapsed().as_secs_f64();
                        let cpu = cpu_before
                            .zip(process_cpu_seconds())
                            .map(|(before, after)| after - before);
                        Ok((wall, cpu))
                    })
                    .collect::<Result<Vec<_>, EmbedError>>()
            })?;
            measured.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (median, cpu) = measured[measured.len() / 2];
            results.push(BenchResult {
                threads: n_threads,
                max_batch,
                sentences,
                seconds: median,
                sentences_per_sec: sentences as f64 / median,
                sentences_per_cpu_sec: cpu
                    .filter(|cpu| *cpu > 0.0)
                    .map(|cpu| sentences as f64 / cpu),
            });
        }
    }
    Ok(results)
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`; `None` where that is
/// not available.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may contain spaces): utime and stime are the
    // 14th and 15th fields overall, i.e. the 12th and 13th after it.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace().skip(UTIME_FIELD_AFTER_NAME);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SEC)
}
