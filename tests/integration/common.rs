//! A real server process per test: its own port and data directory, killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// The server binary cargo built for these tests, pinned at first use by a hard link of our own: several
/// checkouts may share one target directory, and another checkout's build replaces `release/docpipe`.
pub static BIN: LazyLock<PathBuf> = LazyLock::new(|| {
    let built = Path::new(env!("CARGO_BIN_EXE_docpipe"));
    let dir = built.parent().expect("the binary is in a folder");
    // Links of finished test runs only keep old binaries alive.
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("docpipe-test-pinned-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let pinned = dir.join(format!("docpipe-test-pinned-{}", std::process::id()));
    let _ = std::fs::remove_file(&pinned);
    std::fs::hard_link(built, &pinned)
        .or_else(|_| std::fs::copy(built, &pinned).map(drop))
        .expect("pin the server binary");
    pinned
});
/// How long a file may take to reach ready/failed in tests (OCR of a page takes a few seconds).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(180);

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its data directory (removed on drop).
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    /// An HTTP client.
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts a server with default settings.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let data_dir =
            std::env::temp_dir().join(format!("docpipe-test-{}", uuid::Uuid::new_v4().simple()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let port = free_port();
        let child = spawn(&data_dir, port, &env);
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir,
            env,
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client"),
        };
        server.wait_healthy().await;
        server
    }

    /// Kills the process with SIGKILL (no clean shutdown) and starts it again on the same data directory.
    pub async fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.data_dir, self.port, &self.env);
        self.wait_healthy().await;
    }

    /// Stops the process (SIGKILL) without starting it again.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts the process again on the same data directory after [`stop`](Self::stop).
    pub async fn start_again(&mut self) {
        self.child = spawn(&self.data_dir, self.port, &self.env);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(self.url("/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                // Loading both chat models on a busy 2-core machine can take most of a minute.
                start.elapsed() < Duration::from_secs(120),
                "server did not become healthy; see {}",
                self.log().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the server process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Uploads bytes as multipart field `file` to `path` (e.g. `/api/v1/upload?wait=true`).
    pub async fn upload_to(
        &self,
        path: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .http
            .post(self.url(path))
            .multipart(form)
            .send()
            .await
            .expect("upload request");
        json_of(resp).await
    }

    /// Uploads and returns the record right away.
    pub async fn upload(&self, filename: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        self.upload_to("/api/v1/upload", filename, bytes).await
    }

    /// Uploads with `wait=true`, asserts 201, and returns the finished record.
    pub async fn upload_and_wait(&self, filename: &str, bytes: Vec<u8>) -> Value {
        let (status, body) = self
            .upload_to("/api/v1/upload?wait=true&timeout=180", filename, bytes)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{filename}: {body}");
        assert!(
            body["status"] == "ready" || body["status"] == "failed",
            "{filename} did not finish: {body}"
        );
        body
    }

    /// GET a path, returning status and JSON.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.http.get(self.url(path)).send().await.expect("get")).await
    }

    /// POST a JSON body to a path, returning status and JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(
            self.http
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("post"),
        )
        .await
    }

    /// POSTs a streaming request and returns its server-sent events' JSON payloads (`[DONE]` excluded) and
    /// whether the stream ended with `data: [DONE]`.
    pub async fn post_sse(&self, path: &str, body: &Value) -> (Vec<Value>, bool) {
        let text = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("stream")
            .text()
            .await
            .expect("body");
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        let done = data.last() == Some(&"[DONE]");
        let events = data
            .iter()
            .filter(|d| **d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect();
        (events, done)
    }

    /// DELETE a path, returning status and JSON.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        json_of(
            self.http
                .delete(self.url(path))
                .send()
                .await
                .expect("delete"),
        )
        .await
    }

    /// Polls a file until it is ready or failed.
    pub async fn wait_done(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/api/v1/files/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] == "ready" || body["status"] == "failed" {
                return body;
            }
            assert!(
                start.elapsed() < PROCESS_TIMEOUT,
                "file {id} did not finish: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.log());
    }
}

fn spawn(data_dir: &Path, port: u16, env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .expect("log file");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("serve")
        .env("DOCPIPE_HOST", "127.0.0.1")
        .env("DOCPIPE_PORT", port.to_string())
        .env("DOCPIPE_DATA_DIR", data_dir)
        .env("LOG_LEVEL", "info")
        // The fast chat model only, unless a test asks for more (loading Qwen takes seconds and 1 GB).
        .env("DOCPIPE_CHAT_MODELS", "smollm2")
        // Several test servers share the cores: keep each chat engine to one thread.
        .env("DOCPIPE_CHAT_THREADS", "1")
        // Tests make many requests; the rate-limit tests set their own limit. Keys come only from the test.
        .env("RATE_LIMIT_REQUESTS", "1000000")
        .env_remove("API_KEY")
        .env_remove("DOCPIPE_ADMIN_KEY")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start docpipe serve")
}

/// Status and JSON body (Null when the body is not JSON).
pub async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// [`assert_error`] for the common case: 400 `invalid_request` naming `param`.
pub fn assert_bad_request(status: StatusCode, body: &Value, param: Option<&str>, message: &str) {
    assert_error(
        status,
        body,
        400,
        "invalid_request",
        "invalid_request_error",
        param,
        message,
    );
}

/// Asserts a whole error body: status, code, type, param, message (substring) and a request id.
pub fn assert_error(
    status: StatusCode,
    body: &Value,
    want_status: u16,
    code: &str,
    kind: &str,
    param: Option<&str>,
    message: &str,
) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(
        e["param"],
        param.map_or(Value::Null, |p| Value::String(p.to_owned())),
        "{body}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(message)),
        "message should contain {message:?}: {body}"
    );
    assert!(
        e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert_eq!(
        e.as_object().map(serde_json::Map::len),
        Some(5),
        "exactly five fields: {body}"
    );
}

/// The repository's fixtures directory.
/// A copy of the repository's `pipelines/` where PDFs are OCR'd on every page at 600 dpi under a 1 s
/// budget (several seconds of work): for tests of the extraction deadline. Pass its path as
/// `DOCPIPE_PIPELINES_DIR`.
pub fn slow_ocr_pipelines() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for entry in std::fs::read_dir(&source).expect("pipelines") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let pdf = std::fs::read_to_string(source.join("pdf.toml"))
        .expect("read")
        .replace("timeout_secs = 300", "timeout_secs = 1")
        .replace("ocr = \"auto\"", "ocr = \"on\"")
        .replace("ocr_dpi = 200", "ocr_dpi = 600");
    std::fs::write(dir.path().join("pdf.toml"), pdf).expect("write");
    dir
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture by path relative to `fixtures/`.
pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// Runs Python from the test venv (the official `openai` client; `make test-deps` creates it) with `args` and
/// `BASE` set to the server's URL plus `env`, and fails the test with its output unless it exits 0.
pub async fn run_openai_python(
    server: &Server,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        python.exists(),
        "the test venv with the openai client is missing: run `make test-deps`"
    );
    let out = tokio::process::Command::new(python)
        .args(args)
        .env("BASE", &server.base)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
