//! The extraction worker process (`docpipe extract-worker`): lowers its own resource limits before it
//! reads any input, says hello, then extracts one job after another from stdin until stdin closes.
//!
//! What runs where: one thread with a large stack does everything (reading, extracting, writing replies),
//! so deep but finite recursion in a parser cannot overflow; the main thread only waits for it. Nothing here
//! logs through `tracing`: stderr carries panics and allocation failures, which the server reads.

use std::io::{self, BufReader, BufWriter};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, UsageWho, getrusage, setrlimit};

use super::protocol::{self, Job, MAX_HEADER_FRAME, PROTOCOL_VERSION, Reply};
use crate::extract::{self, Context, ExtractError, Format, Input};

/// The hidden subcommand that starts a worker.
pub const SUBCOMMAND: &str = "extract-worker";
/// Stack of the extraction thread (as for in-process extraction before; counted in the address space).
pub const STACK_BYTES: usize = 256 * 1024 * 1024;
/// Progress is written at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Largest file a worker accepts in one job (uploads are far smaller; this only bounds a bad frame).
const MAX_INPUT_FRAME: u32 = 2 * 1024 * 1024 * 1024 - 1;

/// The limits a worker sets on itself, from its command line (`--as-bytes N --cpu-secs N --nofile N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// RLIMIT_AS: address space in bytes.
    pub as_bytes: u64,
    /// RLIMIT_CPU soft limit in seconds (SIGXCPU; the hard limit a few seconds later is SIGKILL).
    pub cpu_secs: u64,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
}

/// Seconds between the CPU soft limit (SIGXCPU) and the hard one (SIGKILL).
const CPU_HARD_MARGIN_SECS: u64 = 5;

impl ProcessLimits {
    /// The arguments that make a worker set these limits.
    pub fn args(&self) -> Vec<String> {
        vec![
            SUBCOMMAND.to_owned(),
            "--as-bytes".to_owned(),
            self.as_bytes.to_string(),
            "--cpu-secs".to_owned(),
            self.cpu_secs.to_string(),
            "--nofile".to_owned(),
            self.nofile.to_string(),
        ]
    }

    fn parse(args: &[String]) -> Result<ProcessLimits, String> {
        let mut as_bytes = None;
        let mut cpu_secs = None;
        let mut nofile = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {e}"))?;
            match flag.as_str() {
                "--as-bytes" => as_bytes = Some(value),
                "--cpu-secs" => cpu_secs = Some(value),
                "--nofile" => nofile = Some(value),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(ProcessLimits {
            as_bytes: as_bytes.ok_or("--as-bytes is required")?,
            cpu_secs: cpu_secs.ok_or("--cpu-secs is required")?,
            nofile: nofile.ok_or("--nofile is required")?,
        })
    }

    fn apply(&self) -> nix::Result<()> {
        setrlimit(Resource::RLIMIT_AS, self.as_bytes, self.as_bytes)?;
        setrlimit(
            Resource::RLIMIT_CPU,
            self.cpu_secs,
            self.cpu_secs + CPU_HARD_MARGIN_SECS,
        )?;
        setrlimit(Resource::RLIMIT_NOFILE, self.nofile, self.nofile)?;
        // A killed worker must not write a multi-gigabyte core file.
        setrlimit(Resource::RLIMIT_CORE, 0, 0)
    }
}

/// Runs the worker when the process was started as `docpipe extract-worker ...`; `None` otherwise.
/// Called first thing in `main`, before the CLI is parsed or any runtime starts.
pub fn main_if_worker() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(SUBCOMMAND) {
        return None;
    }
    let limits = match ProcessLimits::parse(&args[1..]) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{SUBCOMMAND}: {e}");
            return Some(ExitCode::from(2));
        }
    };
    if let Err(e) = limits.apply() {
        eprintln!("{SUBCOMMAND}: cannot set resource limits: {e}");
        return Some(ExitCode::FAILURE);
    }
    let worker = std::thread::Builder::new()
        .name("extract".to_owned())
        .stack_size(STACK_BYTES)
        .spawn(serve_jobs);
    let code = match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        Ok(Ok(Err(e))) => {
            eprintln!("{SUBCOMMAND}: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(_)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{SUBCOMMAND}: cannot start the extraction thread: {e}");
            ExitCode::FAILURE
        }
    };
    Some(code)
}

fn serve_jobs() -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    // Shared by the progress callback and the final reply (both on this thread; the lock is never contended).
    let out = Mutex::new(BufWriter::new(io::stdout()));
    let send = |msg: &Reply| -> io::Result<()> {
        let mut w = out
            .lock()
            .map_err(|_| io::Error::other("stdout lock poisoned"))?;
        protocol::write_json(&mut *w, msg)
    };
    send(&Reply::Hello {
        protocol: PROTOCOL_VERSION,
    })?;
    loop {
        let Some(header) = protocol::read_frame(&mut input, MAX_HEADER_FRAME)? else {
            return Ok(()); // the server closed stdin: done
        };
        let job: Job = serde_json::from_slice(&header).map_err(io::Error::other)?;
        let bytes = protocol::read_frame(&mut input, MAX_INPUT_FRAME)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let result = run_job(&job, &bytes, &|msg| {
            // A failed progress write shows up as a broken pipe at the final reply.
            let _ = send(msg);
        });
        drop(bytes);
        send(&Reply::Done {
            result,
            cpu_secs: cpu_seconds(),
        })?;
    }
}

fn run_job(
    job: &Job,
    bytes: &[u8],
    send: &(dyn Fn(&Reply) + Sync),
) -> Result<crate::types::Document, ExtractError> {
    let format = Format::parse(&job.format)
        .ok_or_else(|| ExtractError::Corrupt(format!("unknown format {}", job.format)))?;
    let last = Mutex::new(Instant::now() - PROGRESS_INTERVAL);
    let report = |done: u64, total: u64, unit: &'static str| {
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() < PROGRESS_INTERVAL {
            return;
        }
        *last = Instant::now();
        send(&Reply::Progress {
            done,
            total,
            unit: unit.to_owned(),
        });
    };
    let ctx = Context {
        limits: &job.limits,
        deadline: Instant::now() + Duration::from_millis(job.timeout_ms),
        progress: &report,
    };
    extract::extract(&Input { bytes, format }, &ctx)
}

fn cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}
