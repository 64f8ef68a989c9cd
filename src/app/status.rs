//! Status, the operator's view of the running service: liveness (`/health`), readiness (models, database,
//! indexes, queue, host resources) for `/api/v1/monitoring/health`, the queue for
//! `/api/v1/performance/metrics`, and the state mirrored into `/metrics` gauges.
//! Host figures come from `sysinfo` on a blocking thread; CPU usage is measured between two readings
//! [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] apart the first time, then between successive calls.

use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use sysinfo::{Disks, ProcessesToUpdate, System};
use tracing::instrument;

use super::App;
use crate::telemetry::metrics;

/// Below this much free disk in the data directory the service reports itself not ready.
pub const MIN_FREE_DISK_BYTES: u64 = 100 * 1024 * 1024;

/// Host resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStats {
    /// CPU use of the whole machine, 0-100.
    pub cpu_percent: f32,
    /// Memory in use on the machine, 0-100.
    pub memory_percent: f32,
    /// Resident memory of this process in bytes.
    pub process_rss_bytes: u64,
    /// Free bytes on the data directory's file system (`None` when it cannot be found).
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system.
    pub disk_total_bytes: Option<u64>,
}

/// Everything readiness looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// True when every check passes.
    pub ready: bool,
    /// Why not, one reason per failed check.
    pub problems: Vec<String>,
    /// Local models loaded.
    pub models_loaded: Vec<String>,
    /// The database answers.
    pub database_ok: bool,
    /// Chunks in the text index and vectors in the vector index.
    pub index_chunks: u64,
    /// Vectors in the vector index.
    pub index_vectors: u64,
    /// Files by status.
    pub files_by_status: Vec<(String, i64)>,
    /// Files waiting for a worker, and the queue's bound.
    pub queue_depth: i64,
    /// The bound.
    pub queue_capacity: u64,
    /// Extraction workers.
    pub workers: usize,
    /// Shutdown has begun.
    pub draining: bool,
    /// Host resources.
    pub host: HostStats,
}

static SYSTEM: LazyLock<Mutex<Option<System>>> = LazyLock::new(|| Mutex::new(None));

fn host_stats(data_dir: &Path) -> HostStats {
    let mut guard = SYSTEM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = guard.is_none();
    if first {
        *guard = System::new().ok();
    }
    let Some(sys) = guard.as_mut() else {
        return HostStats::default();
    };
    sys.refresh_cpu_usage();
    if first {
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        sys.refresh_cpu_usage();
    }
    sys.refresh_memory();
    let rss = sysinfo::get_current_pid().ok().and_then(|pid| {
        sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), false);
        sys.process(pid).map(sysinfo::Process::memory)
    });
    let memory_percent = if sys.total_memory() == 0 {
        0.0
    } else {
        (sys.used_memory() as f64 / sys.total_memory() as f64 * 100.0) as f32
    };
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let disks = Disks::new_with_refreshed_list().ok();
    let disk = disks.as_ref().and_then(|d| {
        d.iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
    });
    HostStats {
        cpu_percent: sys.global_cpu_usage(),
        memory_percent,
        process_rss_bytes: rss.unwrap_or(0),
        disk_free_bytes: disk.map(sysinfo::Disk::available_space),
        disk_total_bytes: disk.map(sysinfo::Disk::total_space),
    }
}

/// The ingestion queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Files waiting for a worker.
    pub queued: i64,
    /// Files being processed.
    pub processing: i64,
    /// Most queued files before uploads are refused.
    pub capacity: u64,
    /// Extraction workers.
    pub workers: usize,
}

impl App {
    /// Time since the process started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Liveness: true when the database answers.
    #[instrument(skip_all)]
    pub async fn database_ok(&self) -> bool {
        self.store.ping().await
    }

    /// Checks everything; `ready` is false when a check fails.
    #[instrument(skip_all)]
    pub async fn readiness(&self) -> Readiness {
        let database_ok = self.store.ping().await;
        let files_by_status = self.store.count_files_by_status().await.unwrap_or_default();
        let queue_depth = count(&files_by_status, "queued");
        let (index_chunks, vectors) = self.search.sizes();
        let models_loaded = self.models_loaded();
        let dir = self.config.data_dir.clone();
        let host = tokio::task::spawn_blocking(move || host_stats(&dir))
            .await
            .unwrap_or_default();
        let draining = self.is_draining();
        let mut problems = Vec::new();
        if !database_ok {
            problems.push("the database does not answer".to_owned());
        }
        if !models_loaded
            .iter()
            .any(|m| m == crate::models::embed::MODEL_NAME)
        {
            problems.push("the embedding model is not loaded".to_owned());
        }
        if host
            .disk_free_bytes
            .is_some_and(|free| free < MIN_FREE_DISK_BYTES)
        {
            problems.push("less than 100 MiB free in the data directory".to_owned());
        }
        if draining {
            problems.push("shutting down".to_owned());
        }
        Readiness {
            ready: problems.is_empty(),
            problems,
            models_loaded,
            database_ok,
            index_chunks,
            index_vectors: vectors as u64,
            files_by_status,
            queue_depth,
            queue_capacity: self.config.max_queued_files,
            workers: self.config.ingest_workers,
            draining,
            host,
        }
    }

    /// The Prometheus text of every metric, with the gauges set from the current state.
    #[instrument(skip_all)]
    pub async fn metrics_text(&self) -> String {
        let files_by_status = self.store.count_files_by_status().await.unwrap_or_default();
        let queue_depth = count(&files_by_status, "queued");
        metrics::render(&metrics::Snapshot {
            files_by_status,
            queue_depth,
            uptime_seconds: i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// Files queued and processing, with the queue's bound and the workers.
    #[instrument(skip_all)]
    pub async fn queue(&self) -> QueueState {
        let by = self.store.count_files_by_status().await.unwrap_or_default();
        QueueState {
            queued: count(&by, "queued"),
            processing: count(&by, "processing"),
            capacity: self.config.max_queued_files,
            workers: self.config.ingest_workers,
        }
    }
}

fn count(by_status: &[(String, i64)], status: &str) -> i64 {
    by_status
        .iter()
        .find(|(s, _)| s == status)
        .map_or(0, |(_, n)| *n)
}
