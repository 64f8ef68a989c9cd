//! `GET /v1/models` and `GET /v1/models/{model}`: every model this server runs, in OpenAI's list shape.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use crate::app::App;
use crate::app::models::ModelInfo;

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
    #[oai(nullable)]
    pub resolves_to: Option<String>,
    /// Context window in tokens.
    pub context_window: u32,
    /// Vector size, for embedding models.
    #[oai(nullable)]
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

/// Saturates a size that does not fit the wire's `u32`.
fn wire(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl ModelObject {
    fn new(m: ModelInfo, created: i64) -> ModelObject {
        ModelObject {
            id: m.id,
            object: "model".into(),
            created,
            owned_by: m.owned_by,
            kind: m.kind.as_str().into(),
            resolves_to: m.resolves_to,
            context_window: wire(m.context_window),
            dimensions: m.dimensions.map(wire),
        }
    }
}

/// The model endpoints.
pub struct ModelsApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::OpenAi")]
impl ModelsApi {
    /// List models
    ///
    /// Every model this server runs, with its kind and context window.
    #[oai(path = "/v1/models", method = "get")]
    #[expect(clippy::unused_async, reason = "poem-openapi handlers are async")]
    async fn models(&self, _caller: Caller) -> Json<ModelList> {
        let created = self.app.started_unix();
        Json(ModelList {
            object: "list".into(),
            data: self
                .app
                .models()
                .into_iter()
                .map(|m| ModelObject::new(m, created))
                .collect(),
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
            .model(&model.0)
            .map(|m| Json(ModelObject::new(m, self.app.started_unix())))
            .ok_or_else(|| {
                ApiError::with_param(
                    ErrorCode::ModelNotFound,
                    format!("the model `{}` does not exist", model.0),
                    Some("model"),
                )
            })
    }
}
