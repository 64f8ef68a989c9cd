//! `docpipe ingest PATH...`: bulk-uploads files and folders to a running server, shows a progress bar
//! while the server processes them, and ends with a summary of what failed and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// How often processing status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The outcome of one file.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The local path.
    pub path: PathBuf,
    /// The server's file id, when the upload was accepted.
    pub file_id: Option<String>,
    /// `None` when the file is ready; otherwise why it was refused or failed.
    pub failure: Option<String>,
}

#[derive(Deserialize)]
struct FileReply {
    id: String,
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

async fn upload(client: &reqwest::Client, server: &str, path: &Path) -> Result<FileReply, String> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload")
        .to_owned();
    let resp = send_retrying(|| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
        );
        client
            .post(format!("{server}/api/v1/upload"))
            .multipart(form)
    })
    .await
    .map_err(|e| format!("upload failed: {e}"))?;
    reply(resp).await
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

async fn reply(resp: reqwest::Response) -> Result<FileReply, String> {
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

/// Uploads `files` to `server` and waits until each is ready or failed.
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
    let uploads: Vec<Outcome> = futures::stream::iter(files)
        .map(|path| {
            let client = client.clone();
            async move {
                match upload(&client, server, &path).await {
                    Ok(f) => Outcome {
                        path,
                        file_id: Some(f.id),
                        failure: None,
                    },
                    Err(e) => Outcome {
                        path,
                        file_id: None,
                        failure: Some(e),
                    },
                }
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .collect()
        .await;
    bar.set_message("processing");
    let mut outcomes = Vec::with_capacity(uploads.len());
    let mut pending = Vec::new();
    for o in uploads {
        if o.file_id.is_some() {
            pending.push(o);
        } else {
            bar.inc(1);
            outcomes.push(o);
        }
    }
    while !pending.is_empty() {
        let mut still = Vec::new();
        for mut o in pending {
            let id = o.file_id.clone().unwrap_or_default();
            let resp = send_retrying(|| client.get(format!("{server}/api/v1/files/{id}"))).await;
            let state = match resp {
                Ok(r) => reply(r).await,
                Err(e) => Err(format!("status check failed: {e}")),
            };
            match state {
                Ok(f) if f.status == "ready" => {
                    bar.inc(1);
                    outcomes.push(o);
                }
                Ok(f) if f.status == "failed" => {
                    o.failure = Some(f.error.map_or_else(
                        || "failed".to_owned(),
                        |e| format!("{}: {}", e.code, e.message),
                    ));
                    bar.inc(1);
                    outcomes.push(o);
                }
                Ok(_) => still.push(o),
                Err(e) => {
                    o.failure = Some(e);
                    bar.inc(1);
                    outcomes.push(o);
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
