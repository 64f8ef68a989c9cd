//! The application facade the HTTP layer calls, and the linear start-up: config -> stores -> pipelines ->
//! workers. Shutdown is the reverse: stop accepting, stop workers, close the database.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::pipeline::{Ingest, IngestConfig, Pipelines};
use crate::store::Store;

/// Everything a request handler may use.
#[derive(Clone)]
pub struct App {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Uploads, file queries and the extraction workers.
    pub ingest: Ingest,
    /// When the process started.
    pub started: Instant,
}

impl App {
    /// Opens the stores and loads the pipelines, without starting workers.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let pipelines = Pipelines::load(config.pipelines_dir.as_deref())?;
        let store = Store::open(&config.data_dir).await.with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let ingest = Ingest::new(
            store,
            pipelines,
            IngestConfig {
                max_file_size: config.max_file_size,
                workers: config.ingest_workers,
                max_queued: config.max_queued_files,
            },
        );
        Ok(App {
            config: Arc::new(config),
            ingest,
            started: Instant::now(),
        })
    }

    /// Starts the background workers.
    pub async fn start_workers(&self) -> anyhow::Result<Vec<JoinHandle<()>>> {
        Ok(self.ingest.start().await?)
    }

    /// Stops the workers and closes the database.
    pub async fn shutdown(&self, workers: Vec<JoinHandle<()>>) {
        self.ingest.stop();
        for w in workers {
            let _ = w.await;
        }
        self.ingest.store().close().await;
    }
}
