//! The application facade: the only door from the HTTP layer (and the CLI) into the core. One file per use
//! case (files, document batches, batches, webhooks, search, embeddings, models, chat, transcription, keys, status), each re-exporting the domain
//! types and errors its callers need; this file holds the [`App`] itself and the linear start-up:
//! config -> stores -> models -> pipelines -> workers. Shutdown is the reverse: stop accepting, stop workers,
//! join the model threads, close the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::auth::KeyRing;
use crate::config::Config;
use crate::index::service::SearchService;
use crate::models::asr::{AsrConfig, AsrService};
use crate::models::chat::{ChatConfig, ChatModels, registry};
use crate::models::device::DeviceSpec;
use crate::models::embed::{EmbedConfig, EmbedderService};
use crate::pipeline::{Ingest, IngestConfig, Pipelines};
use crate::router::{Router, RouterConfig};
use crate::store::Store;

pub mod batches;
pub mod chat;
pub mod document_batches;
pub mod embeddings;
pub mod files;
pub mod keys;
pub mod models;
pub mod search;
pub mod status;
pub mod transcription;
pub mod webhooks;

/// Everything a request handler may use, behind methods (one file per use case).
#[derive(Clone)]
pub struct App {
    /// The validated configuration.
    config: Arc<Config>,
    /// Uploads, file queries and the extraction workers.
    ingest: Ingest,
    /// Metadata, chunks, keys and blobs (shared with `ingest`).
    store: Store,
    /// The text and vector indexes and the embedder (shared with `ingest`).
    search: SearchService,
    /// When the process started.
    started: Instant,
    /// The same, as Unix seconds.
    started_unix: i64,
    /// The local chat models (each on its own engine thread, joined at shutdown).
    chat: ChatModels,
    /// API keys (deny by default once an admin key is configured).
    keys: KeyRing,
    /// Set when shutdown began: readiness answers 503 so load balancers stop sending requests.
    draining: Arc<AtomicBool>,
    /// Owner of the embedding model's thread (joined at shutdown).
    embedder: Arc<std::sync::Mutex<Option<EmbedderService>>>,
    /// Owner of the speech recognition engine's thread (joined at shutdown).
    asr: Arc<std::sync::Mutex<Option<AsrService>>>,
    /// Stops background tasks (the vector index saver).
    stop: tokio_util::sync::CancellationToken,
    /// The complexity router over the chat tiers.
    router: Arc<Router>,
    /// The OpenAI batch runner's handle (wake-ups and cancels).
    batches: crate::jobs::batches::Batches,
    /// The webhook delivery worker's handle (address policy, wake-ups).
    webhooks: crate::jobs::webhooks::Webhooks,
}

/// The background tasks [`App::start`] launched.
pub struct Running {
    workers: Vec<JoinHandle<()>>,
    saver: JoinHandle<()>,
}

impl App {
    /// Opens the stores and loads the pipelines, without starting workers.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let pipelines = Pipelines::load(config.pipelines_dir.as_deref())?;
        let router_config = RouterConfig::load(config.router_config.as_deref())?;
        let store = Store::open(&config.data_dir).await.with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let keys = KeyRing::load(store.clone(), config.admin_key())
            .await
            .context("cannot read the API keys")?;
        let device: DeviceSpec = config.device.parse().context("DOCPIPE_DEVICE")?;
        let mut embed_config = EmbedConfig::from_models_dir(&config.models_dir);
        embed_config.device = device;
        embed_config.max_inputs_per_request = config.embed_max_inputs;
        if let Some(t) = config.embed_threads {
            embed_config.threads = t;
        }
        let embedder = tokio::task::spawn_blocking(move || EmbedderService::start(embed_config))
            .await?
            .context("cannot load the embedding model (run `make models`)")?;
        let search = SearchService::open(&config.data_dir, embedder.handle(), store.clone()).context(
            "cannot open the search indexes (after changing the embedding model, run `docpipe reindex`)",
        )?;
        let chat_config = ChatConfig {
            models: registry::parse_list(&config.chat_models).map_err(anyhow::Error::msg)?,
            models_dir: config.models_dir.clone(),
            device,
            threads: config.chat_compute_threads(),
            queue_capacity: config.chat_queue,
            max_active: config.chat_active,
            kv_budget_bytes: config.chat_kv_mb << 20,
        };
        let chat = tokio::task::spawn_blocking(move || ChatModels::start(&chat_config))
            .await?
            .context(
                "cannot load the chat models (run `make models`, or set DOCPIPE_CHAT_MODELS)",
            )?;
        let ingest = Ingest::new(
            store.clone(),
            search.clone(),
            pipelines,
            IngestConfig {
                max_file_size: config.max_file_size,
                workers: config.ingest_workers,
                max_queued: config.max_queued_files,
            },
        );
        let router = Router::new(router_config, &chat.backends());
        let webhooks = crate::jobs::webhooks::Webhooks::new(
            store.clone(),
            crate::jobs::webhooks::AddressPolicy::parse(&config.webhook_allow_private)
                .map_err(anyhow::Error::msg)?,
            crate::jobs::webhooks::parse_schedule(&config.webhook_retry_schedule)
                .map_err(anyhow::Error::msg)?,
            config
                .webhook_ca_file
                .as_deref()
                .map(crate::jobs::webhooks::read_roots)
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("DOCPIPE_WEBHOOK_CA_FILE")?
                .unwrap_or_default(),
        );
        let batches = crate::jobs::batches::Batches::new(
            store.clone(),
            config.batch_concurrency,
            webhooks.clone(),
        );
        let asr = start_asr(&config, device).await?;
        ingest.set_asr(asr.handle());
        Ok(App {
            config: Arc::new(config),
            ingest,
            store,
            search,
            chat,
            started: Instant::now(),
            started_unix: chrono::Utc::now().timestamp(),
            keys,
            draining: Arc::new(AtomicBool::new(false)),
            embedder: Arc::new(std::sync::Mutex::new(Some(embedder))),
            asr: Arc::new(std::sync::Mutex::new(Some(asr))),
            stop: tokio_util::sync::CancellationToken::new(),
            router: Arc::new(router),
            batches,
            webhooks,
        })
    }

    /// Repairs the indexes against the store, then starts the ingestion workers, the webhook deliveries and
    /// the index saver.
    pub async fn start(&self) -> anyhow::Result<Running> {
        let repair = self.search.check_consistency().await?;
        tracing::info!(?repair, "search indexes checked against the store");
        let mut workers = self.ingest.start().await?;
        workers.push(
            self.webhooks
                .spawn(self.ingest.subscribe(), self.stop.clone()),
        );
        let saver = self.search.spawn_saver(self.stop.clone());
        Ok(Running { workers, saver })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Marks the process as shutting down: readiness answers 503 from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Names of the local models loaded and serving (empty once shut down).
    pub fn models_loaded(&self) -> Vec<String> {
        let embedder = self
            .embedder
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|e| e.handle().info().model.to_owned()));
        embedder
            .into_iter()
            .chain(self.chat.infos().into_iter().map(|m| m.id))
            .chain(self.asr.lock().ok().and_then(|a| {
                a.as_ref()
                    .map(|_| crate::models::asr::MODEL_NAME.to_owned())
            }))
            .collect()
    }

    /// Stops the workers and background tasks, saves the indexes, joins the model thread, closes the database.
    pub async fn shutdown(&self, running: Option<Running>) {
        self.ingest.stop();
        self.stop.cancel();
        if let Some(r) = running {
            for w in r.workers {
                let _ = w.await;
            }
            let _ = r.saver.await;
        }
        let chat = self.chat.clone();
        let _ = tokio::task::spawn_blocking(move || chat.shutdown()).await;
        let embedder = self.embedder.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = embedder {
            let _ = tokio::task::spawn_blocking(move || e.shutdown()).await;
        }
        let asr = self.asr.lock().ok().and_then(|mut a| a.take());
        if let Some(a) = asr {
            let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
        }
        self.store.close().await;
    }
}

/// Rebuilds both search indexes from the store with the configured embedding model (`docpipe reindex`).
pub async fn reindex(config: Config) -> anyhow::Result<usize> {
    let app = App::open_for_reindex(config).await?;
    let n = SearchService::reindex(&app.0.data_dir, app.1.handle(), app.2).await?;
    tokio::task::spawn_blocking(move || app.1.shutdown()).await?;
    Ok(n)
}

impl App {
    /// The pieces `reindex` needs, without opening the (possibly mismatched) indexes.
    async fn open_for_reindex(config: Config) -> anyhow::Result<(Config, EmbedderService, Store)> {
        config.validate()?;
        let store = Store::open(&config.data_dir).await?;
        let mut embed_config = EmbedConfig::from_models_dir(&config.models_dir);
        embed_config.device = config.device.parse().context("DOCPIPE_DEVICE")?;
        let embedder =
            tokio::task::spawn_blocking(move || EmbedderService::start(embed_config)).await??;
        Ok((config, embedder, store))
    }
}

/// Converts the Whisper model when its ggml file is missing, then loads it on its engine thread.
async fn start_asr(config: &Config, device: DeviceSpec) -> anyhow::Result<AsrService> {
    let mut asr_config = AsrConfig::from_models_dir(&config.models_dir);
    if let Some(t) = config.asr_threads {
        asr_config.threads = t;
    }
    asr_config.beam_size = config.asr_beam_size;
    asr_config.queue = config.asr_queue;
    asr_config.use_gpu = cfg!(feature = "cuda") && device != DeviceSpec::Cpu;
    tokio::task::spawn_blocking(move || {
        crate::models::asr::ensure_ggml(&asr_config.model)?;
        AsrService::start(asr_config)
    })
    .await?
    .context("cannot load the Whisper model (run `make models`)")
}
