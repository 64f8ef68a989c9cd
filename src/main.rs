//! The `docpipe` command: `serve`, `openapi`, `ingest`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use docpipe::app::App;
use docpipe::config::{self, Config};
use docpipe::{api, ingest_cli, telemetry};
use poem::listener::Listener as _;

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
enum ModelsCommand {
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
enum BenchCommand {
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

fn main() -> ExitCode {
    // `docpipe extract-worker`: the hidden extraction worker process (before any CLI parsing or runtime).
    if let Some(code) = docpipe::pipeline::isolate::main_if_worker() {
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
        Command::Serve { settings, .. } => serve(settings).await,
        Command::Openapi { output } => {
            let spec = openapi_spec().await?;
            match output {
                Some(path) => std::fs::write(&path, spec + "\n")
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{spec}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex { settings } => {
            telemetry::init(&settings.log_level, settings.log_format);
            let n = docpipe::app::reindex(settings).await?;
            println!("reindexed {n} chunks");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                BenchCommand::Embed {
                    out,
                    models_dir,
                    sentences,
                    dump_sentences,
                },
        } => {
            if let Some(path) = dump_sentences {
                let text = docpipe::models::embed::bench_sentences(sentences).join("\n");
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let dir = models_dir.join(docpipe::models::embed::MODEL_DIR_NAME);
            let results = tokio::task::spawn_blocking(move || {
                docpipe::models::embed::bench_throughput(&dir, sentences, &[32, 256], &[1, 2], 3)
            })
            .await??;
            write_report(&out, &results)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                BenchCommand::Chat {
                    out,
                    models_dir,
                    models,
                    threads,
                    prompt_tokens,
                    decode_tokens,
                    clients,
                    rounds,
                    workload_dir,
                },
        } => {
            let args = docpipe::bench::chat::ChatBenchArgs {
                models_dir,
                models,
                threads,
                prompt_tokens,
                decode_tokens,
                clients,
                rounds,
                workload_dir,
            };
            let report =
                tokio::task::spawn_blocking(move || docpipe::bench::chat::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                BenchCommand::Asr {
                    out,
                    models_dir,
                    threads,
                    beams,
                    files,
                },
        } => {
            let args = docpipe::bench::asr::AsrBenchArgs {
                models_dir,
                threads,
                beams,
                files,
            };
            let report =
                tokio::task::spawn_blocking(move || docpipe::bench::asr::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: BenchCommand::Isolation { out, corpus },
        } => {
            let report = docpipe::bench::isolation::run(&corpus).await?;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: BenchCommand::Extract { out, dump, corpus },
        } => {
            let report = tokio::task::spawn_blocking(move || {
                docpipe::bench::extract::run(&corpus, dump.as_deref())
            })
            .await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                BenchCommand::Search {
                    out,
                    models_dir,
                    cache_dir,
                    chunks,
                    queries,
                    chunk_tokens,
                    threads,
                    questions,
                    corpus,
                },
        } => {
            let args = docpipe::bench::search::SearchBenchArgs {
                corpus,
                models_dir,
                cache_dir,
                chunks,
                queries,
                chunk_tokens,
                threads,
                questions,
            };
            let report =
                tokio::task::spawn_blocking(move || docpipe::bench::search::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            which: ModelsCommand::ConvertWhisper { models_dir, force },
        } => {
            use docpipe::models::asr;
            let dir = models_dir.join(asr::CT2_DIR_NAME);
            let out = dir.join(asr::GGML_FILE_NAME);
            if out.is_file() && !force {
                println!("{} exists (use --force to convert again)", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let out2 = out.clone();
            let model = tokio::task::spawn_blocking(move || {
                asr::convert::convert_dir(&dir, &out2, asr::GGML_WEIGHTS)
            })
            .await??;
            println!(
                "wrote {} ({} tensors, {:?})",
                out.display(),
                model.tensors.len(),
                model.hparams
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            server,
            api_key,
            paths,
        } => {
            let files = ingest_cli::collect(&paths);
            if files.is_empty() {
                anyhow::bail!("no files found under the given paths");
            }
            let bar = ingest_cli::progress_bar(files.len() as u64);
            let outcomes = ingest_cli::run(&server, api_key.as_deref(), files, &bar).await;
            let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
            println!(
                "{} files: {} ready, {} failed",
                outcomes.len(),
                outcomes.len() - failed.len(),
                failed.len()
            );
            for o in &failed {
                println!(
                    "  FAILED {}: {}",
                    o.path.display(),
                    o.failure.as_deref().unwrap_or_default()
                );
            }
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Writes a benchmark report as pretty JSON (creating its folder) and prints it.
fn write_report(out: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    println!("{json}");
    Ok(())
}

/// The OpenAPI document, built from a throw-away app (the spec does not depend on any state).
async fn openapi_spec() -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("docpipe-openapi-{}", std::process::id()));
    let settings = Config::from_arg_matches(&serve_command().get_matches_from(["serve"]))?;
    let app = App::open(Config {
        data_dir: dir.clone(),
        // The spec does not depend on which models are loaded.
        chat_models: "none".to_owned(),
        ..settings
    })
    .await?;
    let spec = api::openapi_json(&app);
    app.shutdown(None).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(spec)
}

async fn serve(settings: Config) -> anyhow::Result<ExitCode> {
    telemetry::init(&settings.log_level, settings.log_format);
    tracing::info!(?settings, "starting docpipe");
    let app = App::open(settings).await?;
    if app.keys_required() {
        tracing::info!(
            "API keys required on every route but /health, /docs, /redoc and /openapi.json"
        );
    } else {
        tracing::warn!(
            "NO ADMIN KEY IS SET (DOCPIPE_ADMIN_KEY or API_KEY): the API is open to anyone who can reach \
             this port. Set one before exposing the server beyond this machine."
        );
    }
    let running = app.start().await?;
    let addr = app.config().listen_addr();
    let acceptor = poem::listener::TcpListener::bind(addr.clone())
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let acceptor = api::header_deadline::HeaderDeadlineAcceptor::new(
        acceptor,
        std::time::Duration::from_secs(app.config().header_timeout_secs),
    );
    tracing::info!(%addr, "listening; Swagger UI at /docs");
    let draining = app.clone();
    let grace = std::time::Duration::from_secs(app.config().shutdown_grace_secs);
    poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(std::time::Duration::from_secs(
            app.config().idle_timeout_secs,
        ))
        .run_with_graceful_shutdown(
            api::routes(&app),
            async move {
                shutdown_signal().await;
                draining.begin_draining();
                tracing::info!(
                    grace_seconds = grace.as_secs(),
                    "shutdown requested: no new connections; finishing in-flight requests"
                );
            },
            Some(grace),
        )
        .await
        .with_context(|| format!("cannot serve on {addr}"))?;
    tracing::info!("requests finished; stopping workers and models");
    app.shutdown(Some(running)).await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
