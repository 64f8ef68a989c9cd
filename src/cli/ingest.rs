//! `docpipe ingest PATH...`: bulk-uploads files and folders to a running server as document batches
//! (`POST /api/v1/batches`, up to [`BATCH_FILES`] files or [`BATCH_BYTES`] per request), shows a progress
//! bar while the server processes them, and ends with a summary of what failed and why.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Most files sent in one batch request.
pub const BATCH_FILES: usize = 100;
/// Most bytes sent in one batch request (a larger file goes alone).
pub const BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// How often processing status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The outcome of one file.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The local path (for a member of a ZIP archive, the archive's path and the member's).
    pub path: PathBuf,
    /// The server's file id, when the upload was accepted.
    pub file_id: Option<String>,
    /// `None` when the file is ready; otherwise why it was refused or failed.
    pub failure: Option<String>,
}

#[derive(Deserialize)]
struct BatchReply {
    id: String,
    status: String,
    counts: CountsReply,
    files: Vec<BatchFileReply>,
}

#[derive(Deserialize)]
struct CountsReply {
    done: u64,
}

#[derive(Deserialize)]
struct BatchFileReply {
    path: Option<String>,
    archive: Option<String>,
    file_id: Option<String>,
    status: String,
    error: Option<ReasonReply>,
}

#[derive(Deserialize)]
struct ReasonReply {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: ReasonReply,
}

/// Every regular, non-hidden file under the given paths, sorted.
pub fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .into_iter()
            .filter_map(Result::ok)
        {
            let hidden = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.'))
                && entry.depth() > 0;
            if entry.file_type().is_file() && !hidden {
                out.push(entry.into_path());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Splits `files` into batch requests of at most [`BATCH_FILES`] files and [`BATCH_BYTES`] bytes.
pub fn plan(files: Vec<PathBuf>) -> Vec<Vec<PathBuf>> {
    let mut out: Vec<Vec<PathBuf>> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let full = out.last().is_none_or(|b| {
            b.len() >= BATCH_FILES || (bytes + size > BATCH_BYTES && !b.is_empty())
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(b) = out.last_mut() {
            b.push(f);
        }
    }
    out
}

/// Sends one batch; the files that could not be read locally are reported at once.
async fn send_batch(
    client: &reqwest::Client,
    server: &str,
    paths: &[PathBuf],
) -> Result<(BatchReply, Vec<PathBuf>), String> {
    let mut parts = Vec::new();
    let mut sent = Vec::new();
    for path in paths {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .to_owned();
        parts.push((name, bytes));
        sent.push(path.clone());
    }
    let resp = send_retrying(|| {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in &parts {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
            );
        }
        client
            .post(format!("{server}/api/v1/batches"))
            .multipart(form)
    })
    .await
    .map_err(|e| format!("upload failed: {e}"))?;
    Ok((reply(resp).await?, sent))
}

/// Pairs a batch's files with the local paths they came from: a file not from an archive is the next
/// part; consecutive members of one archive belong to the same part.
fn outcomes_of(batch: &BatchReply, sent: &[PathBuf]) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(batch.files.len());
    let mut part = 0usize;
    let mut current_archive: Option<&str> = None;
    for f in &batch.files {
        let local = match (&f.archive, current_archive) {
            (Some(a), Some(c)) if a == c => sent.get(part.saturating_sub(1)),
            (Some(a), _) => {
                current_archive = Some(a);
                part += 1;
                sent.get(part - 1)
            }
            (None, _) => {
                current_archive = None;
                part += 1;
                sent.get(part - 1)
            }
        };
        let mut path = local.cloned().unwrap_or_default();
        if let Some(member) = &f.path {
            path.push(member);
        }
        let failure = match f.status.as_str() {
            "ready" => None,
            "rejected" | "failed" => Some(f.error.as_ref().map_or_else(
                || f.status.clone(),
                |e| format!("{}: {}", e.code, e.message),
            )),
            "deleted" => Some("deleted meanwhile".to_owned()),
            other => Some(format!("still {other}")),
        };
        out.push(Outcome {
            path,
            file_id: f.file_id.clone(),
            failure,
        });
    }
    out
}

/// Most attempts of one request refused with 429 or 503.
const MAX_ATTEMPTS: u32 = 20;
/// Longest `Retry-After` honoured, in seconds.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Sends the request `make` builds, waiting `Retry-After` seconds and sending it again while the server
/// answers 429 (rate limited) or 503 (queue full).
async fn send_retrying(
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut attempt = 1;
    loop {
        let resp = make().send().await?;
        let status = resp.status().as_u16();
        if !matches!(status, 429 | 503) || attempt >= MAX_ATTEMPTS {
            return Ok(resp);
        }
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_RETRY_AFTER_SECS);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        attempt += 1;
    }
}

async fn reply<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, String> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| format!("unexpected answer: {e}"));
    }
    Err(match serde_json::from_slice::<ErrorReply>(&body) {
        Ok(e) => format!(
            "{} ({}): {}",
            status.as_u16(),
            e.error.code,
            e.error.message
        ),
        Err(_) => format!("{status}: {}", String::from_utf8_lossy(&body)),
    })
}

/// Uploads `files` to `server` in document batches and waits until each file is ready or failed.
pub async fn run(
    server: &str,
    api_key: Option<&str>,
    files: Vec<PathBuf>,
    bar: &ProgressBar,
) -> Vec<Outcome> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(v) = api_key.and_then(|k| reqwest::header::HeaderValue::from_str(k).ok()) {
        headers.insert("x-api-key", v);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default();
    let server = server.trim_end_matches('/');
    bar.set_length(files.len() as u64);
    bar.set_message("uploading");
    let mut outcomes = Vec::new();
    // Batches sent, with the local paths of their parts and how many of their files are done.
    let mut pending: Vec<(String, Vec<PathBuf>, u64)> = Vec::new();
    for paths in plan(files) {
        match send_batch(&client, server, &paths).await {
            Ok((batch, sent)) => {
                // Archives expand into several files: the bar counts files, not parts.
                let extra = batch.files.len().saturating_sub(sent.len());
                bar.inc_length(extra as u64);
                bar.inc(batch.counts.done);
                pending.push((batch.id, sent, batch.counts.done));
            }
            Err(e) => {
                for path in paths {
                    bar.inc(1);
                    outcomes.push(Outcome {
                        path,
                        file_id: None,
                        failure: Some(e.clone()),
                    });
                }
            }
        }
    }
    bar.set_message("processing");
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (id, sent, done) in pending {
            let resp = send_retrying(|| client.get(format!("{server}/api/v1/batches/{id}"))).await;
            let state = match resp {
                Ok(r) => reply::<BatchReply>(r).await,
                Err(e) => Err(format!("status check failed: {e}")),
            };
            match state {
                Ok(b) => {
                    bar.inc(b.counts.done.saturating_sub(done));
                    if b.status == "completed" {
                        outcomes.extend(outcomes_of(&b, &sent));
                    } else {
                        still.push((id, sent, b.counts.done));
                    }
                }
                Err(e) => {
                    for path in sent {
                        outcomes.push(Outcome {
                            path,
                            file_id: None,
                            failure: Some(e.clone()),
                        });
                    }
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    bar.finish_with_message("done");
    outcomes.sort_by(|a, b| a.path.cmp(&b.path));
    outcomes
}

/// A progress bar for `n` files.
pub fn progress_bar(n: u64) -> ProgressBar {
    let bar = ProgressBar::new(n);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} files {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `docpipe ingest`: uploads `paths` to `server`, waits for each file, prints a summary; fails when any did.
pub async fn command(
    server: &str,
    api_key: Option<&str>,
    paths: &[std::path::PathBuf],
) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;

    let files = collect(paths);
    if files.is_empty() {
        anyhow::bail!("no files found under the given paths");
    }
    let bar = progress_bar(files.len() as u64);
    let outcomes = run(server, api_key, files, &bar).await;
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
