//! The one error shape every endpoint answers with, OpenAI's:
//! `{"error": {"message", "type", "code", "param", "request_id"}}`, the table mapping each error code to
//! its type and HTTP status, and the one place where every domain error becomes a code: explicit `From`
//! impls with exhaustive matches and no catch-all arm, so a new variant does not compile until it is mapped.
#![warn(clippy::wildcard_enum_match_arm)]

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::app::batches::BatchError;
use crate::app::chat::{ChatError, ChatFilesError, CompletionError, RouteError};
use crate::app::document_batches::DocumentBatchError;
use crate::app::embeddings::{EmbedError, EmbeddingsError};
use crate::app::files::{DetectError, ExtractError, FileOpError, RETRY_AFTER_SECS, UploadError};
use crate::app::keys::KeyError;
use crate::app::search::SearchError;
use crate::app::transcription::{
    AsrError, ClipError, TranscribeError, TranscriptError, TranscriptionError,
};
use crate::app::webhooks::WebhookError;
use crate::auth::AuthError;

tokio::task_local! {
    /// The current request's id, set by the edge middleware for the whole request.
    pub static REQUEST_ID: String;
}

/// Every error docpipe reports. The table in [`ErrorCode::spec`] gives each its status, type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    FileTooLarge,
    BodyTooLarge,
    EmptyFile,
    UnsupportedFileType,
    ContentTypeMismatch,
    FileNotFound,
    ModelNotFound,
    TooManyTokens,
    ContextLengthExceeded,
    RouteNotFound,
    MethodNotAllowed,
    FileNotReady,
    Overloaded,
    Internal,
    MissingApiKey,
    InvalidApiKey,
    ExpiredApiKey,
    RevokedApiKey,
    InsufficientScope,
    RateLimited,
    KeyNotFound,
    NotAudio,
    InvalidAudio,
    BatchNotFound,
    BatchNotCancellable,
    NotExtracted,
    WebhookNotFound,
    DeliveryNotFound,
}

/// Status, OpenAI error type and code of an [`ErrorCode`].
pub struct ErrorSpec {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
}

impl ErrorCode {
    /// The table. Exhaustive by construction: adding a code without a row does not compile.
    pub fn spec(self) -> ErrorSpec {
        let (status, kind, code) = match self {
            ErrorCode::InvalidRequest => (400, "invalid_request_error", "invalid_request"),
            ErrorCode::FileTooLarge => (413, "invalid_request_error", "file_too_large"),
            ErrorCode::BodyTooLarge => (413, "invalid_request_error", "body_too_large"),
            ErrorCode::EmptyFile => (422, "invalid_request_error", "empty_file"),
            ErrorCode::UnsupportedFileType => {
                (415, "invalid_request_error", "unsupported_file_type")
            }
            ErrorCode::ContentTypeMismatch => {
                (415, "invalid_request_error", "content_type_mismatch")
            }
            ErrorCode::FileNotFound => (404, "not_found_error", "file_not_found"),
            ErrorCode::ModelNotFound => (404, "invalid_request_error", "model_not_found"),
            ErrorCode::TooManyTokens => (413, "invalid_request_error", "too_many_tokens"),
            ErrorCode::ContextLengthExceeded => {
                (400, "invalid_request_error", "context_length_exceeded")
            }
            ErrorCode::RouteNotFound => (404, "not_found_error", "not_found"),
            ErrorCode::MethodNotAllowed => (405, "invalid_request_error", "method_not_allowed"),
            ErrorCode::FileNotReady => (409, "invalid_request_error", "file_not_ready"),
            ErrorCode::Overloaded => (503, "server_error", "overloaded"),
            ErrorCode::Internal => (500, "server_error", "internal_error"),
            ErrorCode::MissingApiKey => (401, "authentication_error", "missing_api_key"),
            ErrorCode::InvalidApiKey => (401, "authentication_error", "invalid_api_key"),
            ErrorCode::ExpiredApiKey => (401, "authentication_error", "expired_api_key"),
            ErrorCode::RevokedApiKey => (401, "authentication_error", "revoked_api_key"),
            ErrorCode::InsufficientScope => (403, "permission_error", "insufficient_scope"),
            ErrorCode::RateLimited => (429, "rate_limit_error", "rate_limit_exceeded"),
            ErrorCode::KeyNotFound => (404, "not_found_error", "key_not_found"),
            ErrorCode::NotAudio => (422, "invalid_request_error", "not_audio"),
            ErrorCode::InvalidAudio => (422, "invalid_request_error", "invalid_audio"),
            ErrorCode::WebhookNotFound => (404, "not_found_error", "webhook_not_found"),
            ErrorCode::DeliveryNotFound => (404, "not_found_error", "delivery_not_found"),
            ErrorCode::NotExtracted => (409, "invalid_request_error", "not_extracted"),
            ErrorCode::BatchNotFound => (404, "not_found_error", "batch_not_found"),
            ErrorCode::BatchNotCancellable => {
                (409, "invalid_request_error", "batch_not_cancellable")
            }
        };
        ErrorSpec { status, kind, code }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// Details of an error.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorDetail {
    /// A human-readable explanation.
    pub message: String,
    /// The error class, as in OpenAI's API: `invalid_request_error`, `not_found_error`, `server_error`, ...
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// A stable machine-readable code, e.g. `file_too_large`.
    pub code: String,
    /// The request parameter at fault, when one is.
    #[oai(nullable)]
    pub param: Option<String>,
    /// The request's id (also in the `X-Request-Id` response header); quote it when reporting a problem.
    #[oai(nullable)]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// Builds the body for a code, with the current request's id.
    pub fn new(code: ErrorCode, message: impl Into<String>, param: Option<&str>) -> ErrorBody {
        let spec = code.spec();
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: spec.kind.to_owned(),
                code: spec.code.to_owned(),
                param: param.map(str::to_owned),
                request_id: REQUEST_ID.try_with(Clone::clone).ok(),
            },
        }
    }
}

/// Error responses of the API; every operation lists them all in the OpenAPI document.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed: a missing field, a bad parameter value.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No API key, or an invalid, expired or revoked one (only when the server has keys configured).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The API key lacks the scope this operation needs (`read` < `write` < `admin`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such file, batch or webhook (also for ids that belong to someone else), model or route.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The file is not ready yet (still queued or processing after the request's wait; `Retry-After` says
    /// when to ask again) or failed (no `Retry-After`); or the batch has finished and cannot be cancelled.
    #[oai(status = 409)]
    Conflict(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
    /// The upload or body is larger than the configured limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The file's type is not supported, or its extension contradicts its content.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The file cannot be processed (for example it is empty).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests from this key (or client IP) in the rate-limit window; retry after `Retry-After`
    /// seconds. Every answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
    /// An unexpected server error.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The server is overloaded; retry after the number of seconds in `Retry-After`.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] String),
}

impl ApiError {
    /// The error's body, for errors reported inside a stream that has already started.
    pub fn into_body(self) -> ErrorBody {
        match self {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b)
            | ApiError::Forbidden(b)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b, _)
            | ApiError::PayloadTooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::Unprocessable(b)
            | ApiError::Internal(b)
            | ApiError::TooManyRequests(b, _)
            | ApiError::Unavailable(b, _) => b.0,
        }
    }

    /// The error response for a code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::with_param(code, message, None)
    }

    /// The error response for a code blaming a request parameter.
    pub fn with_param(
        code: ErrorCode,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> ApiError {
        let body = Json(ErrorBody::new(code, message, param));
        // The response variant of each code; `codes_map_to_their_status` checks it against the table.
        match code {
            // Only the edge middleware answers 405, with its own status; raised here it is a bad request.
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::MethodNotAllowed => ApiError::BadRequest(body),
            ErrorCode::MissingApiKey
            | ErrorCode::InvalidApiKey
            | ErrorCode::ExpiredApiKey
            | ErrorCode::RevokedApiKey => ApiError::Unauthorized(body),
            ErrorCode::InsufficientScope => ApiError::Forbidden(body),
            ErrorCode::FileNotFound
            | ErrorCode::ModelNotFound
            | ErrorCode::RouteNotFound
            | ErrorCode::KeyNotFound
            | ErrorCode::BatchNotFound
            | ErrorCode::WebhookNotFound
            | ErrorCode::DeliveryNotFound => ApiError::NotFound(body),
            ErrorCode::FileNotReady | ErrorCode::BatchNotCancellable | ErrorCode::NotExtracted => {
                ApiError::Conflict(body, None)
            }
            ErrorCode::FileTooLarge | ErrorCode::BodyTooLarge | ErrorCode::TooManyTokens => {
                ApiError::PayloadTooLarge(body)
            }
            ErrorCode::UnsupportedFileType | ErrorCode::ContentTypeMismatch => {
                ApiError::UnsupportedMediaType(body)
            }
            ErrorCode::EmptyFile | ErrorCode::NotAudio | ErrorCode::InvalidAudio => {
                ApiError::Unprocessable(body)
            }
            ErrorCode::RateLimited => ApiError::TooManyRequests(body, "1".to_owned()),
            ErrorCode::Overloaded => ApiError::Unavailable(body, RETRY_AFTER_SECS.to_string()),
            ErrorCode::Internal => ApiError::Internal(body),
        }
    }

    /// A 409 for a file still being processed: `Retry-After` tells when to ask again.
    pub fn not_ready(message: impl Into<String>, param: &str) -> ApiError {
        ApiError::Conflict(
            Json(ErrorBody::new(
                ErrorCode::FileNotReady,
                message,
                Some(param),
            )),
            Some(RETRY_AFTER_SECS.to_string()),
        )
    }

    /// A 500 that logs the cause and tells the client only the request id.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "an internal error occurred; the request id identifies it in the logs",
        )
    }
}

/// poem-openapi's request parsing errors (missing multipart field, bad query value, bad JSON) in our shape.
/// Authentication refusals raised by the `Caller` extractor arrive here too and keep their status.
fn bad_request(err: poem::Error) -> ApiError {
    if let Some(e) = err.downcast_ref::<AuthError>() {
        return ApiError::new(super::auth::auth_code(*e), e.to_string());
    }
    ApiError::new(ErrorCode::InvalidRequest, err.to_string())
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::Invalid(message, param) => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
            }
            KeyError::OtherTenant => {
                ApiError::with_param(ErrorCode::InsufficientScope, e.to_string(), Some("tenant"))
            }
            KeyError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> ApiError {
        let message = e.to_string();
        match e {
            BatchError::NotFound(_) => {
                ApiError::with_param(ErrorCode::BatchNotFound, message, Some("batch_id"))
            }
            BatchError::InputNotFound(_) => {
                ApiError::with_param(ErrorCode::FileNotFound, message, Some("input_file_id"))
            }
            BatchError::Invalid { param, .. } => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
            }
            BatchError::NotCancellable(_) => {
                ApiError::with_param(ErrorCode::BatchNotCancellable, message, Some("batch_id"))
            }
            BatchError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<DocumentBatchError> for ApiError {
    fn from(e: DocumentBatchError) -> ApiError {
        let message = e.to_string();
        match e {
            DocumentBatchError::NotFound(_) => {
                ApiError::with_param(ErrorCode::BatchNotFound, message, Some("batch_id"))
            }
            DocumentBatchError::Invalid { param, .. } => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
            }
            DocumentBatchError::TooManyFiles { .. } => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some("file"))
            }
            DocumentBatchError::Upload(e) => e.into(),
            DocumentBatchError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        let message = e.to_string();
        match e {
            WebhookError::NotFound(_) => {
                ApiError::with_param(ErrorCode::WebhookNotFound, message, Some("webhook_id"))
            }
            WebhookError::DeliveryNotFound(_) => {
                ApiError::with_param(ErrorCode::DeliveryNotFound, message, Some("delivery_id"))
            }
            WebhookError::Invalid { param, .. } => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
            }
            WebhookError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        let message = e.to_string();
        match e {
            UploadError::TooLarge { .. } => {
                ApiError::with_param(ErrorCode::FileTooLarge, message, Some("file"))
            }
            UploadError::Detect(DetectError::Empty) => {
                ApiError::with_param(ErrorCode::EmptyFile, message, Some("file"))
            }
            UploadError::Detect(DetectError::Unsupported { .. }) => {
                ApiError::with_param(ErrorCode::UnsupportedFileType, message, Some("file"))
            }
            UploadError::Detect(DetectError::Mismatch { .. }) => {
                ApiError::with_param(ErrorCode::ContentTypeMismatch, message, Some("file"))
            }
            UploadError::Overloaded { .. } => ApiError::new(ErrorCode::Overloaded, message),
            UploadError::Read(_) => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some("file"))
            }
            UploadError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<FileOpError> for ApiError {
    fn from(e: FileOpError) -> ApiError {
        let message = e.to_string();
        match e {
            FileOpError::NotFound(_) => {
                ApiError::with_param(ErrorCode::FileNotFound, message, Some("file_id"))
            }
            FileOpError::NotReady { status, .. } if status != "failed" => {
                ApiError::not_ready(message, "file_id")
            }
            FileOpError::NotReady { .. } => {
                ApiError::with_param(ErrorCode::FileNotReady, message, Some("file_id"))
            }
            FileOpError::NotExtracted { .. } => {
                ApiError::with_param(ErrorCode::NotExtracted, message, Some("file_id"))
            }
            FileOpError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::BadRequest(message, param) => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
            }
            SearchError::Overloaded => ApiError::new(ErrorCode::Overloaded, e.to_string()),
            SearchError::Embed(_)
            | SearchError::Text(_)
            | SearchError::Vector(_)
            | SearchError::Store(_)
            | SearchError::Task(_) => ApiError::internal(&e),
        }
    }
}

impl From<EmbeddingsError> for ApiError {
    fn from(e: EmbeddingsError) -> ApiError {
        let message = e.to_string();
        match e {
            EmbeddingsError::TooManyInputs { .. } | EmbeddingsError::InputTooLong { .. } => {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some("input"))
            }
            EmbeddingsError::TooManyTokens { .. } => {
                ApiError::with_param(ErrorCode::TooManyTokens, message, Some("input"))
            }
            EmbeddingsError::Embed(e) => match e {
                EmbedError::Overloaded | EmbedError::ShutDown => {
                    ApiError::new(ErrorCode::Overloaded, message)
                }
                EmbedError::TooManyInputs { .. } => {
                    ApiError::with_param(ErrorCode::InvalidRequest, message, Some("input"))
                }
                EmbedError::ModelFile { .. }
                | EmbedError::ModelConfig { .. }
                | EmbedError::TokenizerFile { .. }
                | EmbedError::Weights(_)
                | EmbedError::Device(_)
                | EmbedError::InvalidConfig(_)
                | EmbedError::Tokenize(_)
                | EmbedError::Inference(_)
                | EmbedError::Spawn(_) => ApiError::internal(&e),
            },
        }
    }
}

impl From<TranscriptionError> for ApiError {
    fn from(e: TranscriptionError) -> ApiError {
        match e {
            TranscriptionError::File(e) => e.into(),
            TranscriptionError::NotReady { .. } => ApiError::not_ready(e.to_string(), "file_id"),
            TranscriptionError::Transcript(e) => e.into(),
        }
    }
}

impl From<TranscriptError> for ApiError {
    fn from(e: TranscriptError) -> ApiError {
        let message = e.to_string();
        match e {
            TranscriptError::NotAudio { .. } => {
                ApiError::with_param(ErrorCode::NotAudio, message, Some("file_id"))
            }
            TranscriptError::File(e) => e.into(),
        }
    }
}

impl From<ClipError> for ApiError {
    fn from(e: ClipError) -> ApiError {
        let message = e.to_string();
        let file = Some("file");
        match e {
            ClipError::Detect(DetectError::Empty) => {
                ApiError::with_param(ErrorCode::EmptyFile, message, file)
            }
            ClipError::Detect(DetectError::Unsupported { .. }) => {
                ApiError::with_param(ErrorCode::UnsupportedFileType, message, file)
            }
            ClipError::Detect(DetectError::Mismatch { .. }) => {
                ApiError::with_param(ErrorCode::ContentTypeMismatch, message, file)
            }
            ClipError::NotAudio(_) => ApiError::with_param(ErrorCode::NotAudio, message, file),
            ClipError::Transcribe(TranscribeError::Audio(e)) => match e {
                ExtractError::Timeout => ApiError::internal(&e),
                ExtractError::Corrupt(_)
                | ExtractError::EncryptedPdf
                | ExtractError::PasswordProtected
                | ExtractError::LimitExceeded(_)
                | ExtractError::Ocr(_)
                | ExtractError::Empty(_)
                | ExtractError::Transcription(_)
                | ExtractError::Crashed(_) => {
                    ApiError::with_param(ErrorCode::InvalidAudio, message, file)
                }
            },
            ClipError::Transcribe(TranscribeError::Asr(e)) => match e {
                AsrError::Overloaded => ApiError::new(ErrorCode::Overloaded, message),
                AsrError::Language(_) => {
                    ApiError::with_param(ErrorCode::InvalidRequest, message, Some("language"))
                }
                AsrError::Convert(_)
                | AsrError::Load { .. }
                | AsrError::InvalidConfig(_)
                | AsrError::Inference(_)
                | AsrError::Timeout
                | AsrError::ShutDown
                | AsrError::Spawn(_) => ApiError::internal(&e),
            },
            ClipError::NoEngine => ApiError::internal(&message),
        }
    }
}

/// The code of a chat model's error, for the HTTP status before a stream starts and for the error event
/// inside one. A failing remote provider is `overloaded` (503, retry later) like a full local queue.
pub fn chat_code(e: &ChatError) -> ErrorCode {
    match e {
        ChatError::ContextLengthExceeded { .. } => ErrorCode::ContextLengthExceeded,
        ChatError::InvalidParameter { .. } => ErrorCode::InvalidRequest,
        ChatError::Overloaded | ChatError::ShutDown | ChatError::Remote(_) => ErrorCode::Overloaded,
        ChatError::Inference(_) => ErrorCode::Internal,
    }
}

/// The error response for a chat model's error; `prompt_param` is blamed for a prompt that does not fit.
pub fn chat_error(e: ChatError, prompt_param: &str) -> ApiError {
    let code = chat_code(&e);
    let message = e.to_string();
    match e {
        ChatError::ContextLengthExceeded { .. } => {
            ApiError::with_param(code, message, Some(prompt_param))
        }
        ChatError::InvalidParameter { param, .. } => {
            ApiError::with_param(code, message, Some(param))
        }
        ChatError::Overloaded | ChatError::ShutDown | ChatError::Remote(_) => {
            ApiError::new(code, message)
        }
        ChatError::Inference(_) => ApiError::internal(&e),
    }
}

impl From<CompletionError> for ApiError {
    fn from(e: CompletionError) -> ApiError {
        let message = e.to_string();
        match e {
            CompletionError::ModelNotFound { .. } => {
                ApiError::with_param(ErrorCode::ModelNotFound, message, Some("model"))
            }
            CompletionError::Chat {
                source,
                prompt_param,
            } => chat_error(source, prompt_param),
            CompletionError::Routed(e) => e.into(),
        }
    }
}

impl From<ChatFilesError> for ApiError {
    fn from(e: ChatFilesError) -> ApiError {
        let message = e.to_string();
        match e {
            ChatFilesError::BadRequest(m, param) => {
                ApiError::with_param(ErrorCode::InvalidRequest, m, Some(param))
            }
            ChatFilesError::FileNotFound(_) => {
                ApiError::with_param(ErrorCode::FileNotFound, message, Some("file_ids"))
            }
            ChatFilesError::FileNotReady { status, .. } if status != "failed" => {
                ApiError::not_ready(message, "file_ids")
            }
            ChatFilesError::FileNotReady { .. } => {
                ApiError::with_param(ErrorCode::FileNotReady, message, Some("file_ids"))
            }
            ChatFilesError::ModelNotFound(_) => {
                ApiError::with_param(ErrorCode::ModelNotFound, message, Some("model"))
            }
            ChatFilesError::Route(RouteError::NothingFits { .. }) => {
                ApiError::with_param(ErrorCode::ContextLengthExceeded, message, Some("messages"))
            }
            ChatFilesError::Route(RouteError::NoModel(_)) => {
                ApiError::new(ErrorCode::Overloaded, message)
            }
            ChatFilesError::Route(RouteError::AllFailed(e)) | ChatFilesError::Chat(e) => {
                chat_error(e, "messages")
            }
            ChatFilesError::Search(e) => e.into(),
            ChatFilesError::Store(e) => ApiError::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let all = ALL;
        let mut codes: Vec<_> = all.iter().map(|c| c.spec().code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|c| (400..600).contains(&c.spec().status)));
    }

    const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::FileTooLarge,
        ErrorCode::BodyTooLarge,
        ErrorCode::EmptyFile,
        ErrorCode::UnsupportedFileType,
        ErrorCode::ContentTypeMismatch,
        ErrorCode::FileNotFound,
        ErrorCode::ModelNotFound,
        ErrorCode::TooManyTokens,
        ErrorCode::ContextLengthExceeded,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::FileNotReady,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
        ErrorCode::MissingApiKey,
        ErrorCode::InvalidApiKey,
        ErrorCode::ExpiredApiKey,
        ErrorCode::RevokedApiKey,
        ErrorCode::InsufficientScope,
        ErrorCode::RateLimited,
        ErrorCode::KeyNotFound,
        ErrorCode::NotAudio,
        ErrorCode::InvalidAudio,
        ErrorCode::BatchNotFound,
        ErrorCode::BatchNotCancellable,
        ErrorCode::NotExtracted,
        ErrorCode::WebhookNotFound,
        ErrorCode::DeliveryNotFound,
    ];

    /// A refusal recorded inside a document batch carries the code the same refusal of a single upload
    /// answers with.
    #[test]
    fn upload_refusals_have_the_api_codes() {
        use crate::app::files::{DetectError, UploadError};
        let cases = [
            UploadError::TooLarge { limit: 1 },
            UploadError::Detect(DetectError::Empty),
            UploadError::Detect(DetectError::Unsupported {
                detected: "x".into(),
            }),
            UploadError::Detect(DetectError::Mismatch {
                extension: "a".into(),
                detected: "b".into(),
            }),
            UploadError::Overloaded { queued: 1 },
            UploadError::Read(std::io::Error::other("x")),
        ];
        for e in cases {
            let code = e.code();
            let body = ApiError::from(e).into_body();
            assert_eq!(body.error.code, code);
        }
    }

    /// Every code's response has the status its table row gives (405 only comes from the edge middleware;
    /// raised by a handler it is a 400).
    #[test]
    fn codes_map_to_their_status() {
        use poem::IntoResponse as _;
        for code in ALL {
            let status = ApiError::new(*code, "x").into_response().status().as_u16();
            let expected = match code.spec().status {
                405 => 400,
                s => s,
            };
            assert_eq!(status, expected, "{code:?}");
        }
    }
}
