//! Transcription speed: real-time factor (processing seconds per audio second) of the whole path a file
//! takes (decode, resample, Whisper) on the configured threads, per file, with the transcripts (word error
//! rates are computed by `bench/asr.sh` against the reference texts, the same way for the peer), and the
//! process's peak RSS.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::models::asr::{AsrConfig, AsrService, TranscribeOptions};
use crate::pipeline::asr::transcribe_bytes;

/// Settings of one run.
pub struct AsrBenchArgs {
    /// Directory holding the model files.
    pub models_dir: PathBuf,
    /// whisper.cpp threads.
    pub threads: usize,
    /// Beam widths to measure (1 = greedy).
    pub beams: Vec<usize>,
    /// Audio files.
    pub files: Vec<PathBuf>,
}

/// One file at one beam width.
#[derive(Debug, Serialize)]
pub struct FileResult {
    pub file: String,
    pub beam_size: usize,
    pub audio_seconds: f64,
    pub seconds: f64,
    pub rtf: f64,
    pub text: String,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct AsrBenchReport {
    pub model: &'static str,
    pub threads: usize,
    pub results: Vec<FileResult>,
    /// Total processing seconds over total audio seconds, per beam width.
    pub rtf_by_beam: Vec<(usize, f64)>,
    pub peak_rss_mib: f64,
}

/// Runs the benchmark.
pub fn run(args: &AsrBenchArgs) -> anyhow::Result<AsrBenchReport> {
    let mut config = AsrConfig::from_models_dir(&args.models_dir);
    config.threads = args.threads;
    crate::models::asr::ensure_ggml(&config.model)?;
    let service = AsrService::start(config)?;
    let asr = service.handle();
    let mut results = Vec::new();
    let mut rtf_by_beam = Vec::new();
    for &beam in &args.beams {
        let (mut secs_all, mut audio_all) = (0.0, 0.0);
        for file in &args.files {
            let bytes = std::fs::read(file)?;
            let options = TranscribeOptions {
                beam_size: Some(beam),
                ..TranscribeOptions::default()
            };
            let started = Instant::now();
            let t = transcribe_bytes(&asr, &bytes, None, f64::MAX, &options, &|_, _| {}, false)?;
            let seconds = started.elapsed().as_secs_f64();
            secs_all += seconds;
            audio_all += t.duration;
            results.push(FileResult {
                file: name(file),
                beam_size: beam,
                audio_seconds: t.duration,
                seconds,
                rtf: seconds / t.duration.max(f64::EPSILON),
                text: t.text(),
            });
        }
        rtf_by_beam.push((beam, secs_all / audio_all.max(f64::EPSILON)));
    }
    service.shutdown();
    Ok(AsrBenchReport {
        model: crate::models::asr::MODEL_NAME,
        threads: args.threads,
        results,
        rtf_by_beam,
        peak_rss_mib: peak_rss_mib(),
    })
}

fn name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `VmHWM` of this process, in MiB (0 where /proc is unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
