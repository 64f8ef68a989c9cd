//! Sentence embeddings with all-MiniLM-L6-v2 on candle (384 dimensions, mean pooling, L2-normalised).
//!
//! Design note — what runs where:
//! - [`Embedder`] is the pure core: tokenizer + BERT + pooling, no threads, no queues. It sorts its inputs by
//!   token length into sub-batches of at most `max_batch` rows (to limit padding) and restores the input order.
//! - [`EmbedderService::start`] loads an [`Embedder`] on its own OS thread (the *engine thread*) and returns an
//!   [`EmbedderHandle`]. Requests reach the engine through one bounded `std::sync::mpsc::sync_channel`; each
//!   carries its texts, its tracing span and a `tokio::sync::oneshot` reply.
//! - The engine thread blocks on the queue, then drains the requests already waiting (until it has `max_batch`
//!   texts), embeds them in one call and answers each. Model compute runs inside a dedicated rayon pool of
//!   exactly `threads` threads (candle's matmuls and the tokenizer use the current rayon pool); the sorted
//!   sub-batches are spread over those threads.
//! - Overload: [`EmbedderHandle::embed`] never waits for queue space; a full queue is [`EmbedError::Overloaded`]
//!   at once (503 + `Retry-After` upstream). [`EmbedderHandle::embed_blocking`] (for pipeline workers on
//!   blocking threads) waits for space instead: backpressure.
//! - Shutdown: [`EmbedderService::shutdown`] (or drop) queues a terminate message and joins the thread;
//!   requests queued behind it are dropped and their callers get [`EmbedError::ShutDown`].
//! - Nothing here takes a lock; the only blocking calls are the queue operations named above.
//!
//! - On the CPU the forward pass is [`cpu_bert`]: candle's matmuls with the steps between them fused into
//!   plain loops on the calling thread, so each compute thread embeds its own sub-batch without touching
//!   candle's process-wide element-wise "barrier pool" (which serialises concurrent callers). Other devices run
//!   candle-transformers' `BertModel`.

mod cpu_bert;
mod engine;
mod service;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use engine::{Embedder, TokenCounter};
pub use service::{EmbedderHandle, EmbedderInfo, EmbedderService};

use super::device::{DeviceError, DeviceSpec};

/// Name of the model, as reported by `/v1/models`.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// Directory of the model under `DOCPIPE_MODELS_DIR`.
pub const MODEL_DIR_NAME: &str = "all-minilm-l6-v2";
/// Dimensions of one embedding.
pub const DIMENSIONS: usize = 384;
/// The model's window in tokens, including `[CLS]` and `[SEP]` (sentence-transformers' `max_seq_length`);
/// longer inputs are truncated to it and reported as truncated.
pub const MAX_TOKENS: usize = 256;
/// Default number of texts per forward pass (sub-batch); small batches waste less on padding.
pub const DEFAULT_MAX_BATCH: usize = 32;
/// Default number of requests that may wait for the engine before new ones are refused as overloaded.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default limit of texts in one request (OpenAI's `/v1/embeddings` accepts up to 2048 inputs).
pub const DEFAULT_MAX_INPUTS_PER_REQUEST: usize = 2048;
/// Seconds a client should wait before retrying after [`EmbedError::Overloaded`].
pub const OVERLOAD_RETRY_AFTER_SECS: u64 = 1;

/// Errors of the embedding engine.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing or unreadable.
    #[error("embedding model file {path}: {source}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `config.json` does not describe a BERT model.
    #[error("embedding model config {path}: {source}")]
    ModelConfig {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("embedding tokenizer {path}: {message}")]
    TokenizerFile {
        /// The file.
        path: PathBuf,
        /// The tokenizer's error.
        message: String,
    },
    /// The weights do not fit the configured model.
    #[error("loading embedding weights: {0}")]
    Weights(#[source] candle_core::Error),
    /// The configured device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The embedding configuration is invalid.
    #[error("invalid embedding config: {0}")]
    InvalidConfig(String),
    /// Tokenizing an input failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("embedding inference failed: {0}")]
    Inference(String),
    /// The queue is full; retry after [`OVERLOAD_RETRY_AFTER_SECS`].
    #[error("the embedding engine is overloaded, retry later")]
    Overloaded,
    /// The request has more texts than allowed.
    #[error("too many inputs: {got}, at most {max} per request")]
    TooManyInputs {
        /// Texts in the request.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The engine thread has stopped.
    #[error("the embedding engine has shut down")]
    ShutDown,
    /// The engine thread could not be started.
    #[error("cannot start the embedding engine thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl From<candle_core::Error> for EmbedError {
    /// candle errors after loading are inference failures; the message is kept so one failure can be
    /// reported to every request of a batch.
    fn from(err: candle_core::Error) -> Self {
        Self::Inference(err.to_string())
    }
}

/// Configuration of the embedding engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedConfig {
    /// Directory holding `config.json`, `model.safetensors` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// Compute device.
    pub device: DeviceSpec,
    /// Compute threads of the engine's rayon pool (CPU only).
    pub threads: usize,
    /// Texts per forward pass.
    pub max_batch: usize,
    /// Requests that may wait in the queue.
    pub queue_capacity: usize,
    /// Texts allowed in one request.
    pub max_inputs_per_request: usize,
}

impl EmbedConfig {
    /// Defaults for the model found in `models_dir` (the `DOCPIPE_MODELS_DIR` directory).
    pub fn from_models_dir(models_dir: &Path) -> Self {
        Self {
            model_dir: models_dir.join(MODEL_DIR_NAME),
            device: DeviceSpec::Auto,
            threads: default_threads(),
            max_batch: DEFAULT_MAX_BATCH,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_inputs_per_request: DEFAULT_MAX_INPUTS_PER_REQUEST,
        }
    }

    /// Checks the numbers; the model files are checked when they load.
    pub fn validate(&self) -> Result<(), EmbedError> {
        let positive = [
            ("threads", self.threads),
            ("max_batch", self.max_batch),
            ("queue_capacity", self.queue_capacity),
            ("max_inputs_per_request", self.max_inputs_per_request),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(EmbedError::InvalidConfig(format!(
                "{name} must be at least 1"
            ))),
            None => Ok(()),
        }
    }
}

/// Default compute threads: every core on machines with up to [`super::SMALL_MACHINE_CORES`] cores (the CPU
/// forward pass does not spin-wait, so it shares cores well), else half the cores.
pub fn default_threads() -> usize {
    let cores = super::available_cores();
    if cores <= super::SMALL_MACHINE_CORES {
        cores
    } else {
        cores / 2
    }
}

/// One input's embedding and how its text fit the model's window.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// L2-normalised vector of [`DIMENSIONS`] values.
    pub vector: Vec<f32>,
    /// Tokens of the whole input, including `[CLS]` and `[SEP]`, before truncation.
    pub tokens: usize,
    /// The input had more than [`MAX_TOKENS`] tokens; only its first [`MAX_TOKENS`] were embedded.
    pub truncated: bool,
}

impl Embedding {
    /// Tokens that were actually embedded (at most [`MAX_TOKENS`]).
    pub fn embedded_tokens(&self) -> usize {
        self.tokens.min(MAX_TOKENS)
    }
}

/// The embeddings of one request, in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    /// One entry per input text.
    pub items: Vec<Embedding>,
}

impl Embeddings {
    /// Tokens embedded over all inputs (OpenAI's `usage.prompt_tokens`).
    pub fn embedded_tokens(&self) -> usize {
        self.items.iter().map(Embedding::embedded_tokens).sum()
    }

    /// Indices of the inputs that were truncated.
    pub fn truncated(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].truncated)
            .collect()
    }

    /// The vectors alone, in input order.
    pub fn into_vectors(self) -> Vec<Vec<f32>> {
        self.items.into_iter().map(|item| item.vector).collect()
    }
}
