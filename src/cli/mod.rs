//! The `docpipe` command: `serve`, `reindex`, `openapi`, `ingest`, `bench`, `models`. One file per
//! subcommand; `src/main.rs` only calls [`main`].

mod bench;
pub mod ingest;
mod models;
mod openapi;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, Config};

/// docpipe: upload files, get their text with locations.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// TOML file with settings (keys are the long flag names); flags and env override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Config,
    },
    /// Print the OpenAPI document (or write it to a file).
    Openapi {
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Rebuild the search indexes from the database, re-embedding every chunk (after a model change).
    /// Run it with the server stopped.
    Reindex {
        #[command(flatten)]
        settings: Config,
    },
    /// Benchmarks (run by `make bench`).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Model files: conversions done once after `make models`.
    Models {
        #[command(subcommand)]
        which: ModelsCommand,
    },
    /// Upload files and folders to a running server and wait for them to be processed.
    Ingest {
        /// The server's base URL.
        #[arg(long, env = "DOCPIPE_SERVER", default_value = "http://localhost:8001")]
        server: String,
        /// API key (with the `write` scope) when the server requires keys.
        #[arg(long, env = "DOCPIPE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Files and folders (folders are walked recursively; hidden files are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Convert Whisper tiny.en from CTranslate2 (`model.bin`) to the ggml file whisper.cpp loads.
    ConvertWhisper {
        /// Directory holding the model files.
        #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
        models_dir: PathBuf,
        /// Convert even when the ggml file exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// What extraction in a worker process costs per file against extraction in this process (OCR off).
    Isolation {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Folders or files to extract.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
    },
    /// Embedding throughput (sentences/s of ~20-word sentences) at batch 32 and 256 with 1 and 2 threads.
    Embed {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the model files.
        #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
        models_dir: PathBuf,
        /// Sentences per round.
        #[arg(long, default_value_t = 512)]
        sentences: usize,
        /// Also write the sentences, one per line (for the sentence-transformers peer).
        #[arg(long)]
        dump_sentences: Option<PathBuf>,
    },
    /// Search speed at 100,000 real chunks: HNSW recall and latency against exact search, BM25 and hybrid.
    Search {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the model files.
        #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
        models_dir: PathBuf,
        /// Where embedded chunks are cached between runs.
        #[arg(long)]
        cache_dir: PathBuf,
        /// Chunks to index.
        #[arg(long, default_value_t = 100_000)]
        chunks: usize,
        /// Held-out chunks used as queries.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Chunk size in tokens (36 cuts the bundled PDF corpus into just over 100,500 chunks).
        #[arg(long, default_value_t = 36)]
        chunk_tokens: usize,
        /// Embedding threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// The retrieval benchmark's questions, also used as queries.
        #[arg(long)]
        questions: Option<PathBuf>,
        /// Folders with the PDF corpus.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
    },
    /// Local chat model speed: prompt processing, decoding, time to first token, concurrent clients.
    Chat {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the model files.
        #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
        models_dir: PathBuf,
        /// Models to measure (catalog keys or ids).
        #[arg(long, value_delimiter = ',', default_value = "smollm2,qwen2.5-coder")]
        models: Vec<String>,
        /// Compute threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Prompt tokens of the prompt-processing measurement.
        #[arg(long, default_value_t = 300)]
        prompt_tokens: usize,
        /// Tokens decoded per measurement and per client.
        #[arg(long, default_value_t = 128)]
        decode_tokens: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Repetitions (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Folder for the workload the llama.cpp peer replays.
        #[arg(long)]
        workload_dir: PathBuf,
    },
    /// Transcription real-time factor per file and beam width, with transcripts and peak RSS.
    Asr {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the model files.
        #[arg(long, env = "DOCPIPE_MODELS_DIR", default_value = "./models")]
        models_dir: PathBuf,
        /// whisper.cpp threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Beam widths to measure (1 = greedy).
        #[arg(long, value_delimiter = ',', default_value = "5,1")]
        beams: Vec<usize>,
        /// Audio files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Extraction throughput per format, and PDF speed and word F1 against pdftotext in the same run.
    Extract {
        /// Write the JSON report here.
        #[arg(long)]
        out: PathBuf,
        /// Also write each PDF's text (ours and pdftotext's) and its word F1 into this folder.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Folders of files to extract.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
    },
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    // `docpipe extract-worker`: the hidden extraction worker process (before any CLI parsing or runtime).
    if let Some(code) = crate::pipeline::isolate::main_if_worker() {
        return code;
    }
    // A config file must be applied to the environment before clap reads it.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--config")
        && let Some(path) = args.get(i + 1)
        && let Err(e) = config::apply_config_file(PathBuf::from(path).as_path(), &serve_command())
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    config::init_candle_threads();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_command() -> clap::Command {
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("the serve subcommand exists. This is a bug.")
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { settings, .. } => serve::run(settings).await,
        Command::Reindex { settings } => serve::reindex(settings).await,
        Command::Openapi { output } => openapi::run(output).map(|()| ExitCode::SUCCESS),
        Command::Bench { which } => bench::run(which).await,
        Command::Models { which } => models::run(which).await,
        Command::Ingest {
            server,
            api_key,
            paths,
        } => ingest::command(&server, api_key.as_deref(), &paths).await,
    }
}
