//! One ingestion worker: claims the oldest queued file, extracts it on a dedicated thread under the
//! pipeline's deadline, records progress while it runs, and stores the result or the failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::Shared;
use crate::extract::{self, Context, ExtractError, Format, Input};
use crate::store::doc_key;
use crate::types::{Document, FileError, FileRecord, Progress};

/// Stack of an extraction thread: generous, so deep (but bounded) recursion in a parser is safe.
const EXTRACT_STACK_BYTES: usize = 256 * 1024 * 1024;
/// Extra time after the pipeline's deadline before a still-running extraction is abandoned.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);
/// How often progress is written to the database at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How long an idle worker sleeps before polling the queue again (a missed wake-up costs at most this).
const IDLE_POLL: Duration = Duration::from_secs(2);
/// A file whose processing started this many times without finishing (the process died each time) fails.
const MAX_ATTEMPTS: u32 = 3;

/// Runs until shutdown.
pub(super) async fn run(shared: Arc<Shared>, n: usize) {
    loop {
        if shared.shutdown.is_cancelled() {
            break;
        }
        match shared.store.claim_next().await {
            Ok(Some(file)) => {
                shared.publish(&file);
                process(&shared, file).await;
            }
            Ok(None) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = shared.shutdown.cancelled() => break,
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(e) => {
                tracing::error!(worker = n, error = %e, "cannot claim a file");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
    tracing::debug!(worker = n, "ingestion worker stopped");
}

#[tracing::instrument(skip_all, fields(file_id = %file.id, format = %file.format))]
async fn process(shared: &Shared, file: FileRecord) {
    let key = doc_key(&file.sha256, &file.format);
    let outcome = extract_file(shared, &file, &key).await;
    let stored = match &outcome {
        Ok(doc) => shared.store.finish_ready(&file.id, &key, doc).await,
        Err(error) => shared.store.mark_failed(&file.id, error).await,
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot store the extraction result; the file stays queued for a retry");
        return;
    }
    match &outcome {
        Ok(doc) => tracing::info!(segments = doc.segments.len(), "file ready"),
        Err(e) => tracing::warn!(code = %e.code, reason = %e.message, "file failed"),
    }
    // Publish the new state of this file and of any duplicate that was completed with it.
    let ids = shared
        .store
        .files_with_doc(&key)
        .await
        .unwrap_or_else(|_| vec![file.id.clone()]);
    for id in ids {
        if let Ok(Some(f)) = shared.store.file(&file.tenant, &id).await {
            shared.publish(&f);
        }
    }
}

async fn extract_file(
    shared: &Shared,
    file: &FileRecord,
    key: &str,
) -> Result<Document, FileError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| FileError {
        code: "internal_error".into(),
        message: format!("{what}: {e}"),
    };
    match shared.store.attempts(&file.id).await {
        Ok(n) if n > MAX_ATTEMPTS => {
            return Err(FileError {
                code: "processing_crashed".into(),
                message: format!(
                    "processing was interrupted {MAX_ATTEMPTS} times; giving up on this file"
                ),
            });
        }
        Ok(_) => {}
        Err(e) => return Err(internal("cannot read the attempt count", &e)),
    }
    if let Ok(true) = shared.store.has_document(key).await {
        // Identical content finished while this file waited: reuse it (finish_ready keeps the stored copy).
        return Ok(Document::default());
    }
    let format = Format::parse(&file.format).ok_or_else(|| FileError {
        code: "unsupported_file_type".into(),
        message: format!("unknown stored format {}", file.format),
    })?;
    let limits = shared.pipelines.get(file.category).limits.clone();
    let bytes = shared
        .store
        .blobs()
        .read(&file.sha256)
        .await
        .map_err(|e| internal("cannot read the stored file", &e))?;

    let timeout = Duration::from_secs(limits.timeout_secs);
    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let (done_tx, mut done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("extract-{}", file.id))
        .stack_size(EXTRACT_STACK_BYTES)
        .spawn(move || {
            let report = |done: u64, total: u64, unit: &'static str| {
                progress_tx.send_replace(Progress {
                    done,
                    total,
                    unit: unit.to_owned(),
                });
            };
            let ctx = Context {
                limits: &limits,
                deadline: Instant::now() + timeout,
                progress: &report,
            };
            let result = extract::extract(
                &Input {
                    bytes: &bytes,
                    format,
                },
                &ctx,
            );
            // The receiver is gone only when the worker gave up waiting.
            let _ = done_tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(internal("cannot start an extraction thread", &e));
    }

    let hard_deadline = tokio::time::Instant::now() + timeout + DEADLINE_GRACE;
    let mut last_write = tokio::time::Instant::now() - PROGRESS_INTERVAL;
    let mut progress_open = true;
    loop {
        tokio::select! {
            result = &mut done_rx => {
                return match result {
                    Ok(Ok(doc)) => Ok(doc),
                    Ok(Err(e)) => Err(failure(&e)),
                    Err(_) => Err(internal("the extraction thread died", &"no result")),
                };
            }
            changed = progress_rx.changed(), if progress_open => {
                if changed.is_err() {
                    // The thread dropped its progress sender: its result is on the way.
                    progress_open = false;
                    continue;
                }
                if last_write.elapsed() >= PROGRESS_INTERVAL {
                    last_write = tokio::time::Instant::now();
                    let progress = progress_rx.borrow_and_update().clone();
                    if shared.store.set_progress(&file.id, &progress).await.is_ok() {
                        let mut updated = file.clone();
                        updated.progress = progress;
                        shared.publish(&updated);
                    }
                }
            }
            () = tokio::time::sleep_until(hard_deadline) => {
                return Err(failure(&ExtractError::Timeout));
            }
        }
    }
}

fn failure(e: &ExtractError) -> FileError {
    FileError {
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}
