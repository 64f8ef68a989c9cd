//! The model catalog clients see (`/v1/models`): the embedder, the router (`auto`), the chat models, the
//! transcription model and the configured aliases, each with its kind and context window.

use super::App;
use crate::router::AUTO;

/// Whisper's decoder window in tokens (it hears audio 30 s at a time).
const WHISPER_WINDOW_TOKENS: usize = 448;

/// What a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// The embedding model.
    Embedding,
    /// `auto`: the complexity router picks a chat model.
    Router,
    /// A local chat model.
    Chat,
    /// The speech recognition model.
    Transcription,
    /// A name that stands for another model.
    Alias,
}

impl ModelKind {
    /// The kind's name in the model list.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::Router => "router",
            ModelKind::Chat => "chat",
            ModelKind::Transcription => "transcription",
            ModelKind::Alias => "alias",
        }
    }
}

/// A model this server runs (or a name for one).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Its id.
    pub id: String,
    /// Who provides it.
    pub owned_by: String,
    /// What it is.
    pub kind: ModelKind,
    /// For an alias: the id it stands for.
    pub resolves_to: Option<String>,
    /// Context window in tokens.
    pub context_window: usize,
    /// Vector size, for embedding models (and their aliases).
    pub dimensions: Option<usize>,
}

impl App {
    /// Unix seconds of the process start (`created` of every model).
    pub fn started_unix(&self) -> i64 {
        self.started_unix
    }

    /// Every model this server runs, then the aliases.
    pub fn models(&self) -> Vec<ModelInfo> {
        let owned = || "docpipe".to_owned();
        let mut list = vec![ModelInfo {
            id: super::embeddings::MODEL_NAME.into(),
            owned_by: owned(),
            kind: ModelKind::Embedding,
            resolves_to: None,
            context_window: super::embeddings::MAX_TOKENS,
            dimensions: Some(super::embeddings::DIMENSIONS),
        }];
        let chat = self.chat.infos();
        let chat_window = chat
            .iter()
            .map(|i| i.context_window)
            .max()
            .unwrap_or_default();
        list.push(ModelInfo {
            id: AUTO.into(),
            owned_by: owned(),
            kind: ModelKind::Router,
            resolves_to: None,
            context_window: chat_window,
            dimensions: None,
        });
        list.extend(chat.into_iter().map(|info| ModelInfo {
            id: info.id,
            owned_by: info.owned_by,
            kind: ModelKind::Chat,
            resolves_to: None,
            context_window: info.context_window,
            dimensions: None,
        }));
        list.push(ModelInfo {
            id: crate::models::asr::MODEL_NAME.into(),
            owned_by: owned(),
            kind: ModelKind::Transcription,
            resolves_to: None,
            context_window: WHISPER_WINDOW_TOKENS,
            dimensions: None,
        });
        let aliases = self.router.aliases();
        let alias = |id: &String, target: &String, embedding: bool| ModelInfo {
            id: id.clone(),
            owned_by: owned(),
            kind: ModelKind::Alias,
            resolves_to: Some(target.clone()),
            context_window: if embedding {
                super::embeddings::MAX_TOKENS
            } else {
                chat_window
            },
            dimensions: embedding.then_some(super::embeddings::DIMENSIONS),
        };
        list.extend(aliases.chat.iter().map(|(a, t)| alias(a, t, false)));
        list.extend(aliases.embeddings.iter().map(|(a, t)| alias(a, t, true)));
        list
    }

    /// The model `name` stands for: an id (case-insensitive), a name of the embedding model, or a name of a
    /// loaded chat model.
    pub fn model(&self, name: &str) -> Option<ModelInfo> {
        self.models().into_iter().find(|m| {
            m.id.eq_ignore_ascii_case(name)
                || (m.kind == ModelKind::Embedding && self.is_embedding_model(name))
                || (m.kind == ModelKind::Chat
                    && self.chat.get(name).is_some_and(|b| b.info().id == m.id))
        })
    }
}
