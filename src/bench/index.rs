//! Benchmark helpers for `make bench`: vector search speed and recall, BM25 latency.
//! Each returns a serialisable report; the caller decides where the JSON goes.
//! They run single-threaded queries, one after another, and block for seconds to minutes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::index::synthetic::{ClusterSpec, ClusteredVectors, ZipfText};
use crate::index::text::{TextError, TextIndex};
use crate::index::vector::{VectorEntry, VectorError, VectorIndex};
use crate::index::{ChunkMeta, IndexedChunk, SearchFilter};
use crate::types::Category;

/// Neighbours compared for recall.
pub const RECALL_K: usize = 10;
/// Tenant of the synthetic data.
const BENCH_TENANT: &str = "bench";
/// Model name recorded in synthetic vector indexes.
const BENCH_MODEL: &str = "synthetic";
/// Words per synthetic text chunk (a ~200-token chunk is ~150 words).
const WORDS_PER_CHUNK: usize = 150;
/// Vocabulary of the synthetic text.
const VOCABULARY: usize = 20_000;
/// Words per synthetic text query.
const WORDS_PER_QUERY: usize = 4;

/// Latency distribution of a run of queries.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Queries per second (one thread, back to back).
    pub qps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

impl Latency {
    /// The distribution of `samples`.
    pub fn from_samples(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        let pick = |p: f64| {
            let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Latency {
            qps: samples.len() as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE),
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
        }
    }
}

/// Vector search figures at one collection size.
#[derive(Debug, Clone, Serialize)]
pub struct VectorBenchReport {
    /// Vectors indexed.
    pub vectors: usize,
    /// Dimensions.
    pub dims: usize,
    /// Queries run.
    pub queries: usize,
    /// Seconds to insert every vector.
    pub build_secs: f64,
    /// HNSW expansion at search.
    pub expansion_search: usize,
    /// HNSW search.
    pub hnsw: Latency,
    /// Exact (brute-force) search.
    pub exact: Latency,
    /// Share of the exact top-10 that HNSW returned.
    pub recall_at_10: f64,
}

/// Builds an in-memory index of `n` clustered synthetic vectors and measures it.
pub fn bench_vector_synthetic(
    n: usize,
    dims: usize,
    queries: usize,
    seed: u64,
) -> Result<VectorBenchReport, VectorError> {
    let mut g = ClusteredVectors::new(ClusterSpec::embedding_like(dims), seed);
    let vectors = g.take(n);
    let query_vectors = g.take(queries);
    let metas: Vec<ChunkMeta> = (0..n)
        .map(|i| ChunkMeta {
            chunk_id: format!("c{i}"),
            file_id: format!("f{}", i / 32),
            tenant: BENCH_TENANT.to_owned(),
            category: Category::Text,
            created_at: 0,
        })
        .collect();
    let index = VectorIndex::in_memory(dims, BENCH_MODEL)?;
    let started = Instant::now();
    let batch = 4_096;
    for (m, v) in metas.chunks(batch).zip(vectors.chunks(batch)) {
        let entries: Vec<VectorEntry<'_>> = m
            .iter()
            .zip(v)
            .map(|(meta, vector)| VectorEntry { meta, vector })
            .collect();
        index.add(&entries)?;
    }
    let build_secs = started.elapsed().as_secs_f64();
    let mut report = bench_vector_index(
        &index,
        &query_vectors,
        crate::index::vector::HNSW_EXPANSION_SEARCH,
    )?;
    report.build_secs = build_secs;
    Ok(report)
}

/// Measures an existing index (e.g. of real MiniLM vectors) with the given queries at the
/// given HNSW search expansion: HNSW and exact latency, and HNSW recall@10 against exact.
pub fn bench_vector_index(
    index: &VectorIndex,
    queries: &[Vec<f32>],
    expansion_search: usize,
) -> Result<VectorBenchReport, VectorError> {
    index.set_expansion_search(expansion_search);
    let mut exact_times = Vec::with_capacity(queries.len());
    let mut exact_sets = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hits = index.exact_search(q, RECALL_K, |_| true)?;
        exact_times.push(t.elapsed());
        exact_sets.push(hits.into_iter().map(|(k, _)| k).collect::<HashSet<u64>>());
    }
    let mut hnsw_times = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    let mut wanted = 0usize;
    for (q, exact) in queries.iter().zip(&exact_sets) {
        let t = Instant::now();
        let hits = index.approx_search(q, RECALL_K)?;
        hnsw_times.push(t.elapsed());
        found += hits.iter().filter(|(k, _)| exact.contains(k)).count();
        wanted += exact.len();
    }
    Ok(VectorBenchReport {
        vectors: index.len(),
        dims: index.dims(),
        queries: queries.len(),
        build_secs: 0.0,
        expansion_search,
        hnsw: Latency::from_samples(hnsw_times),
        exact: Latency::from_samples(exact_times),
        recall_at_10: found as f64 / wanted.max(1) as f64,
    })
}

/// BM25 figures at one collection size.
#[derive(Debug, Clone, Serialize)]
pub struct TextBenchReport {
    /// Chunks indexed.
    pub chunks: usize,
    /// Queries run.
    pub queries: usize,
    /// Seconds to index and commit every chunk.
    pub index_secs: f64,
    /// Search latency (top 10, with snippets, tenant filter).
    pub search: Latency,
}

/// Indexes `n` synthetic Zipf-text chunks in memory and measures top-10 BM25 searches.
pub fn bench_text_synthetic(
    n: usize,
    queries: usize,
    seed: u64,
) -> Result<TextBenchReport, TextError> {
    let index = TextIndex::in_ram()?;
    let mut words = ZipfText::new(VOCABULARY, seed);
    let created: DateTime<Utc> = DateTime::UNIX_EPOCH;
    let started = Instant::now();
    let batch = 1_000;
    for start in (0..n).step_by(batch) {
        let chunks: Vec<IndexedChunk> = (start..(start + batch).min(n))
            .map(|i| IndexedChunk {
                chunk_id: format!("c{i}"),
                file_id: format!("f{}", i / 32),
                tenant: BENCH_TENANT.to_owned(),
                category: Category::Text,
                created_at: created,
                text: words.text(WORDS_PER_CHUNK),
            })
            .collect();
        index.add(&chunks)?;
    }
    index.commit()?;
    let index_secs = started.elapsed().as_secs_f64();
    let filter = SearchFilter::tenant(BENCH_TENANT);
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries {
        let q = words.text(WORDS_PER_QUERY);
        let t = Instant::now();
        index.search(&q, &filter, RECALL_K)?;
        times.push(t.elapsed());
    }
    Ok(TextBenchReport {
        chunks: n,
        queries,
        index_secs,
        search: Latency::from_samples(times),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_benchmarks_run() {
        let v = bench_vector_synthetic(500, 32, 20, 1).expect("vector bench");
        assert_eq!(v.vectors, 500);
        assert!(v.recall_at_10 > 0.9, "{v:?}");
        let t = bench_text_synthetic(300, 20, 1).expect("text bench");
        assert_eq!(t.chunks, 300);
        assert!(t.search.qps > 0.0);
    }

    /// The figures in the report: `cargo test --release --lib bench::index::tests::report
    /// -- --ignored --nocapture` (minutes).
    #[test]
    #[ignore = "benchmark: minutes of CPU"]
    fn report() {
        for n in [1_000, 2_000, 5_000, 10_000, 100_000] {
            let r = bench_vector_synthetic(n, 384, 500, 42).expect("vector bench");
            println!("{}", serde_json::to_string(&r).expect("json"));
        }
        let r = bench_text_synthetic(100_000, 500, 42).expect("text bench");
        println!("{}", serde_json::to_string(&r).expect("json"));
    }

    /// Exact vs HNSW at small sizes, to place `EXACT_SEARCH_MAX` (seconds).
    #[test]
    #[ignore = "benchmark"]
    fn crossover() {
        for n in [100, 250, 500, 1_000, 2_000, 5_000] {
            let r = bench_vector_synthetic(n, 384, 1_000, 42).expect("vector bench");
            println!("{}", serde_json::to_string(&r).expect("json"));
        }
    }
}
