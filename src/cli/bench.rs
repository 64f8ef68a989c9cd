//! `docpipe bench ...`: each benchmark writes its JSON report (run by `make bench`).

use std::process::ExitCode;

use anyhow::Context as _;

use super::BenchCommand;

/// Runs one benchmark.
pub async fn run(which: BenchCommand) -> anyhow::Result<ExitCode> {
    match which {
        BenchCommand::Embed {
            out,
            models_dir,
            sentences,
            dump_sentences,
        } => {
            if let Some(path) = dump_sentences {
                let text = crate::bench::embed::bench_sentences(sentences).join("\n");
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let dir = models_dir.join(crate::models::embed::MODEL_DIR_NAME);
            blocking_report(out, move || {
                crate::bench::embed::bench_throughput(&dir, sentences, &[32, 256], &[1, 2], 3)
            })
            .await
        }
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
        } => {
            let args = crate::bench::chat::ChatBenchArgs {
                models_dir,
                models,
                threads,
                prompt_tokens,
                decode_tokens,
                clients,
                rounds,
                workload_dir,
            };
            blocking_report(out, move || crate::bench::chat::run(&args)).await
        }
        BenchCommand::Asr {
            out,
            models_dir,
            threads,
            beams,
            files,
        } => {
            let args = crate::bench::asr::AsrBenchArgs {
                models_dir,
                threads,
                beams,
                files,
            };
            blocking_report(out, move || crate::bench::asr::run(&args)).await
        }
        BenchCommand::Isolation { out, corpus } => {
            let report = crate::bench::isolation::run(&corpus).await?;
            write_report(&out, &report)
        }
        BenchCommand::Extract { out, dump, corpus } => {
            blocking_report(out, move || {
                crate::bench::extract::run(&corpus, dump.as_deref())
            })
            .await
        }
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
        } => {
            let args = crate::bench::search::SearchBenchArgs {
                corpus,
                models_dir,
                cache_dir,
                chunks,
                queries,
                chunk_tokens,
                threads,
                questions,
            };
            blocking_report(out, move || crate::bench::search::run(&args)).await
        }
    }
}

/// Runs a benchmark that blocks (off the async runtime's threads) and writes its report.
async fn blocking_report<R, E>(
    out: std::path::PathBuf,
    bench: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> anyhow::Result<ExitCode>
where
    R: serde::Serialize + Send + 'static,
    E: Send + 'static,
    anyhow::Error: From<E>,
{
    let report = tokio::task::spawn_blocking(bench).await??;
    write_report(&out, &report)
}

/// Writes a benchmark report as pretty JSON (creating its folder) and prints it.
fn write_report(out: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    let json = serde_json::to_string_pretty(report)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
