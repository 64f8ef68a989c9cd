
/// The error code of an authentication failure.
pub fn auth_code(e: AuthError) -> ErrorCode {
    match e {
        AuthError::Missing => ErrorCode::MissingApiKey,
        AuthError::Invalid => ErrorCode::InvalidApiKey,
        AuthError::Expired => ErrorCode::ExpiredApiKey,
        AuthError::Revoked => ErrorCode::RevokedApiKey,
        AuthError::Forbidden(_) => ErrorCode::InsufficientScope,
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
                | ExtractError::Transcription(_) => {
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
        ChatError::InvalidParameter { param, .. } => ApiError::with_param(code, message, Some(param)),
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
