//! `docpipe bench search`: search speed on real text at 100,000 chunks.
//!
//! The PDF corpus is extracted (text layer) and cut by the real chunker into short chunks, which MiniLM
//! embeds. Embedding 100k chunks takes minutes, so texts and vectors are cached (keyed by chunk size and
//! count) and later runs only measure search. Queries are real text too: the retrieval benchmark's
//! questions and the opening words of held-out chunks (never indexed).
//!
//! Reported: HNSW recall@10 against exact search with queries/s and p50/p99 at several collection sizes
//! (where exact and HNSW cross over), the service's vector path (tenant filter included), BM25 and
//! hybrid (BM25 + vector + fusion) p50/p99 at full size, and the query-embedding latency hybrid adds.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use candle_core::Device;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bench::index::{Latency, VectorBenchReport, bench_vector_index};
use crate::chunk::{ChunkConfig, chunk_document};
use crate::extract::detect;
use crate::index::vector::{HNSW_EXPANSION_SEARCH, VectorEntry};
use crate::index::{
    ChunkMeta, FusionConfig, IndexedChunk, SearchFilter, TextIndex, VectorIndex, fuse,
};
use crate::models::embed::{DIMENSIONS, Embedder, MODEL_DIR_NAME, MODEL_NAME};
use crate::pipeline::Pipelines;
use crate::types::Category;

use super::extract::extract_without_ocr;

/// Tenant of the benchmark's chunks.
const TENANT: &str = "bench";
/// Fewest words a chunk needs to be indexed (drops page numbers and running heads).
const MIN_WORDS: usize = 8;
/// Words of a held-out chunk used as a query.
const QUERY_WORDS: usize = 8;
/// Texts per call into the embedder (it splits them between its threads).
const EMBED_CALL: usize = 1_024;
/// Texts per forward pass.
const EMBED_BATCH: usize = 32;
/// Chunks per index insert call.
const INSERT_BATCH: usize = 4_096;
/// Results per query.
const TOP_K: usize = 10;
/// Candidates each index returns to hybrid fusion (as the search service asks for at top_k 10).
const FUSION_CANDIDATES: usize = 50;
/// Chunks per synthetic file id (filters and deletes work per file).
const CHUNKS_PER_FILE: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct SearchBenchArgs {
    /// Folders with the PDF corpus.
    pub corpus: Vec<PathBuf>,
    /// Folder with the embedding model.
    pub models_dir: PathBuf,
    /// Where the embedded chunks are cached between runs.
    pub cache_dir: PathBuf,
    /// Chunks to index.
    pub chunks: usize,
    /// Held-out chunks whose opening words become queries.
    pub queries: usize,
    /// Chunk size in tokens.
    pub chunk_tokens: usize,
    /// Compute threads for embedding.
    pub threads: usize,
    /// The retrieval benchmark's questions (`bench/retrieval/questions.jsonl`), also used as queries.
    pub questions: Option<PathBuf>,
}

/// BM25 or hybrid at full size.
#[derive(Debug, Clone, Serialize)]
pub struct QueryBench {
    /// Queries run.
    pub queries: usize,
    /// Latency, one query at a time.
    pub latency: Latency,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SearchBenchReport {
    /// Embedding model.
    pub model: &'static str,
    /// Chunks indexed.
    pub chunks: usize,
    /// Chunk size in tokens.
    pub chunk_tokens: usize,
    /// Mean tokens per indexed chunk.
    pub mean_chunk_tokens: f64,
    /// Source files the chunks came from.
    pub source_files: usize,
    /// Seconds spent embedding the chunks (0 when they came from the cache).
    pub embed_secs: f64,
    /// HNSW vs exact search on prefixes of the collection (recall@10 against exact).
    pub vector_by_size: Vec<VectorBenchReport>,
    /// The vector path the search service takes at full size (tenant filter, exact/HNSW choice).
    pub vector_service: QueryBench,
    /// Seconds to build the text index at full size.
    pub bm25_index_secs: f64,
    /// BM25 top 10 with snippets at full size.
    pub bm25: QueryBench,
    /// BM25 + vector + default fusion, given the query vector.
    pub hybrid: QueryBench,
    /// Embedding one query (what hybrid adds for a text-only query).
    pub query_embedding: QueryBench,
}

/// Cached chunk text and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedChunk {
    text: String,
    tokens: usize,
    file: String,
}

/// Real text chunks with their vectors.
struct Corpus {
    chunks: Vec<CachedChunk>,
    vectors: Vec<Vec<f32>>,
    embed_secs: f64,
}

/// Runs the whole benchmark.
pub fn run(args: &SearchBenchArgs) -> anyhow::Result<SearchBenchReport> {
    let model_dir = args.models_dir.join(MODEL_DIR_NAME);
    let embedder = Embedder::load(&model_dir, &Device::Cpu, EMBED_BATCH)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let wanted = args.chunks + args.queries;
    let corpus = pool.install(|| load_or_build(args, &embedder, wanted))?;
    anyhow::ensure!(
        corpus.chunks.len() >= wanted,
        "the corpus gave {} chunks of {} tokens, {wanted} wanted",
        corpus.chunks.len(),
        args.chunk_tokens
    );
    // Every k-th chunk is held out as a query, the rest are indexed.
    let stride = wanted / args.queries.max(1);
    let (mut indexed, mut held_out) = (Vec::new(), Vec::new());
    for (i, (c, v)) in corpus.chunks.iter().zip(&corpus.vectors).enumerate() {
        if i % stride == stride - 1 && held_out.len() < args.queries {
            held_out.push(c);
        } else if indexed.len() < args.chunks {
            indexed.push((c, v));
        }
    }
    let mut query_texts: Vec<String> = held_out
        .iter()
        .map(|c| {
            c.text
                .split_whitespace()
                .take(QUERY_WORDS)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if let Some(path) = &args.questions {
        query_texts.extend(load_questions(path)?);
    }
    let query_refs: Vec<&str> = query_texts.iter().map(String::as_str).collect();
    let query_vectors = pool.install(|| embedder.embed_batch(&query_refs))?;

    let metas: Vec<ChunkMeta> = (0..indexed.len()).map(meta).collect();
    let vectors: Vec<&Vec<f32>> = indexed.iter().map(|(_, v)| *v).collect();
    let mut vector_by_size = Vec::new();
    let mut full = None;
    for size in sizes(indexed.len()) {
        let (index, build_secs) = vector_index(&metas[..size], &vectors[..size])?;
        let mut report = bench_vector_index(&index, &query_vectors, HNSW_EXPANSION_SEARCH)?;
        report.build_secs = build_secs;
        eprintln!(
            "vectors {size}: HNSW {:.0} q/s p50 {:.3} ms, exact {:.0} q/s, recall@10 {:.4}",
            report.hnsw.qps, report.hnsw.p50_ms, report.exact.qps, report.recall_at_10
        );
        vector_by_size.push(report);
        full = Some(index);
    }
    let vectors_full = full.context("no collection size to measure")?;
    let filter = SearchFilter::tenant(TENANT);
    let vector_service = time_queries(&query_vectors, |q| {
        vectors_full.search(q, TOP_K, &filter).map(drop)
    })?;

    // On disk like the service's index; rebuilt on every run.
    let text_dir = args.cache_dir.join("bench-text-index");
    let _ = fs::remove_dir_all(&text_dir);
    fs::create_dir_all(&text_dir)?;
    let text = TextIndex::open(&text_dir)?;
    let started = Instant::now();
    let created: DateTime<Utc> = DateTime::UNIX_EPOCH;
    for (batch_start, batch) in indexed.chunks(INSERT_BATCH).enumerate() {
        let docs: Vec<IndexedChunk> = batch
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                let m = meta(batch_start * INSERT_BATCH + i);
                IndexedChunk {
                    chunk_id: m.chunk_id,
                    file_id: m.file_id,
                    tenant: m.tenant,
                    category: m.category,
                    created_at: created,
                    text: c.text.clone(),
                }
            })
            .collect();
        text.add(&docs)?;
    }
    text.commit()?;
    let bm25_index_secs = started.elapsed().as_secs_f64();
    let bm25 = time_queries(&query_texts, |q| text.search(q, &filter, TOP_K).map(drop))?;
    let fusion = FusionConfig::default();
    let pairs: Vec<(&String, &Vec<f32>)> = query_texts.iter().zip(&query_vectors).collect();
    let hybrid = time_queries(&pairs, |(q, v)| {
        let t = text.search(q, &filter, FUSION_CANDIDATES)?;
        let h = vectors_full.search(v, FUSION_CANDIDATES, &filter)?;
        let t: Vec<(String, f32)> = t.into_iter().map(|x| (x.chunk_id, x.score)).collect();
        let h: Vec<(String, f32)> = h.into_iter().map(|x| (x.chunk_id, x.similarity)).collect();
        let mut fused = fuse(&t, &h, &fusion);
        fused.truncate(TOP_K);
        anyhow::Ok(())
    })?;
    let query_embedding = pool.install(|| {
        time_queries(&query_texts, |q| {
            embedder.embed_batch(&[q.as_str()]).map(drop)
        })
    })?;
    Ok(SearchBenchReport {
        model: MODEL_NAME,
        chunks: indexed.len(),
        chunk_tokens: args.chunk_tokens,
        mean_chunk_tokens: indexed.iter().map(|(c, _)| c.tokens as f64).sum::<f64>()
            / indexed.len().max(1) as f64,
        source_files: count_files(indexed.iter().map(|(c, _)| c.file.as_str())),
        embed_secs: corpus.embed_secs,
        vector_by_size,
        vector_service,
        bm25_index_secs,
        bm25,
        hybrid,
        query_embedding,
    })
}

/// Collection sizes measured: powers of ten-ish up to `n`, and `n` itself.
fn sizes(n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000]
        .into_iter()
        .filter(|&s| s < n)
        .collect();
    out.push(n);
    out
}

fn meta(i: usize) -> ChunkMeta {
    let file = i / CHUNKS_PER_FILE;
    ChunkMeta {
        chunk_id: format!("f{file}#{i}"),
        file_id: format!("f{file}"),
        tenant: TENANT.to_owned(),
        category: Category::Pdf,
        created_at: 0,
    }
}

fn vector_index(metas: &[ChunkMeta], vectors: &[&Vec<f32>]) -> anyhow::Result<(VectorIndex, f64)> {
    let index = VectorIndex::in_memory(DIMENSIONS, MODEL_NAME)?;
    let started = Instant::now();
    for (m, v) in metas.chunks(INSERT_BATCH).zip(vectors.chunks(INSERT_BATCH)) {
        let entries: Vec<VectorEntry<'_>> = m
            .iter()
            .zip(v)
            .map(|(meta, vector)| VectorEntry { meta, vector })
            .collect();
        index.add(&entries)?;
    }
    Ok((index, started.elapsed().as_secs_f64()))
}

/// Runs `f` once per query (after one warm-up) and reports the latency distribution.
fn time_queries<Q, E>(
    queries: &[Q],
    mut f: impl FnMut(&Q) -> Result<(), E>,
) -> Result<QueryBench, E> {
    if let Some(q) = queries.first() {
        f(q)?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        f(q)?;
        samples.push(t.elapsed());
    }
    Ok(QueryBench {
        queries: queries.len(),
        latency: Latency::from_samples(samples),
    })
}

fn count_files<'a>(files: impl Iterator<Item = &'a str>) -> usize {
    files.collect::<std::collections::HashSet<_>>().len()
}

fn load_questions(path: &Path) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Question {
        question: String,
    }
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|l| Ok(serde_json::from_str::<Question>(&l?)?.question))
        .collect()
}

/// Cache file names for this chunk size and count.
fn cache_paths(args: &SearchBenchArgs, n: usize) -> (PathBuf, PathBuf) {
    let stem = format!("minilm-{}tok-{n}", args.chunk_tokens);
    (
        args.cache_dir.join(format!("{stem}.jsonl")),
        args.cache_dir.join(format!("{stem}.f32")),
    )
}

fn load_or_build(
    args: &SearchBenchArgs,
    embedder: &Embedder,
    wanted: usize,
) -> anyhow::Result<Corpus> {
    let (texts_path, vectors_path) = cache_paths(args, wanted);
    if let (Ok(texts), Ok(raw)) = (fs::read_to_string(&texts_path), fs::read(&vectors_path)) {
        let chunks: Vec<CachedChunk> = texts
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let floats: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if floats.len() == chunks.len() * DIMENSIONS {
            eprintln!("using cached chunks: {}", texts_path.display());
            let vectors = floats.chunks(DIMENSIONS).map(<[f32]>::to_vec).collect();
            return Ok(Corpus {
                chunks,
                vectors,
                embed_secs: 0.0,
            });
        }
    }
    let chunks = corpus_chunks(args, embedder, wanted)?;
    eprintln!("embedding {} chunks (cached afterwards)...", chunks.len());
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(chunks.len());
    for (i, batch) in chunks.chunks(EMBED_CALL).enumerate() {
        let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
        vectors.extend(embedder.embed_batch(&texts)?);
        if i % 10 == 9 {
            let done = vectors.len();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {done} embedded, {rate:.0}/s");
        }
    }
    let embed_secs = started.elapsed().as_secs_f64();
    fs::create_dir_all(&args.cache_dir)?;
    let mut texts = fs::File::create(&texts_path)?;
    for c in &chunks {
        writeln!(texts, "{}", serde_json::to_string(c)?)?;
    }
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    fs::write(&vectors_path, bytes)?;
    Ok(Corpus {
        chunks,
        vectors,
        embed_secs,
    })
}

/// Extracts the corpus and chunks it with the real chunker until `wanted` chunks are collected.
fn corpus_chunks(
    args: &SearchBenchArgs,
    embedder: &Embedder,
    wanted: usize,
) -> anyhow::Result<Vec<CachedChunk>> {
    let pipelines = Pipelines::load(None)?;
    let config = ChunkConfig {
        max_tokens: args.chunk_tokens,
        overlap_tokens: 0,
    };
    let count = |s: &str| embedder.count_tokens(s);
    let mut out = Vec::with_capacity(wanted);
    for path in crate::cli::ingest::collect(&args.corpus) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let bytes = fs::read(&path)?;
        let Ok(format) = detect(&bytes, &name) else {
            continue;
        };
        let Ok(doc) = extract_without_ocr(&pipelines, &bytes, format) else {
            continue;
        };
        for chunk in chunk_document(&doc, &config, &count)? {
            if chunk.text.split_whitespace().count() >= MIN_WORDS {
                out.push(CachedChunk {
                    text: chunk.text,
                    tokens: chunk.token_count as usize,
                    file: name.clone(),
                });
            }
        }
        eprintln!("{name}: {} chunks so far", out.len());
        if out.len() >= wanted {
            out.truncate(wanted);
            break;
        }
    }
    Ok(out)
}
