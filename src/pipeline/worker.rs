//! One ingestion worker: claims the oldest queued file, extracts it in a worker process under the
//! pipeline's deadline and limits ([`super::isolate`]), records progress while it runs, and stores the
//! result or the failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::Shared;
use crate::chunk;
use crate::extract::{Context, ExtractError, Format};
use crate::index::service::EMBED_BATCH;
use crate::models::embed::MODEL_NAME;
use crate::store::{StoredChunk, doc_key};
use crate::types::{Document, FileError, FileRecord, Progress};

/// Stack of a transcription thread.
const TRANSCRIBE_STACK_BYTES: usize = 16 * 1024 * 1024;
/// Extra time after the pipeline's deadline before a still-running transcription is abandoned.
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
    let started = std::time::Instant::now();
    let outcome = ingest(shared, &file).await;
    crate::telemetry::metrics::file_processed(
        &file.format,
        started.elapsed().as_secs_f64(),
        outcome.is_ok(),
    );
    // The fence against a delete while the file was processed: the delete removes the record first and the
    // index entries after it; the worker indexes first and turns the file ready only while its record is
    // still there. Whichever comes second takes the chunks out, so none outlives the record.
    let stored = match &outcome {
        Ok(()) => shared.store.mark_ready(&file.id).await,
        Err(error) => shared.store.mark_failed(&file.id, error).await,
    };
    match stored {
        Ok(true) => {}
        Ok(false) => {
            forget_deleted(shared, &file).await;
            shared.wake.notify_waiters();
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the outcome; the file is processed again at next start");
            return;
        }
    }
    match &outcome {
        Ok(()) => tracing::info!("file ready"),
        Err(e) => tracing::warn!(code = %e.code, reason = %e.message, "file failed"),
    }
    let mut finished = vec![file.id.clone()];
    if let Err(error) = &outcome {
        match shared.store.fail_queued_twins(&file.id, error).await {
            Ok(twins) => finished.extend(twins),
            Err(e) => tracing::error!(error = %e, "cannot fail the file's queued twins"),
        }
    }
    for id in &finished {
        if let Ok(Some(f)) = shared.store.file(&file.tenant, id).await {
            shared.publish(&f);
        }
    }
    // Twins waiting for this content can be claimed now.
    shared.wake.notify_waiters();
}

/// Takes what the worker made for a file deleted while it was processed out of the indexes and the store.
async fn forget_deleted(shared: &Shared, file: &FileRecord) {
    tracing::info!("file deleted while it was processed; its chunks are not kept");
    if let Err(e) = shared.search.remove_file(&file.tenant, &file.id).await {
        tracing::error!(error = %e, "cannot remove the deleted file from the indexes; the next start does");
    }
    let key = doc_key(&file.tenant, &file.sha256, &file.format);
    if let Err(e) = shared.store.delete_unused_extraction(&key).await {
        tracing::error!(error = %e, "cannot remove the deleted file's extraction");
    }
}

/// Extract (unless this content was extracted before), chunk and embed (unless the stored chunks were made
/// by the current model), then index under this file. Each stage's result is stored before the next, so a
/// file interrupted by a crash resumes where it stopped.
async fn ingest(shared: &Shared, file: &FileRecord) -> Result<(), FileError> {
    let key = doc_key(&file.tenant, &file.sha256, &file.format);
    let def = shared.pipelines.get(file.category);
    let stored_doc = shared
        .store
        .has_document(&key)
        .await
        .map_err(|e| internal("cannot read the store", &e))?;
    let fresh = if stored_doc {
        None
    } else {
        let doc = extract_file(shared, file).await?;
        shared
            .store
            .save_document(&key, &doc)
            .await
            .map_err(|e| internal("cannot store the extraction", &e))?;
        Some(doc)
    };
    if !def.indexes() {
        return Ok(());
    }
    let search = &shared.search;
    let model = shared
        .store
        .chunks_model(&key)
        .await
        .map_err(|e| internal("cannot read the store", &e))?;
    let chunks = if model.as_deref() == Some(MODEL_NAME) {
        shared
            .store
            .chunks_of_doc(&key)
            .await
            .map_err(|e| internal("cannot read chunks", &e))?
    } else {
        let doc = match fresh {
            Some(doc) => doc,
            None => shared
                .store
                .document(&file.tenant, &file.id)
                .await
                .map_err(|e| internal("cannot read the extraction", &e))?
                .unwrap_or_default(),
        };
        let cfg = def.chunking;
        let counter = search.embedder().token_counter();
        let max_chunks = usize::try_from(def.limits.max_chunks).unwrap_or(usize::MAX);
        let chunks = tokio::task::spawn_blocking(move || {
            chunk::chunk_document_at_most(&doc, &cfg, &|t| counter.count(t), max_chunks)
        })
        .await
        .map_err(|e| internal("chunking failed", &e))?
        .map_err(|e| internal("chunking failed", &e))?;
        let total = chunks.len() as u64;
        if total > def.limits.max_chunks {
            return Err(FileError {
                code: "limit_exceeded".into(),
                message: format!(
                    "limit exceeded: the text makes more than {} chunks (max_chunks); split the file or raise the limit in its pipeline",
                    def.limits.max_chunks
                ),
            });
        }
        let mut vectors = Vec::with_capacity(chunks.len());
        let mut last = tokio::time::Instant::now();
        for batch in chunks.chunks(EMBED_BATCH) {
            let texts = batch.iter().map(|c| c.text.clone()).collect();
            vectors.extend(
                search
                    .embed_waiting(texts)
                    .await
                    .map_err(|e| internal("embedding failed", &e))?,
            );
            if last.elapsed() >= PROGRESS_INTERVAL || vectors.len() == chunks.len() {
                last = tokio::time::Instant::now();
                let progress = Progress {
                    done: vectors.len() as u64,
                    total,
                    unit: "chunks".to_owned(),
                };
                shared.report(file, progress).await;
            }
        }
        let stored: Vec<StoredChunk> = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, embedding)| StoredChunk {
                ordinal: c.ordinal,
                text: c.text,
                location: serde_json::to_value(&c.location).unwrap_or_default(),
                token_count: c.token_count,
                embedding,
            })
            .collect();
        shared
            .store
            .save_chunks(&key, &stored, MODEL_NAME)
            .await
            .map_err(|e| internal("cannot store chunks", &e))?;
        stored
    };
    // A file deleted meanwhile is not indexed (the check after indexing, in `process`, closes the rest
    // of the window).
    if !shared
        .store
        .file_exists(&file.id)
        .await
        .map_err(|e| internal("cannot read the store", &e))?
    {
        return Ok(());
    }
    search
        .index_file(file, chunks)
        .await
        .map_err(|e| internal("indexing failed", &e))
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> FileError {
    FileError {
        code: "internal_error".into(),
        message: format!("{what}: {e}"),
    }
}

async fn extract_file(shared: &Shared, file: &FileRecord) -> Result<Document, FileError> {
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
    let format = Format::parse(&file.format).ok_or_else(|| FileError {
        code: "unsupported_file_type".into(),
        message: format!("unknown stored format {}", file.format),
    })?;
    let def = shared.pipelines.get(file.category);
    let limits = def.limits.clone();
    let asr = if def.transcribes() {
        Some(shared.asr.get().cloned().ok_or_else(|| {
            internal(
                "cannot transcribe",
                &"no speech recognition engine is loaded",
            )
        })?)
    } else {
        None
    };
    let bytes = shared
        .store
        .blobs()
        .read(&file.sha256)
        .await
        .map_err(|e| internal("cannot read the stored file", &e))?;

    let timeout = Duration::from_secs(limits.timeout_secs);
    let deadline = Instant::now() + timeout;
    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let work = async move {
        let (doc, timings) = shared
            .isolation
            .extract(&bytes, format, &limits, timeout, &progress_tx)
            .await?;
        tracing::debug!(
            startup_ms = timings.startup.as_secs_f64() * 1e3,
            exchange_ms = timings.exchange.as_secs_f64() * 1e3,
            reply_bytes = timings.reply_bytes,
            "extracted in a worker process"
        );
        match asr {
            Some(asr) => transcribe(doc, asr, bytes, format, limits, deadline, progress_tx).await,
            None => Ok(doc),
        }
    };
    tokio::pin!(work);
    let mut last_write = tokio::time::Instant::now() - PROGRESS_INTERVAL;
    let mut progress_open = true;
    loop {
        tokio::select! {
            result = &mut work => return result.map_err(|e| failure(&e)),
            changed = progress_rx.changed(), if progress_open => {
                if changed.is_err() {
                    // The sender is gone: the result is on the way.
                    progress_open = false;
                    continue;
                }
                if last_write.elapsed() >= PROGRESS_INTERVAL {
                    last_write = tokio::time::Instant::now();
                    let progress = progress_rx.borrow_and_update().clone();
                    shared.report(file, progress).await;
                }
            }
        }
    }
}

/// Transcribes an extracted audio file on a dedicated thread (the model lives in this process), giving up
/// at the deadline plus a grace.
async fn transcribe(
    doc: Document,
    asr: crate::models::asr::AsrHandle,
    bytes: Vec<u8>,
    format: Format,
    limits: crate::extract::Limits,
    deadline: Instant,
    progress_tx: watch::Sender<Progress>,
) -> Result<Document, ExtractError> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("transcribe".to_owned())
        .stack_size(TRANSCRIBE_STACK_BYTES)
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
                deadline,
                progress: &report,
            };
            let result = super::asr::add_transcript(doc, &asr, &bytes, format, &ctx);
            // The receiver is gone only when the worker gave up waiting.
            let _ = done_tx.send(result);
        })
        .map_err(|e| ExtractError::Transcription(format!("cannot start a thread: {e}")))?;
    let hard_deadline = tokio::time::Instant::from_std(deadline) + DEADLINE_GRACE;
    match tokio::time::timeout_at(hard_deadline, done_rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ExtractError::Transcription(
            "the transcription thread died".to_owned(),
        )),
        Err(_) => Err(ExtractError::Timeout),
    }
}

fn failure(e: &ExtractError) -> FileError {
    FileError {
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}
