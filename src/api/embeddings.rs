//! `POST /v1/embeddings` (OpenAI shape), served by the same MiniLM model that indexes uploaded files.

use super::json_body::JsonBody;
use base64::Engine as _;
use poem_openapi::payload::{Json, Response};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use crate::app::App;
use crate::app::embeddings::{DIMENSIONS, MODEL_NAME};

/// Header listing the indexes of inputs that were truncated to the window.
const TRUNCATED_HEADER: &str = "X-Truncated-Inputs";

/// How embeddings are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// Arrays of floats (default).
    Float,
    /// Base64 of little-endian f32.
    Base64,
}

/// An OpenAI embeddings request.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct EmbeddingsRequest {
    /// A string or an array of strings to embed (token arrays are not supported).
    pub input: serde_json::Value,
    /// `all-MiniLM-L6-v2`.
    pub model: String,
    /// `float` (default) or `base64` (little-endian f32).
    #[oai(nullable)]
    pub encoding_format: Option<EncodingFormat>,
    /// Must be 384 when given (the model's only size).
    #[oai(nullable, validator(minimum(value = "384"), maximum(value = "384")))]
    pub dimensions: Option<u32>,
    /// Ignored; accepted for compatibility.
    #[oai(nullable)]
    pub user: Option<String>,
}

impl poem_openapi::types::Example for EmbeddingsRequest {
    /// What Swagger UI's "Try it out" sends.
    fn example() -> EmbeddingsRequest {
        EmbeddingsRequest {
            input: serde_json::json!(["The invoice is due in March."]),
            model: MODEL_NAME.to_owned(),
            encoding_format: Some(EncodingFormat::Float),
            dimensions: None,
            user: None,
        }
    }
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

/// The embeddings endpoint.
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
        let base64 = req.encoding_format == Some(EncodingFormat::Base64);
        if req.dimensions.is_some_and(|d| d as usize != DIMENSIONS) {
            return Err(bad(
                format!("dimensions must be {DIMENSIONS} for {MODEL_NAME}"),
                "dimensions",
            ));
        }
        let texts = inputs(req.input)?;
        let embeddings = self.app.embed(texts).await?;
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
}
