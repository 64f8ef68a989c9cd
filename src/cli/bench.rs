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
            let results = tokio::task::spawn_blocking(move || {
                crate::bench::embed::bench_throughput(&dir, sentences, &[32, 256], &[1, 2], 3)
            })
            .await??;
            write_report(&out, &results)?;
            Ok(ExitCode::SUCCESS)
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
            let report =
                tokio::task::spawn_blocking(move || crate::bench::chat::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
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
            let report =
                tokio::task::spawn_blocking(move || crate::bench::asr::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Isolation { out, corpus } => {
            let report = crate::bench::isolation::run(&corpus).await?;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Extract { out, dump, corpus } => {
            let report = tokio::task::spawn_blocking(move || {
                crate::bench::extract::run(&corpus, dump.as_deref())
            })
            .await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
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
            let report =
                tokio::task::spawn_blocking(move || crate::bench::search::run(&args)).await??;
            write_report(&out, &report)?;
            Ok(ExitCode::SUCCESS)
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
