//! Speech recognition with Whisper tiny.en on whisper.cpp (through `whisper-rs`).
//!
//! Design note — what runs where:
//! - The model ships in CTranslate2 format; [`convert`] turns it once into whisper.cpp's ggml file
//!   (`docpipe models convert-whisper`, or [`ensure_ggml`] at server start when the file is missing).
//! - [`AsrService::start`] loads the model on its own OS thread (the *engine thread*), which owns the whisper
//!   context and one decoding state, and returns a cloneable [`AsrHandle`]. Requests reach it through one
//!   bounded `std::sync::mpsc::sync_channel` of capacity `queue`; each carries 16 kHz mono samples, options,
//!   an optional progress callback and a `tokio::sync::oneshot` reply. One request runs at a time, on
//!   exactly `threads` whisper threads (its default oversubscribes small machines badly).
//! - Overload: [`AsrHandle::transcribe`] (HTTP) never waits for queue space: a full queue is
//!   [`AsrError::Overloaded`] (503 + `Retry-After`). [`AsrHandle::transcribe_blocking`] (pipeline workers, on
//!   their own threads) waits for space instead.
//! - Cancellation: a request may carry a deadline; whisper.cpp's abort callback checks it between decoder
//!   steps, so a timed-out file stops using the CPU.
//! - Shutdown: [`AsrService::shutdown`] (or drop) queues a terminate message and joins the thread.
//! - No locks are taken here; the only blocking calls are the queue operations named above.

pub mod convert;
pub mod ct2;
mod engine;
pub mod mel;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use engine::{AsrHandle, AsrService};

/// Name of the model, as reported by the API.
pub const MODEL_NAME: &str = "whisper-tiny.en";
/// Directory of the CTranslate2 model under `DOCPIPE_MODELS_DIR`.
pub const CT2_DIR_NAME: &str = "whisper-tiny-en-ct2";
/// The converted ggml model, inside [`CT2_DIR_NAME`]; the name carries the weight encoding, so a cache
/// converted with another one is converted again rather than reused.
pub const GGML_FILE_NAME: &str = "ggml-tiny.en-q8_0.bin";
/// Encoding of the converted model's weight matrices.
pub const GGML_WEIGHTS: convert::Encoding = convert::Encoding::Q8_0;
/// Sample rate of the audio the engine takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// The only language of tiny.en.
pub const LANGUAGE: &str = "en";
/// Default beam width: beam search halved WER on long synthetic speech for ~30 % more time.
pub const DEFAULT_BEAM_SIZE: usize = 5;
/// Default number of requests that may wait for the engine.
pub const DEFAULT_QUEUE: usize = 4;
/// Seconds a client should wait before retrying after [`AsrError::Overloaded`].
pub const OVERLOAD_RETRY_AFTER_SECS: u64 = 5;

/// Errors of the transcription engine.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model could not be converted.
    #[error("cannot convert the Whisper model: {0}")]
    Convert(#[from] convert::ConvertError),
    /// whisper.cpp could not load the model.
    #[error("cannot load the Whisper model {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// The configuration is invalid.
    #[error("invalid transcription config: {0}")]
    InvalidConfig(String),
    /// The language is not one the model knows.
    #[error("language {0:?} is not supported by {MODEL_NAME} (English only)")]
    Language(String),
    /// Decoding failed inside whisper.cpp.
    #[error("transcription failed: {0}")]
    Inference(String),
    /// The request's deadline passed.
    #[error("transcription took longer than allowed")]
    Timeout,
    /// The queue is full; retry after [`OVERLOAD_RETRY_AFTER_SECS`].
    #[error("the transcription engine is overloaded, retry later")]
    Overloaded,
    /// The engine thread has stopped.
    #[error("the transcription engine has shut down")]
    ShutDown,
    /// The engine thread could not be started.
    #[error("cannot start the transcription engine thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsrConfig {
    /// The ggml model file.
    pub model: PathBuf,
    /// whisper.cpp threads per request.
    pub threads: usize,
    /// Beam width (1 = greedy).
    pub beam_size: usize,
    /// Requests that may wait.
    pub queue: usize,
    /// Run on the GPU when built with `cuda`.
    pub use_gpu: bool,
}

impl AsrConfig {
    /// Defaults for the model in `models_dir`.
    pub fn from_models_dir(models_dir: &Path) -> AsrConfig {
        AsrConfig {
            model: models_dir.join(CT2_DIR_NAME).join(GGML_FILE_NAME),
            threads: default_threads(),
            beam_size: DEFAULT_BEAM_SIZE,
            queue: DEFAULT_QUEUE,
            use_gpu: false,
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), AsrError> {
        if self.threads == 0 || self.beam_size == 0 || self.queue == 0 {
            return Err(AsrError::InvalidConfig(
                "threads, beam size and queue must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Default whisper threads: 1 on machines with up to 2 cores, else half the cores (at most 4). ggml's threads
/// wait for each other in spin loops, so a thread without a core of its own stalls all of them: on 2 shared
/// cores, 2 threads measured ~10x slower than 1 while other work ran (`bench/asr.sh`).
pub fn default_threads() -> usize {
    let cores = super::available_cores();
    if cores <= super::SMALL_MACHINE_CORES {
        1
    } else {
        (cores / 2).min(4)
    }
}

/// Converts the CTranslate2 model next to `ggml` into `ggml` unless it already exists.
pub fn ensure_ggml(ggml: &Path) -> Result<bool, AsrError> {
    if ggml.is_file() {
        return Ok(false);
    }
    let dir = ggml
        .parent()
        .ok_or_else(|| AsrError::InvalidConfig(format!("{} has no folder", ggml.display())))?;
    tracing::info!(from = %dir.display(), to = %ggml.display(), "converting the Whisper model to ggml");
    convert::convert_dir(dir, ggml, GGML_WEIGHTS)?;
    Ok(true)
}

/// Options of one transcription.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// ISO-639-1 language; only `en` (or none) is accepted by tiny.en.
    pub language: Option<String>,
    /// Text that conditions the decoder (names, spelling, the previous block's words).
    pub prompt: Option<String>,
    /// Sampling temperature; 0 = deterministic decoding (with whisper.cpp's fallback on failure).
    pub temperature: f32,
    /// Beam width override (else the engine's default).
    pub beam_size: Option<usize>,
    /// Also compute word timings.
    pub word_timestamps: bool,
    /// Give up after this instant.
    pub deadline: Option<Instant>,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            language: None,
            prompt: None,
            temperature: 0.0,
            beam_size: None,
            word_timestamps: false,
            deadline: None,
        }
    }
}

/// Progress callback: percent of the given audio done.
pub type ProgressFn = Box<dyn FnMut(i32) + Send>;

/// A timed word.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// A timed piece of transcript (times in seconds from the start of the audio given).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// Text token ids (no special tokens).
    pub tokens: Vec<i32>,
    /// Mean log-probability of the tokens.
    pub avg_logprob: f64,
    /// Probability that the window holds no speech.
    pub no_speech_prob: f64,
    /// Word timings, when asked for.
    pub words: Vec<Word>,
}

impl Segment {
    /// The same segment moved `offset` seconds later.
    pub fn shifted(mut self, offset: f64) -> Segment {
        self.start += offset;
        self.end += offset;
        for w in &mut self.words {
            w.start += offset;
            w.end += offset;
        }
        self
    }
}

/// The engine's answer for one piece of audio.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    pub segments: Vec<Segment>,
}

/// Whether a segment's text is only whisper.cpp's annotation of a stretch without speech, such as
/// `[BLANK_AUDIO]`, `[MUSIC PLAYING]` or `(silence)`: a bracketed run of capitals, or a parenthesized word
/// of the few whisper writes for silence. Such a segment is dropped, so silent audio yields no text.
pub fn is_non_speech_marker(text: &str) -> bool {
    let t = text.trim();
    let inner = |open: char, close: char| {
        t.strip_prefix(open)
            .and_then(|r| r.strip_suffix(close))
            .map(str::trim)
    };
    if let Some(inner) = inner('[', ']') {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == ' ');
    }
    if let Some(inner) = inner('(', ')') {
        return matches!(
            inner.to_ascii_lowercase().as_str(),
            "silence" | "blank audio" | "no speech" | "music" | "inaudible"
        );
    }
    false
}

#[cfg(test)]
mod marker_tests {
    use super::is_non_speech_marker;

    #[test]
    fn whisper_annotations_of_silence_are_markers_and_speech_is_not() {
        for m in [
            "[BLANK_AUDIO]",
            " [BLANK_AUDIO] ",
            "[MUSIC PLAYING]",
            "(silence)",
            "( Silence )",
        ] {
            assert!(is_non_speech_marker(m), "{m}");
        }
        for s in [
            "And so, my fellow Americans",
            "[1] see the note",
            "[Applause] thank you",
            "(laughs) that is funny",
            "[]",
            "",
        ] {
            assert!(!is_non_speech_marker(s), "{s}");
        }
    }
}
