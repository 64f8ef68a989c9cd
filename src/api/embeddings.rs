//! `POST /v1/embeddings` (OpenAI shape) and the model list, served by the same MiniLM model that
//! indexes uploaded files.

use super::json_body::JsonBody;
use base64::Engine as _;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, Response};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use crate::app::App;
use crate::config::Overflow;
use crate::models::embed::{DIMENSIONS, EmbedError, MAX_TOKENS, MODEL_NAME};

/// Names accepted for the embedding model.
const MODEL_ALIASES: [&str; 2] = [MODEL_NAME, "sentence-transformers/all-MiniLM-L6-v2"];
/// Header listing the indexes of inputs that were truncated to the window.
const TRUNCATED_HEADER: &str = "X-Truncated-Inputs";

/// An OpenAI embeddings request.
#[derive(Debug, Clone, Object)]
pub struct EmbeddingsRequest {
    /// A string or an array of strings to embed (token arrays are not supported).
    pub input: serde_json::Value,
    /// `all-MiniLM-L6-v2`.
    pub model: String,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<String>,
    /// Must be 384 when given (the model's only size).
    pub dimensions: Option<u32>,
    /// Ignored; accepted for compatibility.
    pub user: Option<String>,
}

/// One embedding.
#[derive(Debug, Clone, Object)]
pub struct EmbeddingObject {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// 384 floats, or a base64 string of little-endian f32 with `encoding_format: base64`.
    pub embedding: serde_json::Value,
}

/// Token counts.
#[derive(Debug, Clone, Object)]
pub struct EmbeddingUsage {
    /// Tokens embedded (after truncation, including [CLS]/[SEP]).
    pub prompt_tokens: u64,
    /// Same as `prompt_tokens`.
    pub total_tokens: u64,
}

/// An OpenAI embeddings response.
#[derive(Debug, Clone, Object)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One per input, in order.
    pub data: Vec<EmbeddingObject>,
    /// The model used.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// A model in OpenAI's list shape, with its size facts.
#[derive(Debug, Clone, Object)]
pub struct ModelObject {
    /// The model's id.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds (the process start).
    pub created: i64,
    /// Always `docpipe`.
    pub owned_by: String,
    /// `embedding`, `chat`, `transcription`, `router` (`auto`: the complexity router picks a chat model) or
    /// `alias` (a name that stands for another model, e.g. `gpt-4o-mini` for `auto`).
    pub kind: String,
    /// For an alias: the id it stands for.
    pub resolves_to: Option<String>,
    /// Context window in tokens.
    pub context_window: u32,
    /// Vector size, for embedding models.
    pub dimensions: Option<u32>,
}

/// The model list.
#[derive(Debug, Clone, Object)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
}

fn inputs(value: serde_json::Value) -> Result<Vec<String>, ApiError> {
    match value {
        serde_json::Value::String(s) => Ok(vec![s]),
        serde_json::Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(bad("input must be a string or an array of strings (token arrays are not supported)", "input")),
            })
            .collect(),
        serde_json::Value::Array(_) => Err(bad("input must not be empty", "input")),
        _ => Err(bad("input must be a string or an array of strings", "input")),
    }
}

impl App {
    fn model_list(&self) -> Vec<ModelObject> {
        let mut list = vec![ModelObject {
            id: MODEL_NAME.into(),
            object: "model".into(),
            created: self.started_unix,
            owned_by: "docpipe".into(),
            kind: "embedding".into(),
            context_window: u32::try_from(MAX_TOKENS).unwrap_or(u32::MAX),
            dimensions: Some(u32::try_from(DIMENSIONS).unwrap_or(u32::MAX)),
            resolves_to: None,
        }];
        let chat_window = self
            .chat
            .infos()
            .iter()
            .map(|i| i.context_window)
            .max()
            .unwrap_or_default();
        let window = |w: usize| u32::try_from(w).unwrap_or(u32::MAX);
        list.push(ModelObject {
            id: crate::router::AUTO.into(),
            object: "model".into(),
            created: self.started_unix,
            owned_by: "docpipe".into(),
            kind: "router".into(),
            context_window: window(chat_window),
            dimensions: None,
            resolves_to: None,
        });
        list.extend(self.chat.infos().into_iter().map(|info| ModelObject {
            id: info.id,
            object: "model".into(),
            created: self.started_unix,
            owned_by: info.owned_by,
            kind: "chat".into(),
            context_window: u32::try_from(info.context_window).unwrap_or(u32::MAX),
            dimensions: None,
            resolves_to: None,
        }));
        list.push(ModelObject {
            id: crate::models::asr::MODEL_NAME.into(),
            object: "model".into(),
            created: self.started_unix,
            owned_by: "docpipe".into(),
            kind: "transcription".into(),
            // Whisper's decoder window in tokens (it hears audio 30 s at a time).
            context_window: 448,
            dimensions: None,
            resolves_to: None,
        });
        let aliases = self.router().aliases();
        let alias = |id: &String, target: &String, embedding: bool| ModelObject {
            id: id.clone(),
            object: "model".into(),
            created: self.started_unix,
            owned_by: "docpipe".into(),
            kind: "alias".into(),
            context_window: if embedding {
                window(MAX_TOKENS)
            } else {
                window(chat_window)
            },
            dimensions: embedding.then(|| window(DIMENSIONS)),
            resolves_to: Some(target.clone()),
        };
        list.extend(aliases.chat.iter().map(|(a, t)| alias(a, t, false)));
        list.extend(aliases.embeddings.iter().map(|(a, t)| alias(a, t, true)));
        list
    }

    /// True when `name` names the embedding model: its id, its sentence-transformers name or an alias
    /// (`[aliases.embeddings]`), case-insensitive.
    fn is_embedding_model(&self, name: &str) -> bool {
        MODEL_ALIASES.iter().any(|m| m.eq_ignore_ascii_case(name))
            || self
                .router()
                .aliases()
                .embeddings
                .iter()
                .any(|(a, t)| a.eq_ignore_ascii_case(name) && t.eq_ignore_ascii_case(MODEL_NAME))
    }
}

/// Embeddings and models endpoints.
pub struct EmbeddingsApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::OpenAi")]
impl EmbeddingsApi {
    /// Create embeddings
    ///
    /// OpenAI-compatible: embeds `input` with all-MiniLM-L6-v2 (384 dimensions, mean pooling, L2-normalised,
    /// as sentence-transformers). Inputs longer than the 256-token window are truncated (their indexes are
    /// listed in the `X-Truncated-Inputs` header) or, with `DOCPIPE_EMBED_OVERFLOW=reject`, refused with 400.
    #[oai(path = "/v1/embeddings", method = "post")]
    async fn create(
        &self,
        _caller: Caller,
        body: JsonBody<EmbeddingsRequest>,
    ) -> Result<Response<Json<EmbeddingsResponse>>, ApiError> {
        let req = body.0;
        if !self.app.is_embedding_model(&req.model) {
            return Err(ApiError::with_param(
                ErrorCode::ModelNotFound,
                format!(
                    "the model `{}` does not exist; use `{MODEL_NAME}`",
                    req.model
                ),
                Some("model"),
            ));
        }
        let base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(bad(
                    format!("encoding_format must be float or base64, not {other}"),
                    "encoding_format",
                ));
            }
        };
        if req.dimensions.is_some_and(|d| d as usize != DIMENSIONS) {
            return Err(bad(
                format!("dimensions must be {DIMENSIONS} for {MODEL_NAME}"),
                "dimensions",
            ));
        }
        let texts = inputs(req.input)?;
        let cfg = &self.app.config;
        if texts.len() > cfg.embed_max_inputs {
            return Err(bad(
                format!(
                    "at most {} inputs per request, got {}",
                    cfg.embed_max_inputs,
                    texts.len()
                ),
                "input",
            ));
        }
        let embedder = self.app.ingest.search().embedder();
        let counts: Vec<usize> = texts.iter().map(|t| embedder.count_tokens(t)).collect();
        let total: usize = counts.iter().sum();
        if total > cfg.embed_max_total_tokens {
            return Err(ApiError::with_param(
                ErrorCode::TooManyTokens,
                format!(
                    "the inputs have {total} tokens; at most {} per request",
                    cfg.embed_max_total_tokens
                ),
                Some("input"),
            ));
        }
        if cfg.embed_overflow == Overflow::Reject
            && let Some(i) = counts.iter().position(|&n| n > MAX_TOKENS)
        {
            return Err(bad(
                format!(
                    "input {i} has {} tokens; the model's window is {MAX_TOKENS}",
                    counts[i]
                ),
                "input",
            ));
        }
        let embeddings = embedder.embed(texts).await.map_err(|e| match e {
            EmbedError::Overloaded | EmbedError::ShutDown => {
                ApiError::new(ErrorCode::Overloaded, e.to_string())
            }
            EmbedError::TooManyInputs { .. } => bad(e.to_string(), "input"),
            other => ApiError::internal(&other),
        })?;
        let truncated = embeddings.truncated();
        let tokens = embeddings.embedded_tokens() as u64;
        let data = embeddings
            .into_vectors()
            .into_iter()
            .enumerate()
            .map(|(i, v)| EmbeddingObject {
                object: "embedding".into(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                embedding: if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    serde_json::Value::String(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    )
                } else {
                    serde_json::json!(v)
                },
            })
            .collect();
        let body = EmbeddingsResponse {
            object: "list".into(),
            data,
            model: MODEL_NAME.into(),
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        };
        let list = truncated
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut resp = Response::new(Json(body));
        if !list.is_empty() {
            resp = resp.header(TRUNCATED_HEADER, list);
        }
        Ok(resp)
    }

    /// List models
    ///
    /// Every model this server runs, with its kind and context window.
    #[oai(path = "/v1/models", method = "get")]
    #[expect(clippy::unused_async, reason = "poem-openapi handlers are async")]
    async fn models(&self, _caller: Caller) -> Json<ModelList> {
        Json(ModelList {
            object: "list".into(),
            data: self.app.model_list(),
        })
    }

    /// Get a model
    #[oai(path = "/v1/models/:model", method = "get")]
    #[expect(clippy::unused_async, reason = "poem-openapi handlers are async")]
    async fn model(
        &self,
        _caller: Caller,
        model: Path<String>,
    ) -> Result<Json<ModelObject>, ApiError> {
        self.app
            .model_list()
            .into_iter()
            .find(|m| {
                m.id.eq_ignore_ascii_case(&model.0)
                    || (m.kind == "embedding" && self.app.is_embedding_model(&model.0))
                    || (m.kind == "chat"
                        && self
                            .app
                            .chat
                            .get(&model.0)
                            .is_some_and(|b| b.info().id == m.id))
            })
            .map(Json)
            .ok_or_else(|| {
                ApiError::with_param(
                    ErrorCode::ModelNotFound,
                    format!("the model `{}` does not exist", model.0),
                    Some("model"),
                )
            })
    }
}
