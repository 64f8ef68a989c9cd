//! The local chat models docpipe knows (the catalog) and the set of them loaded at start-up
//! (`DOCPIPE_CHAT_MODELS`), looked up by id or alias.

use std::path::Path;
use std::sync::Arc;

use super::engine::{EngineConfig, LocalChatModel, StartError};
use super::{ChatModelInfo, SharedChatBackend};
use crate::models::device::DeviceSpec;

/// One model of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Short name used in `DOCPIPE_CHAT_MODELS` (also accepted as `model`).
    pub key: &'static str,
    /// The id `/v1/models` lists and clients pass as `model`.
    pub id: &'static str,
    /// Other names accepted as `model`.
    pub aliases: &'static [&'static str],
    /// The GGUF file, relative to `DOCPIPE_MODELS_DIR`.
    pub file: &'static str,
}

/// Every local chat model docpipe can run, fastest first.
pub static CATALOG: [CatalogEntry; 2] = [
    CatalogEntry {
        key: "smollm2",
        id: "smollm2-135m-instruct",
        aliases: &[
            "SmolLM2-135M-Instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        ],
        file: "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    CatalogEntry {
        key: "qwen2.5-coder",
        id: "qwen2.5-coder-0.5b-instruct",
        aliases: &[
            "Qwen2.5-Coder-0.5B-Instruct",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        ],
        file: "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    },
];

/// Default of `DOCPIPE_CHAT_MODELS`: every model of the catalog.
pub const DEFAULT_MODELS: &str = "smollm2,qwen2.5-coder";
/// Default of `DOCPIPE_CHAT_KV_MB`: KV cache MiB each model may reserve for its generations together (four
/// full-window SmolLM2 generations take 737 MiB; four Qwen2.5 ones of 8,192 tokens 384 MiB).
pub const DEFAULT_KV_MB: usize = 1024;
/// Default of `DOCPIPE_CHAT_ACTIVE`: generations a model advances together.
pub const DEFAULT_ACTIVE: usize = 4;

/// Default compute threads of each chat model: every core. docpipe's CPU forward pass does not spin-wait on
/// descheduled threads (a rayon scope steals back work its helper has not started), so two threads on two cores
/// keep decoding while files are ingested: SmolLM2 decoded 275-315 tok/s idle and 89-231 tok/s during the
/// ingestion of 30 PDFs with two threads, against 240-247 and 136-166 with one (`bench/mixed_load.sh`), and its
/// prompt processing is 1.8x faster with two.
pub fn default_threads() -> usize {
    crate::models::available_cores()
}
/// Default of `DOCPIPE_CHAT_QUEUE`: requests that may wait per model before 503.
pub const DEFAULT_QUEUE: usize = 16;

/// The catalog entry named by `name` (key, id or alias, ignoring case).
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| {
        e.key.eq_ignore_ascii_case(name)
            || e.id.eq_ignore_ascii_case(name)
            || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Parses `DOCPIPE_CHAT_MODELS`: comma-separated keys or ids; empty or `none` loads no chat model.
pub fn parse_list(list: &str) -> Result<Vec<&'static CatalogEntry>, String> {
    let mut out: Vec<&'static CatalogEntry> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            continue;
        }
        let entry = find(name).ok_or_else(|| {
            let known: Vec<&str> = CATALOG.iter().map(|e| e.key).collect();
            format!("unknown chat model {name:?}; known: {}", known.join(", "))
        })?;
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// How to start the chat models.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Which models (from [`parse_list`]).
    pub models: Vec<&'static CatalogEntry>,
    /// `DOCPIPE_MODELS_DIR`.
    pub models_dir: std::path::PathBuf,
    /// Compute device.
    pub device: DeviceSpec,
    /// Compute threads per model.
    pub threads: usize,
    /// Queue places per model.
    pub queue_capacity: usize,
    /// Generations each model advances together.
    pub max_active: usize,
    /// KV cache bytes each model may reserve for its generations together.
    pub kv_budget_bytes: usize,
}

/// The loaded local chat models.
#[derive(Default, Clone)]
pub struct ChatModels {
    models: Vec<(&'static CatalogEntry, Arc<LocalChatModel>)>,
}

impl std::fmt::Debug for ChatModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.models.iter().map(|(e, _)| e.id))
            .finish()
    }
}

impl ChatModels {
    /// Loads every configured model, one after the other (blocking: call from `spawn_blocking`).
    pub fn start(config: &ChatConfig) -> Result<Self, StartError> {
        let mut models = Vec::with_capacity(config.models.len());
        for entry in &config.models {
            let engine = EngineConfig {
                id: entry.id.to_owned(),
                path: config.models_dir.join(entry.file),
                device: config.device,
                threads: config.threads,
                queue_capacity: config.queue_capacity,
                max_active: config.max_active,
                kv_budget_bytes: config.kv_budget_bytes,
            };
            models.push((*entry, Arc::new(LocalChatModel::start(&engine)?)));
        }
        Ok(Self { models })
    }

    /// The model named `name` (id, key or alias), if it is loaded.
    pub fn get(&self, name: &str) -> Option<SharedChatBackend> {
        let entry = find(name)?;
        self.models
            .iter()
            .find(|(e, _)| *e == entry)
            .map(|(_, m)| Arc::clone(m) as SharedChatBackend)
    }

    /// The loaded model itself, for benchmarks and tests.
    pub fn local(&self, name: &str) -> Option<Arc<LocalChatModel>> {
        let entry = find(name)?;
        self.models
            .iter()
            .find(|(e, _)| *e == entry)
            .map(|(_, m)| Arc::clone(m))
    }

    /// Id, window and owner of every loaded model, fastest first.
    pub fn infos(&self) -> Vec<ChatModelInfo> {
        use super::ChatBackend as _;
        self.models.iter().map(|(_, m)| m.info().clone()).collect()
    }

    /// The loaded models, fastest first.
    pub fn backends(&self) -> Vec<SharedChatBackend> {
        self.models
            .iter()
            .map(|(_, m)| Arc::clone(m) as SharedChatBackend)
            .collect()
    }

    /// Stops every engine thread and joins it.
    pub fn shutdown(&self) {
        for (_, m) in &self.models {
            m.shutdown();
        }
    }
}

/// The GGUF path of a catalog entry under `models_dir`.
pub fn model_path(models_dir: &Path, entry: &CatalogEntry) -> std::path::PathBuf {
    models_dir.join(entry.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_by_key_id_or_alias() {
        let l = parse_list(" smollm2 , Qwen/Qwen2.5-Coder-0.5B-Instruct,smollm2-135m-instruct")
            .unwrap();
        assert_eq!(
            l.iter().map(|e| e.key).collect::<Vec<_>>(),
            ["smollm2", "qwen2.5-coder"]
        );
        assert!(parse_list("none").unwrap().is_empty());
        assert!(parse_list("").unwrap().is_empty());
        let err = parse_list("gpt-5").unwrap_err();
        assert!(err.contains("gpt-5") && err.contains("smollm2"), "{err}");
    }
}
