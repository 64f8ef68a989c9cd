//! `docpipe bench extract`: extraction throughput per format on a corpus, and for PDFs the same files
//! through `pdftotext` (poppler) in the same run, with the speed ratio and word-level F1 against it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::extract::{self, Context, ExtractError, Input, OcrMode, detect};
use crate::pipeline::Pipelines;
use crate::types::Document;

/// Throughput of one format.
#[derive(Debug, Default, Serialize)]
pub struct FormatStats {
    pub files: u64,
    pub failed: u64,
    pub bytes: u64,
    pub pages: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub pages_per_s: Option<f64>,
}

/// The PDF comparison with pdftotext.
#[derive(Debug, Default, Serialize)]
pub struct PdfComparison {
    pub files: u64,
    pub pages: u64,
    pub docpipe_seconds: f64,
    pub pdftotext_seconds: f64,
    pub docpipe_pages_per_s: f64,
    pub pdftotext_pages_per_s: f64,
    /// docpipe pages/s divided by pdftotext pages/s (> 1: docpipe is faster).
    pub speed_ratio: f64,
    /// F1 over all words of the corpus (each file's words counted once).
    pub word_f1_micro: f64,
    /// Mean of per-file word F1.
    pub word_f1_mean: f64,
    /// Lowest per-file word F1 and its file.
    pub word_f1_min: f64,
    pub word_f1_min_file: String,
    /// Files with per-file F1 below 0.98.
    pub files_below_0_98: Vec<String>,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct ExtractReport {
    pub corpus: Vec<String>,
    pub formats: BTreeMap<String, FormatStats>,
    pub pdf_vs_pdftotext: PdfComparison,
}

fn words(text: &str) -> HashMap<&str, u64> {
    let mut m = HashMap::new();
    for w in text.split_whitespace() {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

/// (common, ours, theirs) word counts.
fn overlap(ours: &str, theirs: &str) -> (u64, u64, u64) {
    let a = words(ours);
    let b = words(theirs);
    let common = a
        .iter()
        .map(|(w, n)| (*n).min(b.get(w).copied().unwrap_or(0)))
        .sum();
    (common, a.values().sum(), b.values().sum())
}

/// Word-level F1 from overlap counts (1.0 when both are empty).
pub fn f1(common: u64, ours: u64, theirs: u64) -> f64 {
    if ours == 0 && theirs == 0 {
        return 1.0;
    }
    if common == 0 {
        return 0.0;
    }
    #[expect(clippy::cast_precision_loss, reason = "word counts are far below 2^52")]
    let (p, r) = (common as f64 / ours as f64, common as f64 / theirs as f64);
    2.0 * p * r / (p + r)
}

fn pdftotext(path: &Path) -> std::io::Result<(String, Duration)> {
    let start = Instant::now();
    let out = std::process::Command::new("pdftotext")
        .arg("-q")
        .arg(path)
        .arg("-")
        .output()?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        start.elapsed(),
    ))
}

/// Extracts `bytes` (already detected as `format`) with its pipeline's limits but OCR off, so PDF
/// figures compare text layers.
pub(crate) fn extract_without_ocr(
    pipelines: &Pipelines,
    bytes: &[u8],
    format: extract::Format,
) -> Result<Document, ExtractError> {
    let mut limits = pipelines.get(format.category()).limits.clone();
    limits.ocr = OcrMode::Off;
    let report_progress = |_: u64, _: u64, _: &'static str| {};
    let ctx = Context {
        limits: &limits,
        deadline: Instant::now() + Duration::from_secs(limits.timeout_secs),
        progress: &report_progress,
    };
    extract::extract(&Input { bytes, format }, &ctx)
}

/// Every file under `corpus` whose format is detected, as (path, name, bytes, format); answer keys
/// (`*.expected.*`) and provenance notes are skipped.
pub(crate) fn corpus_files(
    corpus: &[PathBuf],
) -> impl Iterator<Item = std::io::Result<(PathBuf, String, Vec<u8>, extract::Format)>> {
    crate::cli::ingest::collect(corpus)
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            if name.contains(".expected.") || name == "PROVENANCE.md" {
                return None;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let format = detect(&bytes, &name).ok()?;
            Some(Ok((path, name, bytes, format)))
        })
}

/// Runs the benchmark over every file under `corpus` dirs. OCR is off so PDF numbers compare text layers.
///
/// With `dump`, each PDF's text is written there as `NAME.docpipe.txt` and `NAME.pdftotext.txt`, and
/// the per-file word F1 (lowest first) as `f1.tsv`.
pub fn run(corpus: &[PathBuf], dump: Option<&Path>) -> anyhow::Result<ExtractReport> {
    if let Some(dir) = dump {
        std::fs::create_dir_all(dir)?;
    }
    let pipelines = Pipelines::load(None)?;
    let mut report = ExtractReport {
        corpus: corpus.iter().map(|p| p.display().to_string()).collect(),
        ..ExtractReport::default()
    };
    let (mut common, mut ours_total, mut theirs_total) = (0u64, 0u64, 0u64);
    let mut f1s: Vec<(f64, String)> = Vec::new();
    let cmp = &mut report.pdf_vs_pdftotext;
    for file in corpus_files(corpus) {
        let (path, name, bytes, format) = file?;
        let start = Instant::now();
        let result = extract_without_ocr(&pipelines, &bytes, format);
        let took = start.elapsed();
        let stats = report.formats.entry(format.name().to_owned()).or_default();
        stats.files += 1;
        stats.bytes += bytes.len() as u64;
        stats.seconds += took.as_secs_f64();
        let Ok(doc) = result else {
            stats.failed += 1;
            continue;
        };
        let pages = doc
            .metadata
            .get("pages")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        stats.pages += pages;
        if format == extract::Format::Pdf {
            let (theirs, their_time) = pdftotext(&path)?;
            let ours = doc.plain_text();
            let (c, o, t) = overlap(&ours, &theirs);
            common += c;
            ours_total += o;
            theirs_total += t;
            if let Some(dir) = dump {
                std::fs::write(dir.join(format!("{name}.docpipe.txt")), &ours)?;
                std::fs::write(dir.join(format!("{name}.pdftotext.txt")), &theirs)?;
            }
            f1s.push((f1(c, o, t), name));
            cmp.files += 1;
            cmp.pages += pages;
            cmp.docpipe_seconds += took.as_secs_f64();
            cmp.pdftotext_seconds += their_time.as_secs_f64();
        }
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "byte and page counts are far below 2^52"
    )]
    for s in report.formats.values_mut() {
        s.mb_per_s = s.bytes as f64 / 1e6 / s.seconds.max(1e-9);
        s.pages_per_s = (s.pages > 0).then(|| s.pages as f64 / s.seconds.max(1e-9));
    }
    #[expect(clippy::cast_precision_loss, reason = "page counts are far below 2^52")]
    {
        cmp.docpipe_pages_per_s = cmp.pages as f64 / cmp.docpipe_seconds.max(1e-9);
        cmp.pdftotext_pages_per_s = cmp.pages as f64 / cmp.pdftotext_seconds.max(1e-9);
        cmp.word_f1_mean = f1s.iter().map(|(f, _)| f).sum::<f64>() / (f1s.len().max(1) as f64);
    }
    cmp.speed_ratio = cmp.docpipe_pages_per_s / cmp.pdftotext_pages_per_s.max(1e-9);
    cmp.word_f1_micro = f1(common, ours_total, theirs_total);
    if let Some((f, name)) = f1s.iter().min_by(|a, b| a.0.total_cmp(&b.0)) {
        cmp.word_f1_min = *f;
        cmp.word_f1_min_file.clone_from(name);
    }
    if let Some(dir) = dump {
        let mut sorted: Vec<&(f64, String)> = f1s.iter().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let tsv: String = sorted
            .iter()
            .map(|(f, n)| format!("{f:.4}\t{n}\n"))
            .collect();
        std::fs::write(dir.join("f1.tsv"), tsv)?;
    }
    cmp.files_below_0_98 = f1s
        .iter()
        .filter(|(f, _)| *f < 0.98)
        .map(|(_, n)| n.clone())
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_f1() {
        let (c, o, t) = overlap("a b c d", "a b c e");
        assert_eq!((c, o, t), (3, 4, 4));
        assert!((f1(c, o, t) - 0.75).abs() < 1e-9);
        assert_eq!(f1(0, 0, 0), 1.0);
        assert_eq!(f1(0, 3, 3), 0.0);
        let (c, o, t) = overlap("x x y", "x y y");
        assert_eq!(c, 2);
        assert!((f1(c, o, t) - 2.0 / 3.0).abs() < 1e-9);
    }
}
