//! Extraction in a child process, so one crafted file can never take the server down.
//!
//! Each extraction (every format, and OCR with its Tesseract/poppler grandchildren) runs in a worker process
//! of the same binary (`docpipe extract-worker`, see [`child`]), started with hard limits it sets on itself
//! before it reads any input: address space (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), open files
//! (`RLIMIT_NOFILE`), no core files. The server talks to it over stdin/stdout ([`protocol`]) and kills its
//! whole process group when the deadline passes or its resident memory passes the category's limit; the
//! file then fails with `extraction_timeout`, `limit_exceeded` or `extractor_crashed`, and the next file
//! gets a fresh worker. A worker is reused for later files only while it stays healthy (a clean reply, CPU
//! budget left for a whole job, memory back under half its limit, fewer than [`MAX_JOBS_PER_WORKER`] jobs).
//!
//! What runs where: the exchange with a worker is async I/O on the runtime (no thread blocks on a pipe); a
//! small task per worker drains its stderr. One worker serves one file at a time, so a crash has exactly
//! one culprit: files in other workers are untouched. The idle list is a `std` mutex held only to push or
//! pop, never across an await.

pub mod child;
pub mod protocol;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::watch;

pub use child::{ProcessLimits, main_if_worker};
use protocol::{Job, PROTOCOL_VERSION, Reply};

use crate::extract::{ExtractError, Format, Limits};
use crate::types::{Document, Progress};

/// Files one worker extracts before it is replaced anyway (allocator fragmentation, slow leaks).
pub const MAX_JOBS_PER_WORKER: u32 = 64;
/// Address space allowed on top of the memory limit: the binary's own mappings, thread stacks besides the
/// extraction thread's, allocator arenas.
const ADDRESS_SPACE_OVERHEAD: u64 = 512 * 1024 * 1024;
/// Open files of a worker (stdio, pipes to Tesseract and poppler, a few libraries).
const WORKER_NOFILE: u64 = 256;
/// CPU seconds a worker may use in its life per second of the category's timeout: it is retired once it
/// has used one timeout's worth, so every job still has at least a whole timeout of CPU.
const CPU_LIMIT_FACTOR: u64 = 2;
/// How long a new worker may take to say hello.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a running worker's resident memory is checked.
const MEMORY_POLL: Duration = Duration::from_millis(100);
/// Extra time after the job's own deadline (which the extractors check themselves) before the worker is
/// killed.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// Largest reply frame read from a worker (a document's JSON); bounds what a worker can make the server hold.
const MAX_REPLY_FRAME: u32 = 512 * 1024 * 1024;
/// How long a dead worker's exit status and last stderr are waited for.
const POST_MORTEM_WAIT: Duration = Duration::from_secs(2);
/// Bytes of a worker's stderr kept for the failure message and the log.
const STDERR_TAIL: usize = 4096;
/// What the Rust runtime prints when an allocation fails (the process then aborts).
const ALLOC_FAILURE: &str = "memory allocation of";
/// Environment passed to a worker (everything else is cleared): where Tesseract and poppler are, and
/// Tesseract's data.
const PASSED_ENV: [&str; 5] = [
    "PATH",
    "TESSDATA_PREFIX",
    "TMPDIR",
    "LANG",
    "LD_LIBRARY_PATH",
];

/// The process limits a category's extraction runs under.
pub fn process_limits(limits: &Limits) -> ProcessLimits {
    let memory = limits.max_worker_memory_mb.saturating_mul(1024 * 1024);
    ProcessLimits {
        as_bytes: memory
            .saturating_add(child::STACK_BYTES as u64)
            .saturating_add(ADDRESS_SPACE_OVERHEAD),
        cpu_secs: limits
            .timeout_secs
            .saturating_mul(CPU_LIMIT_FACTOR)
            .saturating_add(10),
        nofile: WORKER_NOFILE,
    }
}

/// Timings of one isolated extraction, for logs and the README's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Time to start a worker and get its hello (zero when an idle one was reused).
    pub startup: Duration,
    /// From sending the job to having the decoded reply.
    pub exchange: Duration,
    /// Bytes of the reply frame (the document's JSON).
    pub reply_bytes: usize,
}

/// Extraction workers: idle ones kept for reuse, keyed by their limits.
pub struct Pool {
    exe: PathBuf,
    idle: Mutex<Vec<Worker>>,
    max_idle: usize,
}

impl Pool {
    /// A pool that starts workers from the running executable, keeping at most `max_idle` idle.
    pub fn new(max_idle: usize) -> Pool {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("docpipe"));
        Pool::with_exe(exe, max_idle)
    }

    /// A pool that starts workers from `exe` (`exe extract-worker ...`).
    pub fn with_exe(exe: PathBuf, max_idle: usize) -> Pool {
        Pool {
            exe,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Extracts `bytes` in a worker under `limits`, publishing progress on `progress`. The worker is
    /// killed at `timeout` (plus a short grace) or when its memory passes the limit.
    pub async fn extract(
        &self,
        bytes: &[u8],
        format: Format,
        limits: &Limits,
        timeout: Duration,
        progress: &watch::Sender<Progress>,
    ) -> Result<(Document, Timings), ExtractError> {
        let plimits = process_limits(limits);
        let mut timings = Timings::default();
        let mut worker = match self.take_idle(plimits) {
            Some(w) => w,
            None => {
                let started = tokio::time::Instant::now();
                let w = Worker::start(&self.exe, plimits).await.map_err(|e| {
                    ExtractError::Crashed(format!("cannot start an extraction worker: {e}"))
                })?;
                timings.startup = started.elapsed();
                w
            }
        };
        let job = Job {
            format: format.name().to_owned(),
            limits: limits.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let memory_limit_kb = limits.max_worker_memory_mb.saturating_mul(1024);
        let hard_deadline = tokio::time::Instant::now() + timeout + DEADLINE_GRACE;
        let exchange_started = tokio::time::Instant::now();
        let mut poll = tokio::time::interval(MEMORY_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pid = worker.pid;
        let outcome = {
            let exchange = worker.exchange(&job, bytes, progress);
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    result = &mut exchange => break Exit::Replied(result),
                    () = tokio::time::sleep_until(hard_deadline) => break Exit::Deadline,
                    _ = poll.tick() => {
                        if resident_kb(pid).is_some_and(|kb| kb > memory_limit_kb) {
                            break Exit::Memory;
                        }
                    }
                }
            }
        };
        timings.exchange = exchange_started.elapsed();
        match outcome {
            Exit::Replied(Ok((result, cpu_secs, reply_bytes))) => {
                timings.reply_bytes = reply_bytes;
                worker.jobs += 1;
                let healthy = worker.jobs < MAX_JOBS_PER_WORKER
                    && cpu_secs + (limits.timeout_secs as f64) < plimits.cpu_secs as f64
                    && resident_kb(worker.pid).is_some_and(|kb| kb < memory_limit_kb / 2);
                if healthy {
                    self.put_idle(worker);
                } else {
                    worker.kill().await;
                }
                result.map(|doc| (doc, timings))
            }
            Exit::Replied(Err(io)) => Err(worker.post_mortem(&io, limits).await),
            Exit::Deadline => {
                worker.kill().await;
                Err(ExtractError::Timeout)
            }
            Exit::Memory => {
                worker.kill().await;
                Err(memory_exceeded(limits))
            }
        }
    }

    fn take_idle(&self, limits: ProcessLimits) -> Option<Worker> {
        let mut idle = self.idle.lock().ok()?;
        let i = idle.iter().position(|w| w.limits == limits)?;
        Some(idle.swap_remove(i))
    }

    fn put_idle(&self, worker: Worker) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        idle.push(worker);
        // The oldest idle worker goes when there are too many (each holds a few MB).
        while idle.len() > self.max_idle {
            let old = idle.remove(0);
            old.kill_now();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut idle) = self.idle.lock() {
            for w in idle.drain(..) {
                w.kill_now();
            }
        }
    }
}

enum Exit {
    Replied(std::io::Result<(Result<Document, ExtractError>, f64, usize)>),
    Deadline,
    Memory,
}

fn memory_exceeded(limits: &Limits) -> ExtractError {
    ExtractError::LimitExceeded(format!(
        "the extraction needed more than its memory limit of {} MiB (max_worker_memory_mb)",
        limits.max_worker_memory_mb
    ))
}

/// One running worker process (the leader of its own process group).
struct Worker {
    child: tokio::process::Child,
    pid: i32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    limits: ProcessLimits,
    jobs: u32,
}

impl Worker {
    async fn start(exe: &std::path::Path, limits: ProcessLimits) -> std::io::Result<Worker> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(limits.args())
            .env_clear()
            // Few allocator arenas: each reserves address space that counts against RLIMIT_AS.
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so a kill also ends Tesseract or poppler started by it.
            .process_group(0)
            .kill_on_drop(true);
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| std::io::Error::other("the worker exited at once"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the worker's pipes are missing"));
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = tokio::spawn(drain_stderr(stderr, Arc::clone(&stderr_tail), pid));
        let mut worker = Worker {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_task: Some(stderr_task),
            limits,
            jobs: 0,
        };
        let hello = tokio::time::timeout(STARTUP_TIMEOUT, worker.read_reply()).await;
        match hello {
            Ok(Ok((Reply::Hello { protocol }, _))) if protocol == PROTOCOL_VERSION => Ok(worker),
            Ok(Ok((other, _))) => {
                worker.kill().await;
                Err(std::io::Error::other(format!(
                    "the worker answered {other:?} instead of hello (protocol {PROTOCOL_VERSION})"
                )))
            }
            Ok(Err(e)) => {
                let tail = worker.tail();
                worker.kill().await;
                Err(std::io::Error::other(format!("{e}; {tail}")))
            }
            Err(_) => {
                worker.kill().await;
                Err(std::io::Error::other("the worker did not start in time"))
            }
        }
    }

    /// Sends one job and reads replies until its result; `Err` when the pipe breaks (the worker died).
    async fn exchange(
        &mut self,
        job: &Job,
        bytes: &[u8],
        progress: &watch::Sender<Progress>,
    ) -> std::io::Result<(Result<Document, ExtractError>, f64, usize)> {
        let header = serde_json::to_vec(job).map_err(std::io::Error::other)?;
        write_frame(&mut self.stdin, &header).await?;
        write_frame(&mut self.stdin, bytes).await?;
        self.stdin.flush().await?;
        loop {
            match self.read_reply().await? {
                (Reply::Progress { done, total, unit }, _) => {
                    progress.send_replace(Progress { done, total, unit });
                }
                (Reply::Done { result, cpu_secs }, size) => return Ok((result, cpu_secs, size)),
                (Reply::Hello { .. }, _) => {
                    return Err(std::io::Error::other("unexpected hello from a busy worker"));
                }
            }
        }
    }

    async fn read_reply(&mut self) -> std::io::Result<(Reply, usize)> {
        let len = self.stdout.read_u32().await?;
        if len > MAX_REPLY_FRAME {
            return Err(std::io::Error::other(format!(
                "a reply of {len} bytes is over the limit of {MAX_REPLY_FRAME}"
            )));
        }
        let mut payload = vec![0u8; len as usize];
        self.stdout.read_exact(&mut payload).await?;
        let reply = serde_json::from_slice(&payload).map_err(std::io::Error::other)?;
        Ok((reply, payload.len()))
    }

    /// Why the worker stopped answering: waits for its exit status and reads the end of its stderr.
    async fn post_mortem(mut self, io: &std::io::Error, limits: &Limits) -> ExtractError {
        let status = tokio::time::timeout(POST_MORTEM_WAIT, self.child.wait()).await;
        // Its last words (an allocation failure, a panic) are read to the end of the pipe first.
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(POST_MORTEM_WAIT, task).await;
        }
        let tail = self.tail();
        let pid = self.pid;
        self.kill().await;
        let Ok(Ok(status)) = status else {
            return ExtractError::Crashed(format!("the worker stopped answering: {io}"));
        };
        use std::os::unix::process::ExitStatusExt as _;
        let signal = status.signal().and_then(|s| Signal::try_from(s).ok());
        tracing::warn!(pid, ?status, stderr = %tail, "extraction worker died");
        if tail.contains(ALLOC_FAILURE) {
            return memory_exceeded(limits);
        }
        match signal {
            Some(Signal::SIGXCPU) => ExtractError::Timeout,
            Some(sig) => ExtractError::Crashed(format!("the worker was killed by {sig}")),
            None => ExtractError::Crashed(format!("the worker exited with {status}")),
        }
    }

    fn tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| String::from_utf8_lossy(&t).trim().to_owned())
            .unwrap_or_default()
    }

    /// Kills the worker's process group and reaps the worker.
    async fn kill(mut self) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = self.child.wait().await;
    }

    /// Kills without waiting (the runtime reaps it in the background).
    fn kill_now(self) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
    }
}

async fn write_frame(w: &mut ChildStdin, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("a frame larger than 4 GiB"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await
}

async fn drain_stderr(
    mut stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<Vec<u8>>>,
    pid: i32,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tracing::debug!(pid, output = %String::from_utf8_lossy(&buf[..n]), "extraction worker stderr");
                if let Ok(mut t) = tail.lock() {
                    t.extend_from_slice(&buf[..n]);
                    if t.len() > STDERR_TAIL {
                        let cut = t.len() - STDERR_TAIL;
                        t.drain(..cut);
                    }
                }
            }
        }
    }
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`), `None` when it is gone.
pub fn resident_kb(pid: i32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// One `kB` field of `/proc/<pid>/status` (for example `VmHWM:`, the peak resident memory).
pub fn proc_status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
