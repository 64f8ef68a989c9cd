//! Transcription: the stored transcript of an uploaded audio file (waiting for the pipeline when it is still
//! at work), and one-off clips sent to `/v1/audio/transcriptions` (not stored).

use std::time::Duration;

use tracing::instrument;

pub use crate::models::asr::{AsrError, MODEL_NAME, Segment, TranscribeOptions};
pub use crate::pipeline::asr::{
    ClipError, FileTranscript, StoredTranscript, TranscribeError, TranscriptError,
};

use super::App;
use super::chat::not_ready_message;
use crate::pipeline::FileOpError;
use crate::types::Progress;

/// Why a stored transcript cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptionError {
    /// No such file, or the store failed.
    #[error(transparent)]
    File(#[from] FileOpError),
    /// The file is still queued or processing after the wait.
    #[error("{}", not_ready_message(id, status, Some(progress), *waited))]
    NotReady {
        /// The file.
        id: String,
        /// Its status.
        status: &'static str,
        /// How far its processing got.
        progress: Progress,
        /// How long the request waited.
        waited: Duration,
    },
    /// Not audio, or no extraction.
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
}

impl App {
    /// The stored transcript of an uploaded audio file, waiting up to `wait` for a file still being
    /// processed.
    #[instrument(skip(self))]
    pub async fn transcript(
        &self,
        tenant: &str,
        id: &str,
        wait: Duration,
    ) -> Result<StoredTranscript, TranscriptionError> {
        let started = tokio::time::Instant::now();
        let file = self.ingest.wait_done(tenant, id, wait).await?;
        if !file.status.is_terminal() {
            return Err(TranscriptionError::NotReady {
                id: file.id,
                status: file.status.as_str(),
                progress: file.progress,
                waited: started.elapsed(),
            });
        }
        Ok(self.ingest.transcript(tenant, id).await?)
    }

    /// Transcribes a clip given in a request (not stored). Fails fast when the engine is busy.
    #[instrument(skip(self, bytes, options), fields(bytes = bytes.len()))]
    pub async fn transcribe_clip(
        &self,
        bytes: Vec<u8>,
        filename: String,
        options: TranscribeOptions,
    ) -> Result<FileTranscript, ClipError> {
        self.ingest.transcribe_clip(bytes, filename, options).await
    }
}
