//! What isolating extraction in a worker process costs (`docpipe bench isolation`): every file of the corpus
//! extracted in this process and then in an extraction worker (OCR off in both, so the figures compare the
//! same work), with a reused worker (the steady state) and with a fresh one per file (the startup).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::bench::extract::{corpus_files, extract_without_ocr};
use crate::extract::OcrMode;
use crate::pipeline::Pipelines;
use crate::pipeline::isolate::Pool;
use crate::types::Progress;

/// Per format: seconds in-process and in a reused worker, and the reply bytes copied back.
#[derive(Debug, Default, Serialize)]
pub struct FormatCost {
    pub files: u64,
    pub in_process_seconds: f64,
    pub worker_seconds: f64,
    pub reply_bytes: u64,
    /// (worker - in-process) / files.
    pub overhead_ms_per_file: f64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct IsolationReport {
    pub corpus: Vec<String>,
    pub files: u64,
    pub in_process_seconds: f64,
    pub worker_seconds: f64,
    /// Mean extra time per file with a reused worker (the copy of the document back, the pipe round trip).
    pub overhead_ms_per_file: f64,
    /// Median time to start a worker and get its hello.
    pub startup_ms_median: f64,
    pub startup_ms_max: f64,
    pub formats: BTreeMap<String, FormatCost>,
}

/// Runs the comparison over every file under `corpus`.
pub async fn run(corpus: &[PathBuf]) -> anyhow::Result<IsolationReport> {
    let pipelines = Pipelines::load(None)?;
    let reused = Pool::new(1);
    let (progress, _) = watch::channel(Progress::default());
    let mut report = IsolationReport {
        corpus: corpus.iter().map(|p| p.display().to_string()).collect(),
        ..IsolationReport::default()
    };
    let mut startups = Vec::new();
    for file in corpus_files(corpus) {
        let (_, _, bytes, format) = file?;
        let mut limits = pipelines.get(format.category()).limits.clone();
        limits.ocr = OcrMode::Off;
        let timeout = Duration::from_secs(limits.timeout_secs);
        let started = Instant::now();
        let in_process = extract_without_ocr(&pipelines, &bytes, format);
        let in_process_secs = started.elapsed().as_secs_f64();
        if in_process.is_err() {
            continue; // Failing files are timed by the hostile-input suite, not here.
        }
        // A first isolated run warms the worker for these limits; the second is the steady state.
        let cold = Pool::new(0)
            .extract(&bytes, format, &limits, timeout, &progress)
            .await;
        if let Ok((_, t)) = &cold {
            startups.push(t.startup.as_secs_f64() * 1e3);
        }
        let _ = reused
            .extract(&bytes, format, &limits, timeout, &progress)
            .await;
        let started = Instant::now();
        let Ok((_, timings)) = reused
            .extract(&bytes, format, &limits, timeout, &progress)
            .await
        else {
            continue;
        };
        let worker_secs = started.elapsed().as_secs_f64();
        let cost = report.formats.entry(format.name().to_owned()).or_default();
        cost.files += 1;
        cost.in_process_seconds += in_process_secs;
        cost.worker_seconds += worker_secs;
        cost.reply_bytes += timings.reply_bytes as u64;
        report.files += 1;
        report.in_process_seconds += in_process_secs;
        report.worker_seconds += worker_secs;
    }
    #[expect(clippy::cast_precision_loss, reason = "file counts are far below 2^52")]
    for cost in report.formats.values_mut() {
        cost.overhead_ms_per_file =
            (cost.worker_seconds - cost.in_process_seconds) * 1e3 / cost.files.max(1) as f64;
    }
    #[expect(clippy::cast_precision_loss, reason = "file counts are far below 2^52")]
    {
        report.overhead_ms_per_file =
            (report.worker_seconds - report.in_process_seconds) * 1e3 / report.files.max(1) as f64;
    }
    startups.sort_by(f64::total_cmp);
    report.startup_ms_median = startups.get(startups.len() / 2).copied().unwrap_or(0.0);
    report.startup_ms_max = startups.last().copied().unwrap_or(0.0);
    Ok(report)
}
