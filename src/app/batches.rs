//! OpenAI batches: create (checked here, validated line by line by the runner), read, list and cancel. The
//! runner ([`crate::jobs::batches`]) does the work in the background and survives restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::instrument;

pub use crate::jobs::batches::{
    Answer, COMPLETION_WINDOW, Call, ENDPOINTS, Executor, LineError, MAX_REQUESTS,
};
pub use crate::store::BatchRow;
pub use crate::types::BatchStatus;

use super::{App, Running};
use crate::auth::Principal;
use crate::store::{NewBatch, StoreError};

/// The purpose a batch's input file must have been uploaded with.
pub const INPUT_PURPOSE: &str = "batch";

/// What a client asks for.
pub struct BatchSpec {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Why a batch operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("no batch with id {0}")]
    NotFound(String),
    #[error("no file with id {0}")]
    InputNotFound(String),
    #[error("{message}")]
    Invalid {
        message: String,
        param: &'static str,
    },
    #[error("the batch is {} and can no longer be cancelled", .0.as_str())]
    NotCancellable(BatchStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>, param: &'static str) -> BatchError {
    BatchError::Invalid {
        message: message.into(),
        param,
    }
}

fn check_metadata(metadata: Option<&BTreeMap<String, String>>) -> Result<(), BatchError> {
    metadata.map_or(Ok(()), |m| {
        crate::types::check_metadata(m).map_err(|message| invalid(message, "metadata"))
    })
}

impl App {
    /// Starts the batch runner with the executor the HTTP layer provides; it stops with the other workers.
    pub fn start_batches(&self, running: &mut Running, executor: Arc<dyn Executor>) {
        running
            .workers
            .push(self.batches.spawn(executor, self.stop.clone()));
    }

    /// Creates a batch in `validating`; the runner validates its lines and runs them.
    #[instrument(skip_all, fields(tenant = %by.tenant))]
    pub async fn create_batch(
        &self,
        by: &Principal,
        spec: BatchSpec,
    ) -> Result<BatchRow, BatchError> {
        if !ENDPOINTS.contains(&spec.endpoint.as_str()) {
            return Err(invalid(
                format!(
                    "endpoint must be one of {}, not {:?}",
                    ENDPOINTS.join(", "),
                    spec.endpoint
                ),
                "endpoint",
            ));
        }
        if spec.completion_window != COMPLETION_WINDOW {
            return Err(invalid(
                format!("completion_window must be {COMPLETION_WINDOW:?}"),
                "completion_window",
            ));
        }
        check_metadata(spec.metadata.as_ref())?;
        let file = self
            .store
            .file(&by.tenant, &spec.input_file_id)
            .await?
            .ok_or_else(|| BatchError::InputNotFound(spec.input_file_id.clone()))?;
        if file.purpose.as_deref() != Some(INPUT_PURPOSE) {
            return Err(invalid(
                format!(
                    "input_file_id: file {} was uploaded with purpose {:?}; a batch reads a JSONL file uploaded with purpose \"{INPUT_PURPOSE}\"",
                    file.id,
                    file.purpose
                        .as_deref()
                        .unwrap_or(crate::store::DEFAULT_PURPOSE)
                ),
                "input_file_id",
            ));
        }
        let id = format!("batch_{}", uuid::Uuid::new_v4().simple());
        let metadata = spec
            .metadata
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        let window = i64::try_from(crate::jobs::batches::WINDOW.as_millis()).unwrap_or(i64::MAX);
        let row = self
            .store
            .insert_batch(&NewBatch {
                id: &id,
                tenant: &by.tenant,
                key_id: by.key_id.as_deref(),
                endpoint: &spec.endpoint,
                input_file_id: &file.id,
                completion_window: &spec.completion_window,
                metadata: metadata.as_deref(),
                expires_at: chrono::Utc::now().timestamp_millis() + window,
            })
            .await?;
        self.batches.wake();
        Ok(row)
    }

    /// One batch of a tenant.
    #[instrument(skip(self))]
    pub async fn batch(&self, tenant: &str, id: &str) -> Result<BatchRow, BatchError> {
        self.store
            .batch(tenant, id)
            .await?
            .ok_or_else(|| BatchError::NotFound(id.to_owned()))
    }

    /// A page of a tenant's batches, newest first, after the batch `after`; and whether more follow.
    #[instrument(skip(self))]
    pub async fn batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<BatchRow>, bool), BatchError> {
        self.store
            .list_batches(tenant, after, limit)
            .await?
            .ok_or_else(|| {
                invalid(
                    format!(
                        "after: no batch with id {} to list after (pass the id of a batch from the previous page)",
                        after.unwrap_or_default()
                    ),
                    "after",
                )
            })
    }

    /// Cancels a batch that is validating or running: it moves to `cancelling` at once, its running request
    /// stops, and the runner writes what finished and moves it to `cancelled`. Cancelling a batch that is
    /// already cancelling or cancelled answers its record.
    #[instrument(skip(self))]
    pub async fn cancel_batch(&self, tenant: &str, id: &str) -> Result<BatchRow, BatchError> {
        self.batch(tenant, id).await?;
        let moved = self
            .store
            .move_batch(
                id,
                &[BatchStatus::Validating, BatchStatus::InProgress],
                BatchStatus::Cancelling,
            )
            .await?;
        if moved {
            self.batches.interrupt(id);
        }
        let batch = self.batch(tenant, id).await?;
        match batch.status {
            BatchStatus::Cancelling | BatchStatus::Cancelled => Ok(batch),
            other => Err(BatchError::NotCancellable(other)),
        }
    }
}
