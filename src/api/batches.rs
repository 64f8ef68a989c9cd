//! OpenAI Batch API (`/v1/batches`): create, retrieve, list and cancel, in OpenAI's shapes, so the official
//! SDKs' `batches.create/retrieve/list/cancel` work unchanged. The input is a JSONL file uploaded through
//! `/v1/files` with `purpose=batch`; results come back as `/v1/files` with `purpose=batch_output`.

use std::collections::BTreeMap;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::{Caller, Write};
use super::json_body::JsonBody;
use crate::app::App;
use crate::app::batches::{BatchRow, BatchSpec, COMPLETION_WINDOW, LineError};

/// Largest page of `GET /v1/batches`, and the default.
const MAX_LIMIT: u32 = 100;
const DEFAULT_LIMIT: u32 = 20;

/// A batch to create.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CreateBatchBody {
    /// A file uploaded through `POST /v1/files` with `purpose=batch`: one request per line,
    /// `{"custom_id", "method": "POST", "url", "body"}`, at most 50,000 lines.
    pub input_file_id: String,
    /// `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`; every line's `url` must be it. Chat
    /// bodies may carry `file_ids`, so one batch can ask the same question of many documents.
    pub endpoint: String,
    /// Always `24h`: requests not done within it expire.
    pub completion_window: String,
    /// Up to 16 pairs of strings (keys up to 64 characters, values up to 512), kept with the batch.
    #[oai(nullable)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl poem_openapi::types::Example for CreateBatchBody {
    fn example() -> CreateBatchBody {
        CreateBatchBody {
            input_file_id: "file-abc123".into(),
            endpoint: "/v1/embeddings".into(),
            completion_window: COMPLETION_WINDOW.into(),
            metadata: None,
        }
    }
}

/// A batch, in OpenAI's shape.
#[derive(Debug, Clone, Object)]
pub struct Batch {
    /// The batch's id (`batch_...`).
    pub id: String,
    /// Always `batch`.
    pub object: String,
    /// The endpoint its requests go to.
    pub endpoint: String,
    /// Why validation failed, when it did: each error with its input line.
    #[oai(nullable)]
    pub errors: Option<BatchErrors>,
    /// The input file.
    pub input_file_id: String,
    /// `24h`.
    pub completion_window: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`, `cancelling` or
    /// `cancelled`.
    pub status: String,
    /// The answers with a 2xx status, one JSONL line per request with its `custom_id` (once finished).
    #[oai(nullable)]
    pub output_file_id: Option<String>,
    /// The other answers (and expired requests), the same way.
    #[oai(nullable)]
    pub error_file_id: Option<String>,
    /// Unix seconds of each step; `null` until it happens.
    pub created_at: i64,
    #[oai(nullable)]
    pub in_progress_at: Option<i64>,
    pub expires_at: i64,
    #[oai(nullable)]
    pub finalizing_at: Option<i64>,
    #[oai(nullable)]
    pub completed_at: Option<i64>,
    #[oai(nullable)]
    pub failed_at: Option<i64>,
    #[oai(nullable)]
    pub expired_at: Option<i64>,
    #[oai(nullable)]
    pub cancelling_at: Option<i64>,
    #[oai(nullable)]
    pub cancelled_at: Option<i64>,
    /// Requests in the batch and how many finished each way.
    pub request_counts: RequestCounts,
    /// The metadata given at creation.
    #[oai(nullable)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Validation errors of a batch.
#[derive(Debug, Clone, Object)]
pub struct BatchErrors {
    /// Always `list`.
    pub object: String,
    /// The errors (the first 100).
    pub data: Vec<BatchLineError>,
}

/// One validation error.
#[derive(Debug, Clone, Object)]
pub struct BatchLineError {
    /// A machine-readable code (`invalid_json_line`, `duplicate_custom_id`, `mismatched_endpoint`, ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The field at fault.
    #[oai(nullable)]
    pub param: Option<String>,
    /// The 1-based line of the input file.
    #[oai(nullable)]
    pub line: Option<u64>,
}

/// Request counts of a batch.
#[derive(Debug, Clone, Object)]
pub struct RequestCounts {
    /// Requests in the batch.
    pub total: u64,
    /// Answered with a 2xx status.
    pub completed: u64,
    /// Answered otherwise, or expired.
    pub failed: u64,
}

/// A page of batches.
#[derive(Debug, Clone, Object)]
pub struct BatchList {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<Batch>,
    /// The first batch's id.
    #[oai(nullable)]
    pub first_id: Option<String>,
    /// The last batch's id: pass it as `after` for the next page.
    #[oai(nullable)]
    pub last_id: Option<String>,
    /// True when more batches follow.
    pub has_more: bool,
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl From<&BatchRow> for Batch {
    fn from(b: &BatchRow) -> Batch {
        let errors = b
            .errors
            .as_deref()
            .and_then(|e| serde_json::from_str::<Vec<LineError>>(e).ok())
            .map(|errors| BatchErrors {
                object: "list".into(),
                data: errors
                    .into_iter()
                    .map(|e| BatchLineError {
                        code: e.code,
                        message: e.message,
                        param: e.param,
                        line: e.line,
                    })
                    .collect(),
            });
        Batch {
            id: b.id.clone(),
            object: "batch".into(),
            endpoint: b.endpoint.clone(),
            errors,
            input_file_id: b.input_file_id.clone(),
            completion_window: b.completion_window.clone(),
            status: b.status.as_str().into(),
            output_file_id: b.output_file_id.clone(),
            error_file_id: b.error_file_id.clone(),
            created_at: secs(b.created_at),
            in_progress_at: b.in_progress_at.map(secs),
            expires_at: secs(b.expires_at),
            finalizing_at: b.finalizing_at.map(secs),
            completed_at: b.completed_at.map(secs),
            failed_at: b.failed_at.map(secs),
            expired_at: b.expired_at.map(secs),
            cancelling_at: b.cancelling_at.map(secs),
            cancelled_at: b.cancelled_at.map(secs),
            request_counts: RequestCounts {
                total: b.total,
                completed: b.completed,
                failed: b.failed,
            },
            metadata: b
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
        }
    }
}

/// The OpenAI batch endpoints.
pub struct BatchesApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::OpenAi")]
impl BatchesApi {
    /// Create a batch (OpenAI)
    ///
    /// Runs every request of a JSONL file uploaded with `purpose=batch` in the background, at lower
    /// priority than interactive requests. The batch starts in `validating`: a file with a bad line fails
    /// it as a whole, with `errors` naming each line and reason. Results survive restarts: a batch resumes
    /// where it was, never repeating a finished request.
    #[oai(path = "/v1/batches", method = "post")]
    async fn create(
        &self,
        caller: Caller<Write>,
        body: JsonBody<CreateBatchBody>,
    ) -> Result<Json<Batch>, super::error::ApiError> {
        let b = body.0;
        let row = self
            .app
            .create_batch(
                &caller.principal,
                BatchSpec {
                    input_file_id: b.input_file_id,
                    endpoint: b.endpoint,
                    completion_window: b.completion_window,
                    metadata: b.metadata,
                },
            )
            .await?;
        caller.audit("batch.create", &row.id);
        Ok(Json(Batch::from(&row)))
    }

    /// List batches (OpenAI)
    ///
    /// The caller's batches, newest first. Page with `after` (the `last_id` of the previous page).
    #[oai(path = "/v1/batches", method = "get")]
    async fn list(
        &self,
        caller: Caller,
        /// A cursor: the id of a batch; the page starts with the batch listed after it.
        after: Query<Option<String>>,
        /// Page size (1-100, default 20).
        limit: Query<Option<u32>>,
    ) -> Result<Json<BatchList>, super::error::ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let (rows, has_more) = self
            .app
            .batches(&caller.tenant, after.0.as_deref(), limit)
            .await?;
        let data: Vec<Batch> = rows.iter().map(Batch::from).collect();
        Ok(Json(BatchList {
            object: "list".into(),
            first_id: data.first().map(|b| b.id.clone()),
            last_id: data.last().map(|b| b.id.clone()),
            has_more,
            data,
        }))
    }

    /// Retrieve a batch (OpenAI)
    #[oai(path = "/v1/batches/:batch_id", method = "get")]
    async fn retrieve(
        &self,
        caller: Caller,
        batch_id: Path<String>,
    ) -> Result<Json<Batch>, super::error::ApiError> {
        let row = self.app.batch(&caller.tenant, &batch_id.0).await?;
        Ok(Json(Batch::from(&row)))
    }

    /// Cancel a batch (OpenAI)
    ///
    /// A validating or running batch moves to `cancelling` at once; its running request stops within
    /// seconds, and it ends `cancelled` with the results that finished in its output file. A finished batch
    /// cannot be cancelled (409 `batch_not_cancellable`).
    #[oai(path = "/v1/batches/:batch_id/cancel", method = "post")]
    async fn cancel(
        &self,
        caller: Caller<Write>,
        batch_id: Path<String>,
    ) -> Result<Json<Batch>, super::error::ApiError> {
        let row = self.app.cancel_batch(&caller.tenant, &batch_id.0).await?;
        caller.audit("batch.cancel", &row.id);
        Ok(Json(Batch::from(&row)))
    }
}
