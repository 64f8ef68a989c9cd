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

    /// The router's tiers and grounding budget (TOML like `pipelines/router.toml`, which is built in and used
    /// when this is unset).
    #[arg(long, env = "DOCPIPE_ROUTER_CONFIG")]
    pub router_config: Option<PathBuf>,

    /// Largest accepted upload in bytes (larger bodies get 413 before they are read).
    #[arg(long, env = "MAX_FILE_SIZE", default_value_t = 10 * 1024 * 1024)]
    pub max_file_size: u64,

    /// Largest document batch request (`POST /api/v1/batches`) in bytes, all parts together; also the most
    /// a ZIP archive in it may inflate to.
    #[arg(long, env = "DOCPIPE_MAX_BATCH_SIZE", default_value_t = 256 * 1024 * 1024)]
    pub max_batch_size: u64,

    /// Most files in one document batch (parts, or members of its ZIP archives); more: 400.
    #[arg(long, env = "DOCPIPE_MAX_BATCH_FILES", default_value_t = 1000)]
    pub max_batch_files: usize,

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

    /// Requests of an OpenAI batch run at once. Batch work yields to interactive requests: with 1, the chat
    /// engine interleaves one batch generation with the interactive ones.
    #[arg(long, env = "DOCPIPE_BATCH_CONCURRENCY", default_value_t = 1)]
    pub batch_concurrency: usize,

    /// Webhook deliveries to private, loopback and other reserved addresses: empty (refused, the default),
    /// `1` (all allowed), or a comma-separated list of CIDRs allowed.
    #[arg(long, env = "DOCPIPE_WEBHOOK_ALLOW_PRIVATE", default_value = "")]
    pub webhook_allow_private: String,

    /// Delays between webhook delivery attempts (after the first), e.g. `5s,5m,30m,2h,5h,10h,10h` (about a
    /// day, the default); a delivery that fails them all disables its endpoint.
    #[arg(long, env = "DOCPIPE_WEBHOOK_RETRY_SCHEDULE", default_value = crate::jobs::webhooks::DEFAULT_SCHEDULE)]
    pub webhook_retry_schedule: String,

    /// A PEM file of certificate authorities trusted for https webhook endpoints besides the system's (for
    /// receivers behind a private CA).
    #[arg(long, env = "DOCPIPE_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,

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

    /// Local chat models to load, comma-separated: `smollm2`, `qwen2.5-coder` (or their ids); `none` for none.
    #[arg(long, env = "DOCPIPE_CHAT_MODELS", default_value = crate::models::chat::registry::DEFAULT_MODELS)]
    pub chat_models: String,

    /// Compute threads of each chat model (default: 1 on machines with up to 2 cores, else all cores).
    #[arg(long, env = "DOCPIPE_CHAT_THREADS")]
    pub chat_threads: Option<usize>,

    /// Chat requests that may wait per model; more get 503 with `Retry-After`.
    #[arg(long, env = "DOCPIPE_CHAT_QUEUE", default_value_t = crate::models::chat::registry::DEFAULT_QUEUE)]
    pub chat_queue: usize,

    /// Generations each chat model advances together, one step each in turn (each keeps its own KV cache);
    /// further requests wait in the queue.
    #[arg(long, env = "DOCPIPE_CHAT_ACTIVE", default_value_t = crate::models::chat::registry::DEFAULT_ACTIVE)]
    pub chat_active: usize,

    /// KV cache memory each chat model may reserve for the generations it advances together, in MiB. A
    /// generation reserves its prompt plus `max_tokens`; one that does not fit beside those running waits for
    /// them (a single generation always runs: the context window bounds it).
    #[arg(long, env = "DOCPIPE_CHAT_KV_MB", default_value_t = crate::models::chat::registry::DEFAULT_KV_MB)]
    pub chat_kv_mb: usize,
    /// Admin API key. When set (here or as `API_KEY`), every route except `/health`, `/docs`, `/redoc` and
    /// `/openapi.json` needs a key (`X-API-Key: <key>` or `Authorization: Bearer <key>`); this one acts for
    /// tenant `default` with every scope and manages keys of all tenants. Unset: the server runs open.
    #[arg(long, env = "DOCPIPE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// The seed platform's name for `DOCPIPE_ADMIN_KEY` (used when that is unset).
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// Requests allowed per key (per client IP without a key) in each `RATE_LIMIT_WINDOW`; 0 turns the
    /// limit off.
    #[arg(long, env = "RATE_LIMIT_REQUESTS", default_value_t = 100)]
    pub rate_limit_requests: u32,

    /// The rate limit's window in seconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW", default_value_t = 60)]
    pub rate_limit_window: u64,

    /// Origins allowed to call the API from a browser (comma-separated, e.g. `https://app.example.com`).
    /// None by default; `*` is refused.
    #[arg(long, env = "DOCPIPE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Seconds a connection may stay silent (also while sending headers or a body) before it is closed.
    #[arg(long, env = "DOCPIPE_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub idle_timeout_secs: u64,

    /// Seconds a request has to send its headers, from a connection's opening or, on a kept-alive
    /// connection, from the request's first byte (a client trickling them a byte at a time is cut off).
    #[arg(long, env = "DOCPIPE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Longest time to receive a request body, in seconds (slow clients cannot hold a connection).
    #[arg(long, env = "DOCPIPE_BODY_TIMEOUT_SECS", default_value_t = 300)]
    pub body_timeout_secs: u64,

    /// Seconds the rest of an oversized request body is still read (and thrown away) after its 413, so a
    /// client that sends the whole body before reading the answer gets the 413 instead of a reset
    /// connection (0: close at once).
    #[arg(long, env = "DOCPIPE_OVERSIZE_LINGER_SECS", default_value_t = 5)]
    pub oversize_linger_secs: u64,

    /// Bytes beyond its limit an oversized request body may have and still be read to its end after the
    /// 413; a larger body is cut off at once.
    #[arg(long, env = "DOCPIPE_OVERSIZE_LINGER_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub oversize_linger_bytes: u64,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before the server stops anyway.
    #[arg(long, env = "DOCPIPE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
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

/// A secret setting: never printed (`Debug` shows `"***"`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Shortest admin key accepted.
const MIN_ADMIN_KEY_LEN: usize = 16;

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

/// Sizes candle's process-wide pool (`CANDLE_NUM_THREADS`, read once at its first use) when the operator has
/// not: to the embedding threads (`DOCPIPE_EMBED_THREADS`, else their default), since on the CPU only the
/// embedding model still runs candle ops. Unsized, candle picks the physical core count, and its spinning workers
/// halve throughput on a busy small machine. Call before any other thread exists.
pub fn init_candle_threads() {
    const CANDLE_THREADS_ENV: &str = "CANDLE_NUM_THREADS";
    if std::env::var_os(CANDLE_THREADS_ENV).is_some() {
        return;
    }
    let threads = std::env::var("DOCPIPE_EMBED_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(crate::models::embed::default_threads);
    set_env(CANDLE_THREADS_ENV, &threads.to_string());
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
        if self.max_batch_size < self.max_file_size {
            return invalid("DOCPIPE_MAX_BATCH_SIZE", "must be at least MAX_FILE_SIZE");
        }
        if self.max_batch_files == 0 {
            return invalid("DOCPIPE_MAX_BATCH_FILES", "must be greater than 0");
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
        if let Err(e) = crate::jobs::webhooks::AddressPolicy::parse(&self.webhook_allow_private) {
            return invalid("DOCPIPE_WEBHOOK_ALLOW_PRIVATE", &e);
        }
        if let Err(e) = crate::jobs::webhooks::parse_schedule(&self.webhook_retry_schedule) {
            return invalid("DOCPIPE_WEBHOOK_RETRY_SCHEDULE", &e);
        }
        if self.batch_concurrency == 0 || self.batch_concurrency > 64 {
            return invalid("DOCPIPE_BATCH_CONCURRENCY", "must be between 1 and 64");
        }
        if self.max_queued_files == 0 {
            return invalid("DOCPIPE_MAX_QUEUED_FILES", "must be greater than 0");
        }
        if let Err(reason) = crate::models::chat::registry::parse_list(&self.chat_models) {
            return invalid("DOCPIPE_CHAT_MODELS", &reason);
        }
        if self.chat_threads == Some(0) {
            return invalid("DOCPIPE_CHAT_THREADS", "must be at least 1");
        }
        if self.chat_queue == 0 {
            return invalid("DOCPIPE_CHAT_QUEUE", "must be at least 1");
        }
        if self.chat_active == 0 {
            return invalid("DOCPIPE_CHAT_ACTIVE", "must be at least 1");
        }
        if self.chat_kv_mb == 0 {
            return invalid("DOCPIPE_CHAT_KV_MB", "must be at least 1");
        }
        if self.rate_limit_window == 0 {
            return invalid("RATE_LIMIT_WINDOW", "must be greater than 0");
        }
        if self.cors_origins.iter().any(|o| o.trim() == "*") {
            return invalid(
                "DOCPIPE_CORS_ORIGINS",
                "`*` is not allowed: list the origins that may call the API",
            );
        }
        if self
            .admin_key()
            .is_some_and(|k| k.len() < MIN_ADMIN_KEY_LEN)
        {
            return invalid("DOCPIPE_ADMIN_KEY", "must have at least 16 characters");
        }
        Ok(())
    }

    /// Compute threads of each chat model: `DOCPIPE_CHAT_THREADS`, else
    /// [`crate::models::chat::registry::default_threads`].
    pub fn chat_compute_threads(&self) -> usize {
        self.chat_threads
            .unwrap_or_else(crate::models::chat::registry::default_threads)
    }

    /// The admin key (`DOCPIPE_ADMIN_KEY`, else `API_KEY`), when one is set and not empty.
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key
            .as_ref()
            .or(self.api_key.as_ref())
            .map(|s| s.0.as_str())
            .filter(|s| !s.is_empty())
    }

    /// `host:port` to bind.
    pub fn listen_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
