//! One `Config` for the server: command-line flags, each with an environment variable, and an optional
//! TOML file (`--config docpipe.toml`) whose keys are the long flag names. Precedence: flag > env > file > default.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What to do with embedding inputs longer than the model's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Overflow {
    /// Embed the first tokens that fit and report the truncation.
    #[default]
    Truncate,
    /// Refuse the request with 400.
    Reject,
}

/// Server settings. Every field is also read from its environment variable.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "DOCPIPE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "DOCPIPE_PORT", default_value_t = 8001)]
    pub port: u16,

    /// Directory for the database, blobs and indexes (created when missing).
    #[arg(long, env = "DOCPIPE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Directory holding the model files fetched by `make models`.
    #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
    pub models_dir: PathBuf,

    /// Directory of pipeline definitions (`pdf.toml`, `office.toml`, ...). When unset, the definitions built
    /// into the binary (the repository's `pipelines/`) are used.
    #[arg(long, env = "DOCPIPE_PIPELINES_DIR")]
    pub pipelines_dir: Option<PathBuf>,

    /// Largest accepted upload in bytes (larger bodies get 413 before they are read).
    #[arg(long, env = "MAX_FILE_SIZE", default_value_t = 10 * 1024 * 1024)]
    pub max_file_size: u64,

    /// Files extracted in parallel. Each extraction is CPU-bound, so more workers than cores only adds latency.
    #[arg(long, env = "DOCPIPE_INGEST_WORKERS", default_value_t = 2)]
    pub ingest_workers: usize,

    /// Most files waiting for extraction; uploads beyond it get 503 with `Retry-After`.
    #[arg(long, env = "DOCPIPE_MAX_QUEUED_FILES", default_value_t = 1000)]
    pub max_queued_files: u64,

    /// Longest `?wait=true` on upload, in seconds.
    #[arg(long, env = "DOCPIPE_MAX_WAIT_SECS", default_value_t = 300)]
    pub max_wait_secs: u64,

    /// Compute device for the models: `auto` (a GPU when built with the `cuda` feature and one exists), `cpu`,
    /// or `cuda:N`.
    #[arg(long, env = "DOCPIPE_DEVICE", default_value = "auto")]
    pub device: String,

    /// Compute threads of the embedding model (default: 1 on machines with up to 2 cores, else half the cores).
    #[arg(long, env = "DOCPIPE_EMBED_THREADS")]
    pub embed_threads: Option<usize>,

    /// Inputs allowed in one `/v1/embeddings` request (more: 400).
    #[arg(long, env = "DOCPIPE_EMBED_MAX_INPUTS", default_value_t = 2048)]
    pub embed_max_inputs: usize,

    /// Tokens allowed in one `/v1/embeddings` request over all inputs (more: 413).
    #[arg(
        long,
        env = "DOCPIPE_EMBED_MAX_TOTAL_TOKENS",
        default_value_t = 300_000
    )]
    pub embed_max_total_tokens: usize,

    /// What `/v1/embeddings` does with an input longer than the model's 256-token window: `truncate` (embed
    /// the first 256 tokens and report it in the `X-Truncated-Inputs` header) or `reject` (400).
    #[arg(long, env = "DOCPIPE_EMBED_OVERFLOW", value_enum, default_value_t = Overflow::Truncate)]
    pub embed_overflow: Overflow,

    /// whisper.cpp threads of the speech recognition engine (default: 1 on machines with up to 2 cores, else
    /// half the cores, at most 4; threads without a free core slow it down badly).
    #[arg(long, env = "DOCPIPE_ASR_THREADS")]
    pub asr_threads: Option<usize>,

    /// Beam width of speech recognition (1 = greedy: ~25 % faster, about twice the word errors on hard audio).
    #[arg(long, env = "DOCPIPE_ASR_BEAM_SIZE", default_value_t = crate::models::asr::DEFAULT_BEAM_SIZE)]
    pub asr_beam_size: usize,

    /// Transcriptions that may wait for the engine; `/v1/audio/transcriptions` beyond it gets 503.
    #[arg(long, env = "DOCPIPE_ASR_QUEUE", default_value_t = crate::models::asr::DEFAULT_QUEUE)]
    pub asr_queue: usize,

    /// Log level filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: key {key} must be a string, number or boolean")]
    BadValue { path: PathBuf, key: String },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Loads `path` (TOML with the long flag names as keys, e.g. `port = 8001`, `max_file_size = 1048576`) and
/// exports each key as the flag's environment variable unless that variable is already set, so that clap's
/// env handling gives the file a lower precedence than the environment.
pub fn apply_config_file(path: &Path, command: &clap::Command) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::BadValue {
                    path: path.to_owned(),
                    key,
                });
            }
        };
        let flag = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .ok_or_else(|| ConfigError::Invalid {
                key: "config",
                reason: format!("unknown key `{key}` in {}", path.display()),
            })?;
        if let Some(env) = arg.get_env().and_then(|e| e.to_str())
            && std::env::var_os(env).is_none()
        {
            set_env(env, &value);
        }
    }
    Ok(())
}

#[expect(
    unsafe_code,
    reason = "set_var is unsafe in edition 2024; called before any other thread exists"
)]
fn set_env(key: &str, value: &str) {
    // SAFETY: start-up is single-threaded at this point (the runtime is not yet built).
    unsafe { std::env::set_var(key, value) };
}

impl Config {
    /// Checks values that clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.max_file_size == 0 {
            return invalid("MAX_FILE_SIZE", "must be greater than 0");
        }
        if self.ingest_workers == 0 || self.ingest_workers > 64 {
            return invalid("DOCPIPE_INGEST_WORKERS", "must be between 1 and 64");
        }
        if self.asr_threads.is_some_and(|t| t == 0 || t > 64) {
            return invalid("DOCPIPE_ASR_THREADS", "must be between 1 and 64");
        }
        if self.asr_beam_size == 0 || self.asr_beam_size > 16 {
            return invalid("DOCPIPE_ASR_BEAM_SIZE", "must be between 1 and 16");
        }
        if self.asr_queue == 0 {
            return invalid("DOCPIPE_ASR_QUEUE", "must be greater than 0");
        }
        if self.max_queued_files == 0 {
            return invalid("DOCPIPE_MAX_QUEUED_FILES", "must be greater than 0");
        }
        Ok(())
    }

    /// `host:port` to bind.
    pub fn listen_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
