//! Correctness tests against sentence-transformers' vectors (`fixtures/embeddings/`), plus the engine thread.
//! They need the model files (`make models`; CI fetches them) and skip with a note when they are absent.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::*;
use crate::bench::embed::{bench_sentences, bench_throughput};
use crate::models::device::DeviceSpec;

/// Cosine similarity every reference sentence must reach.
const REFERENCE_MIN_COSINE: f32 = 0.999;
/// Cosine similarity between one text embedded alone and inside a mixed batch.
const BATCH_MIN_COSINE: f32 = 0.9999;
/// Tolerance of the pair similarities quoted in MODELS.md.
const PAIR_TOLERANCE: f32 = 0.001;
const REFERENCE_FILE: &str = "fixtures/embeddings/minilm_reference.json";

#[derive(Deserialize)]
struct Reference {
    items: Vec<ReferenceItem>,
}

#[derive(Deserialize)]
struct ReferenceItem {
    text: String,
    n_tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE_FILE);
    let text = std::fs::read_to_string(&path).expect("reference fixture is committed");
    serde_json::from_str(&text).expect("reference fixture parses")
}

/// `DOCPIPE_MODELS_DIR` (default `<crate>/models`) + the model's directory, if its files are there.
fn model_dir() -> Option<PathBuf> {
    let base = std::env::var_os("DOCPIPE_MODELS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
        PathBuf::from,
    );
    let dir = base.join(MODEL_DIR_NAME);
    if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "note: skipping embedding test, no model in {} (run `make models`)",
            dir.display()
        );
        None
    }
}

/// One embedder shared by the tests of the pure core (loading costs ~0.3 s).
fn embedder() -> Option<&'static Embedder> {
    static EMBEDDER: OnceLock<Option<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            model_dir().map(|dir| Embedder::load(&dir, &Device::Cpu, DEFAULT_MAX_BATCH).unwrap())
        })
        .as_ref()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn long_text() -> String {
    "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(30)
}

#[test]
fn matches_sentence_transformers_reference() {
    let Some(embedder) = embedder() else { return };
    let reference = reference();
    assert_eq!(reference.items.len(), 50);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let embeddings = embedder.embed_detailed(&texts).unwrap();
    let mut worst = f32::MAX;
    for (item, got) in reference.items.iter().zip(&embeddings.items) {
        assert_eq!(got.vector.len(), DIMENSIONS);
        let norm: f32 = got.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        let similarity = cosine(&item.embedding, &got.vector);
        assert!(
            similarity >= REFERENCE_MIN_COSINE,
            "cosine {similarity} for {:?}",
            item.text
        );
        worst = worst.min(similarity);
        assert_eq!(got.tokens, item.n_tokens, "token count of {:?}", item.text);
        assert_eq!(embedder.count_tokens(&item.text), item.n_tokens);
        assert!(!got.truncated);
    }
    eprintln!("lowest cosine vs sentence-transformers: {worst:.6}");
}

#[test]
fn pair_similarities_match_models_md() {
    let Some(embedder) = embedder() else { return };
    let vectors = embedder
        .embed_batch(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A plane is taking off.",
        ])
        .unwrap();
    let close = cosine(&vectors[0], &vectors[1]);
    let far = cosine(&vectors[0], &vectors[2]);
    assert!((close - 0.7553).abs() <= PAIR_TOLERANCE, "{close}");
    assert!((far - 0.0383).abs() <= PAIR_TOLERANCE, "{far}");
}

#[test]
fn batching_and_order_do_not_change_vectors() {
    let Some(dir) = model_dir() else { return };
    // A small sub-batch size makes the mixed batch span several sorted forward passes.
    let embedder = Embedder::load(&dir, &Device::Cpu, 3).unwrap();
    let long = long_text();
    let texts = [
        "A man is eating food.",
        long.as_str(),
        "",
        "Rust",
        "The council will discuss the budget for schools, hospitals and roads next week.",
        "A plane is taking off.",
        "Une phrase en français, avec des accents: été, à, où.",
        "数字 12345 and emoji 🚀 in one line",
    ];
    let together = embedder.embed_batch(&texts).unwrap();
    assert_eq!(together.len(), texts.len());
    for (text, in_batch) in texts.iter().zip(&together) {
        let alone = embedder.embed_batch(&[text]).unwrap();
        let similarity = cosine(&alone[0], in_batch);
        assert!(similarity >= BATCH_MIN_COSINE, "{similarity} for {text:?}");
    }
    assert!(embedder.embed_batch(&[]).unwrap().is_empty());
}

#[test]
fn long_input_is_truncated_and_reported() {
    let Some(dir) = model_dir() else { return };
    let Some(embedder) = embedder() else { return };
    let long = long_text();
    let tokens = embedder.count_tokens(&long);
    assert!(tokens > MAX_TOKENS, "{tokens}");
    let result = embedder
        .embed_detailed(&["short one", long.as_str()])
        .unwrap();
    assert_eq!(result.truncated(), vec![1]);
    assert_eq!(result.items[1].tokens, tokens);
    assert_eq!(result.items[1].embedded_tokens(), MAX_TOKENS);
    assert!(!result.items[0].truncated);
    assert_eq!(
        result.embedded_tokens(),
        result.items[0].tokens + MAX_TOKENS
    );

    // The engine's own cut must equal the tokenizer's truncation at 256 with batch-longest padding.
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..PaddingParams::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..TruncationParams::default()
        }))
        .unwrap();
    let expected = tokenizer.encode(long.as_str(), true).unwrap();
    let ours = embedder.tokenize(&[long.as_str()]).unwrap();
    assert_eq!(ours[0].ids, expected.get_ids());

    // Text past the window does not change the vector.
    let longer = format!("{long} and then something completely different about aeroplanes");
    let vectors = embedder.embed_batch(&[&long, &longer]).unwrap();
    assert!(cosine(&vectors[0], &vectors[1]) >= BATCH_MIN_COSINE);
}

fn service_config(dir: &Path) -> EmbedConfig {
    EmbedConfig {
        device: DeviceSpec::Cpu,
        threads: 1,
        ..EmbedConfig::from_models_dir(dir.parent().expect("model dir has a parent"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_all_answer_correctly() {
    let Some(dir) = model_dir() else { return };
    let service = EmbedderService::start(service_config(&dir)).unwrap();
    let handle = service.handle();
    let reference = reference();
    let calls = (0..8).map(|call| {
        let handle = handle.clone();
        // Each call gets a different slice of the reference sentences (1 to 6 texts).
        let items: Vec<&ReferenceItem> = reference
            .items
            .iter()
            .skip(call * 6)
            .take(call % 6 + 1)
            .collect();
        let texts: Vec<String> = items.iter().map(|item| item.text.clone()).collect();
        let expected: Vec<Vec<f32>> = items.iter().map(|item| item.embedding.clone()).collect();
        tokio::spawn(async move { (handle.embed(texts).await, expected) })
    });
    for joined in futures::future::join_all(calls).await {
        let (result, expected) = joined.unwrap();
        let result = result.unwrap();
        assert_eq!(result.items.len(), expected.len());
        for (got, want) in result.items.iter().zip(&expected) {
            assert!(cosine(&got.vector, want) >= REFERENCE_MIN_COSINE);
        }
    }
    assert!(handle.embed(Vec::new()).await.unwrap().items.is_empty());
    let info = handle.info();
    assert_eq!(
        (info.dimensions, info.max_tokens, info.device.as_str()),
        (384, 256, "cpu")
    );
    service.shutdown();
    assert!(matches!(
        handle.embed(vec!["after shutdown".to_owned()]).await,
        Err(EmbedError::ShutDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_fast_and_limits_apply() {
    let Some(dir) = model_dir() else { return };
    let config = EmbedConfig {
        queue_capacity: 1,
        max_inputs_per_request: 64,
        ..service_config(&dir)
    };
    let service = EmbedderService::start(config).unwrap();
    let handle = service.handle();
    let texts = bench_sentences(64);
    // All calls try to queue at once; the engine is busy with the first, the queue holds one more.
    let calls = (0..20).map(|_| handle.embed(texts.clone()));
    let results = futures::future::join_all(calls).await;
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EmbedError::Overloaded)))
        .count();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded >= 1, "no call was refused");
    assert!(answered >= 1, "no call was answered");
    assert_eq!(overloaded + answered, results.len());

    let too_many = handle.embed(bench_sentences(65)).await;
    assert!(matches!(
        too_many,
        Err(EmbedError::TooManyInputs { got: 65, max: 64 })
    ));

    // Pipeline workers wait for queue space instead of failing.
    let blocking = handle.clone();
    let answered = tokio::task::spawn_blocking(move || blocking.embed_blocking(bench_sentences(3)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered.items.len(), 3);
    drop(service);
}

#[test]
fn config_is_validated() {
    let config = EmbedConfig::from_models_dir(Path::new("/nonexistent"));
    assert_eq!(config.max_batch, DEFAULT_MAX_BATCH);
    assert!(config.validate().is_ok());
    let zero_threads = EmbedConfig {
        threads: 0,
        ..config.clone()
    };
    assert!(
        matches!(zero_threads.validate(), Err(EmbedError::InvalidConfig(m)) if m.contains("threads"))
    );
    let missing = EmbedderService::start(EmbedConfig {
        device: DeviceSpec::Cpu,
        ..config
    });
    assert!(matches!(missing, Err(EmbedError::ModelFile { .. })));
}

#[test]
fn bench_sentences_are_about_twenty_words() {
    let sentences = bench_sentences(4);
    assert_eq!(sentences, bench_sentences(4), "deterministic");
    for sentence in &sentences {
        assert_eq!(sentence.split_whitespace().count(), 20);
    }
}

/// `cargo test --release --lib models::embed::tests::bench_embed_throughput -- --ignored --nocapture`;
/// `DOCPIPE_BENCH_SENTENCES` sets the sentences per round (default 512). Set `CANDLE_NUM_THREADS` to the
/// thread count being measured (candle's element-wise pool is sized once per process).
#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_embed_throughput() {
    let Some(dir) = model_dir() else { return };
    let sentences = std::env::var("DOCPIPE_BENCH_SENTENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    let results = bench_throughput(&dir, sentences, &[32, 256], &[1, 2], 3).unwrap();
    eprintln!(
        "CANDLE_NUM_THREADS={:?}",
        std::env::var("CANDLE_NUM_THREADS").ok()
    );
    for r in results {
        eprintln!(
            "batch {:>3} threads {}: {:>7.1} sentences/s ({} in {:.2} s), {:>6.1} sentences per CPU-second",
            r.max_batch,
            r.threads,
            r.sentences_per_sec,
            r.sentences,
            r.seconds,
            r.sentences_per_cpu_sec.unwrap_or(f64::NAN)
        );
    }
}
