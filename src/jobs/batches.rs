//! The OpenAI Batch API's runner: validates a batch's input file into stored requests, runs them one page
//! at a time through an [`Executor`] (the HTTP API's own handlers, in process), stores each result as it
//! finishes, and writes the output and error files at the end.
//!
//! Durability: every step is a database transition, so after a crash or restart the runner picks each
//! unfinished batch up where it was: validation is redone (nothing was stored before it committed),
//! finished requests are never repeated, requests that were in flight run again, and finalizing reuses the
//! output files' fixed ids. Batch work has lower priority than interactive requests: one request of one
//! batch runs at a time by default, so the chat engine interleaves it with interactive generations and the
//! embedder serves fresh requests before the slices of a started one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{BatchRequest, BatchResult, BatchRow, NewFile, Store, StoreError, doc_key};
use crate::types::BatchStatus;

/// The endpoints a batch may target.
pub const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
/// The only completion window offered (OpenAI's).
pub const COMPLETION_WINDOW: &str = "24h";
/// How long [`COMPLETION_WINDOW`] is.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Where a chat line that names `file_ids` goes: chat with files, which answers with its `sources`.
pub const FILE_CHAT_ROUTE: &str = "/api/v1/chat/multimodal";
/// Most requests in one batch (OpenAI's limit).
pub const MAX_REQUESTS: usize = 50_000;
/// Longest `custom_id`.
const MAX_CUSTOM_ID: usize = 512;
/// Validation errors reported per batch (the first ones).
const MAX_ERRORS: usize = 100;
/// Requests fetched from the store at a time.
const PAGE: u32 = 64;
/// Result lines read at a time when writing an output file.
const OUTPUT_PAGE: u32 = 500;
/// How often the runner looks for work without being woken (expiry, missed wake-ups).
const POLL: Duration = Duration::from_secs(5);

/// One request to run, as the batch's key would send it.
pub struct Call {
    pub tenant: String,
    pub key_id: Option<String>,
    /// The endpoint (one of [`ENDPOINTS`]).
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// The request id the answer carries (`batch_req_...`).
    pub request_id: String,
}

/// What running a [`Call`] answered.
pub struct Answer {
    pub status: u16,
    /// The JSON body (an error body for a non-2xx status).
    pub body: Value,
}

/// Runs a batch's requests; the HTTP layer implements it with its own handlers.
pub trait Executor: Send + Sync + 'static {
    fn call(&self, call: Call) -> BoxFuture<'static, Answer>;
}

/// A validation error, in the shape of OpenAI's `errors.data[]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// 1-based line of the input file, when the error is about one.
    pub line: Option<u64>,
}

impl LineError {
    fn at(line: u64, code: &str, message: impl Into<String>, param: Option<&str>) -> LineError {
        LineError {
            code: code.to_owned(),
            message: message.into(),
            param: param.map(str::to_owned),
            line: Some(line),
        }
    }
}

/// Parses and checks a batch input file against the batch's endpoint: every line a JSON object with a
/// unique non-empty `custom_id`, `method` `POST`, `url` equal to the endpoint and an object `body` that
/// does not ask for streaming. Blank lines are skipped. A chat line with `file_ids` runs as chat with
/// those files ([`FILE_CHAT_ROUTE`]). All or nothing: any error fails the whole batch.
pub fn parse_requests(input: &[u8], endpoint: &str) -> Result<Vec<BatchRequest>, Vec<LineError>> {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let line = i as u64 + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if requests.len() >= MAX_REQUESTS {
            errors.push(LineError::at(
                line,
                "too_many_requests",
                format!("a batch holds at most {MAX_REQUESTS} requests"),
                None,
            ));
            break;
        }
        match parse_line(raw, line, endpoint) {
            Ok(r) if !seen.insert(r.custom_id.clone()) => errors.push(LineError::at(
                line,
                "duplicate_custom_id",
                format!(
                    "custom_id {:?} is used by an earlier line; each request needs its own",
                    r.custom_id
                ),
                Some("custom_id"),
            )),
            Ok(r) => requests.push(r),
            Err(e) => errors.push(e),
        }
    }
    if requests.is_empty() && errors.is_empty() {
        errors.push(LineError {
            code: "empty_file".into(),
            message: "the input file holds no requests".into(),
            param: None,
            line: None,
        });
    }
    if errors.is_empty() {
        Ok(requests)
    } else {
        Err(errors)
    }
}

fn parse_line(raw: &[u8], line: u64, endpoint: &str) -> Result<BatchRequest, LineError> {
    let bad = |code: &str, message: String, param: Option<&str>| {
        LineError::at(line, code, message, param)
    };
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        bad(
            "invalid_json_line",
            format!("the line is not valid JSON: {e}"),
            None,
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(bad(
            "invalid_json_line",
            "the line must be a JSON object".into(),
            None,
        ));
    };
    let custom_id = match obj.get("custom_id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_CUSTOM_ID => {
            s.clone()
        }
        Some(Value::String(_)) => {
            return Err(bad(
                "invalid_custom_id",
                format!("custom_id must be 1 to {MAX_CUSTOM_ID} characters, not blank"),
                Some("custom_id"),
            ));
        }
        _ => {
            return Err(bad(
                "missing_required_parameter",
                "custom_id (a string) is required".into(),
                Some("custom_id"),
            ));
        }
    };
    match obj.get("method").and_then(Value::as_str) {
        Some(m) if m.eq_ignore_ascii_case("POST") => {}
        _ => {
            return Err(bad(
                "invalid_method",
                "method must be \"POST\"".into(),
                Some("method"),
            ));
        }
    }
    match obj.get("url").and_then(Value::as_str) {
        Some(u) if u == endpoint => {}
        Some(u) => {
            return Err(bad(
                "mismatched_endpoint",
                format!("url {u:?} differs from the batch's endpoint {endpoint:?}"),
                Some("url"),
            ));
        }
        None => {
            return Err(bad(
                "missing_required_parameter",
                "url (a string) is required".into(),
                Some("url"),
            ));
        }
    }
    let Some(Value::Object(body)) = obj.remove("body") else {
        return Err(bad(
            "missing_required_parameter",
            "body (a JSON object) is required".into(),
            Some("body"),
        ));
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "invalid_request",
            "streaming is not available in a batch: drop `stream` from the body".into(),
            Some("body.stream"),
        ));
    }
    let names_files = body
        .get("file_ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| !ids.is_empty());
    let url = if endpoint == ENDPOINTS[0] && names_files {
        FILE_CHAT_ROUTE
    } else {
        endpoint
    };
    Ok(BatchRequest {
        line,
        custom_id,
        url: url.to_owned(),
        body: Value::Object(body).to_string(),
    })
}

/// The id a request's answer carries: fixed per batch and line, so a resumed request keeps it.
fn request_id(batch: &str, line: u64) -> String {
    format!(
        "batch_req_{}_{line}",
        batch.strip_prefix("batch_").unwrap_or(batch)
    )
}

/// The fixed id of a batch's output (`ok`) or error file, so finalizing twice never makes two.
pub fn result_file_id(batch: &str, ok: bool) -> String {
    format!(
        "file-{}{}",
        batch.strip_prefix("batch_").unwrap_or(batch),
        if ok { "out" } else { "err" }
    )
}

/// The runner's shared state: a wake-up and the cancel switch of the batch running now.
#[derive(Clone)]
pub struct Batches {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    wake: Notify,
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Requests of a batch run at once.
    concurrency: usize,
    /// Woken when a batch ends (its events are in the outbox).
    webhooks: super::webhooks::Webhooks,
}

impl Batches {
    /// The runner over `store`, running `concurrency` requests of a batch at once.
    pub fn new(store: Store, concurrency: usize, webhooks: super::webhooks::Webhooks) -> Batches {
        Batches {
            inner: Arc::new(Inner {
                store,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                concurrency: concurrency.max(1),
                webhooks,
            }),
        }
    }

    /// Tells the runner there is new work (a batch created or cancelled).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops the requests of a batch that is being cancelled, if it is running now.
    pub fn interrupt(&self, id: &str) {
        if let Some(token) = self.lock().get(id) {
            token.cancel();
        }
        self.wake();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the runner; it stops when `stop` is cancelled.
    pub fn spawn(&self, executor: Arc<dyn Executor>, stop: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(executor, stop).await })
    }

    async fn run(self, executor: Arc<dyn Executor>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let idle = match self.inner.store.unfinished_batches().await {
                Ok(batches) => {
                    let mut idle = true;
                    for b in batches {
                        if stop.is_cancelled() {
                            return;
                        }
                        match self.step(&b, &executor, &stop).await {
                            Ok(progressed) => idle &= !progressed,
                            Err(e) => {
                                tracing::error!(batch_id = %b.id, error = %e, "batch step failed; retrying later");
                            }
                        }
                    }
                    idle
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot list unfinished batches");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }

    /// Advances one batch by one stage; true when something changed.
    async fn step(
        &self,
        b: &BatchRow,
        executor: &Arc<dyn Executor>,
        stop: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        match b.status {
            BatchStatus::Validating => self.validate(b).await,
            BatchStatus::InProgress if chrono::Utc::now().timestamp_millis() >= b.expires_at => {
                let n = store.expire_pending(&b.id).await?;
                tracing::info!(batch_id = %b.id, expired = n, "batch expired");
                self.finalize(b, BatchStatus::InProgress, BatchStatus::Expired)
                    .await
            }
            BatchStatus::InProgress => self.run_requests(b, executor, stop).await,
            BatchStatus::Finalizing => {
                self.finalize(b, BatchStatus::Finalizing, BatchStatus::Completed)
                    .await
            }
            BatchStatus::Cancelling => {
                self.finalize(b, BatchStatus::Cancelling, BatchStatus::Cancelled)
                    .await
            }
            _ => Ok(false),
        }
    }

    async fn validate(&self, b: &BatchRow) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let input = match store.file(&b.tenant, &b.input_file_id).await? {
            Some(f) => store.blobs().read(&f.sha256).await.ok(),
            None => None,
        };
        let parsed = match input {
            // Parsing up to a whole upload of JSON is CPU work: off the async runtime.
            Some(bytes) => {
                let endpoint = b.endpoint.clone();
                tokio::task::spawn_blocking(move || parse_requests(&bytes, &endpoint))
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("batch validation panicked: {e}")))?
            }
            None => Err(vec![LineError {
                code: "file_not_found".into(),
                message: format!(
                    "the input file {} is gone (deleted before validation)",
                    b.input_file_id
                ),
                param: Some("input_file_id".into()),
                line: None,
            }]),
        };
        match parsed {
            Ok(requests) => {
                let started = store.start_batch(&b.id, &requests).await?;
                tracing::info!(batch_id = %b.id, requests = requests.len(), started, "batch validated");
            }
            Err(errors) => {
                let errors = serde_json::to_string(&errors).unwrap_or_default();
                store.fail_batch(&b.id, &errors).await?;
                self.inner.webhooks.wake();
                tracing::info!(batch_id = %b.id, "batch failed validation");
            }
        }
        Ok(true)
    }

    /// Runs the batch's pending requests page by page until none is left (then `finalizing`), the batch is
    /// cancelled, its window ends, or the runner stops.
    async fn run_requests(
        &self,
        b: &BatchRow,
        executor: &Arc<dyn Executor>,
        stop: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let token = stop.child_token();
        self.lock().insert(b.id.clone(), token.clone());
        let outcome = async {
            loop {
                // A cancel that came before the switch above was registered is seen here.
                let current = store.batch(&b.tenant, &b.id).await?;
                if current.is_none_or(|c| c.status != BatchStatus::InProgress) {
                    return Ok(());
                }
                let page = store.pending_requests(&b.id, PAGE).await?;
                if page.is_empty() {
                    store
                        .move_batch(&b.id, &[BatchStatus::InProgress], BatchStatus::Finalizing)
                        .await?;
                    return Ok(());
                }
                let mut results = futures::stream::iter(page)
                    .map(|r| run_one(executor, b, r))
                    .buffer_unordered(self.inner.concurrency);
                loop {
                    tokio::select! {
                        next = results.next() => match next {
                            Some((line, ok, result)) => {
                                store.finish_request(&b.id, &BatchResult { line, ok, result: &result }).await?;
                            }
                            None => break,
                        },
                        () = token.cancelled() => return Ok(()),
                    }
                }
                if chrono::Utc::now().timestamp_millis() >= b.expires_at {
                    return Ok(());
                }
            }
        }
        .await;
        self.lock().remove(&b.id);
        outcome.map(|()| true)
    }

    /// Writes the output and error files from the stored results and moves the batch from `from` to its
    /// final status `to`.
    async fn finalize(
        &self,
        b: &BatchRow,
        from: BatchStatus,
        to: BatchStatus,
    ) -> Result<bool, StoreError> {
        let output = self.write_results(b, true).await?;
        let errors = self.write_results(b, false).await?;
        let closed = self
            .inner
            .store
            .close_batch(&b.id, from, to, output.as_deref(), errors.as_deref())
            .await?;
        tracing::info!(batch_id = %b.id, status = to.as_str(), closed, "batch finished");
        self.inner.webhooks.wake();
        Ok(true)
    }

    /// Writes one result file (`purpose=batch_output`) and returns its id; `None` when it would be empty.
    async fn write_results(&self, b: &BatchRow, ok: bool) -> Result<Option<String>, StoreError> {
        let store = &self.inner.store;
        let id = result_file_id(&b.id, ok);
        if store.file(&b.tenant, &id).await?.is_some() {
            return Ok(Some(id));
        }
        let mut staged = store.blobs().stage().await?;
        let mut after = 0;
        let written: Result<(), StoreError> = async {
            loop {
                let page = store.batch_results(&b.id, ok, after, OUTPUT_PAGE).await?;
                let Some((last, _)) = page.last() else {
                    return Ok(());
                };
                after = *last;
                for (_, line) in &page {
                    staged.write(line.as_bytes()).await?;
                    staged.write(b"\n").await?;
                }
            }
        }
        .await;
        if let Err(e) = written {
            staged.discard().await;
            return Err(e);
        }
        if staged.size() == 0 {
            staged.discard().await;
            return Ok(None);
        }
        let size = staged.size();
        let sha256 = store.blobs().commit(staged).await?;
        let format = crate::extract::Format::Json;
        let filename = format!("{}_{}.jsonl", b.id, if ok { "output" } else { "error" });
        store
            .insert_file(&NewFile {
                id: &id,
                tenant: &b.tenant,
                filename: &filename,
                content_type: "application/jsonl",
                format: format.name(),
                category: format.category(),
                size,
                sha256: &sha256,
                doc_key: &doc_key(&b.tenant, &sha256, format.name()),
                purpose: Some("batch_output"),
                metadata: None,
            })
            .await?;
        Ok(Some(id))
    }
}

/// Runs one request and makes its result line (OpenAI's shape).
async fn run_one(
    executor: &Arc<dyn Executor>,
    b: &BatchRow,
    r: BatchRequest,
) -> (u64, bool, String) {
    let request_id = request_id(&b.id, r.line);
    let answer = executor
        .call(Call {
            tenant: b.tenant.clone(),
            key_id: b.key_id.clone(),
            url: r.url,
            body: r.body,
            request_id: request_id.clone(),
        })
        .await;
    let ok = (200..300).contains(&answer.status);
    let line = json!({
        "id": request_id,
        "custom_id": r.custom_id,
        "response": {"status_code": answer.status, "request_id": request_id, "body": answer.body},
        "error": null,
    });
    (r.line, ok, line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "/v1/chat/completions";

    fn line(id: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": CHAT, "body": {"model": "m", "messages": []}})
            .to_string()
    }

    #[test]
    fn a_valid_file_gives_one_request_per_line_and_skips_blank_lines() {
        let input = format!("{}\n\n{}\n", line("a"), line("b"));
        let requests = parse_requests(input.as_bytes(), CHAT).unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].line, requests[1].line), (1, 3));
        assert_eq!(requests[1].custom_id, "b");
        let body: Value = serde_json::from_str(&requests[0].body).unwrap();
        assert_eq!(body["model"], "m");
    }

    #[test]
    fn every_bad_line_is_named_with_its_reason() {
        let input = [
            line("a"),
            "not json".into(),
            line("a"),
            json!({"custom_id": "c", "method": "GET", "url": CHAT, "body": {}}).to_string(),
            json!({"custom_id": "d", "method": "POST", "url": "/v1/embeddings", "body": {}})
                .to_string(),
            json!({"custom_id": "e", "method": "POST", "url": CHAT}).to_string(),
            json!({"custom_id": "f", "method": "POST", "url": CHAT, "body": {"stream": true}})
                .to_string(),
            json!({"method": "POST", "url": CHAT, "body": {}}).to_string(),
        ]
        .join("\n");
        let errors = parse_requests(input.as_bytes(), CHAT).unwrap_err();
        let got: Vec<(Option<u64>, &str)> =
            errors.iter().map(|e| (e.line, e.code.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(2), "invalid_json_line"),
                (Some(3), "duplicate_custom_id"),
                (Some(4), "invalid_method"),
                (Some(5), "mismatched_endpoint"),
                (Some(6), "missing_required_parameter"),
                (Some(7), "invalid_request"),
                (Some(8), "missing_required_parameter"),
            ]
        );
    }

    #[test]
    fn a_chat_line_naming_files_runs_as_chat_with_files() {
        let with_files = json!({"custom_id": "q", "method": "POST", "url": CHAT,
            "body": {"messages": [], "file_ids": ["file-1"]}})
        .to_string();
        let requests =
            parse_requests(format!("{}\n{with_files}", line("a")).as_bytes(), CHAT).unwrap();
        assert_eq!(requests[0].url, CHAT);
        assert_eq!(requests[1].url, FILE_CHAT_ROUTE);
    }

    #[test]
    fn an_empty_file_and_too_many_requests_fail() {
        let empty = parse_requests(b"\n \n", CHAT).unwrap_err();
        assert_eq!(empty[0].code, "empty_file");
        let many = vec![line("x"); 1].join("\n");
        assert!(parse_requests(many.as_bytes(), CHAT).is_ok());
        let too_many: String = (0..=MAX_REQUESTS)
            .map(|i| line(&i.to_string()) + "\n")
            .collect();
        let errors = parse_requests(too_many.as_bytes(), CHAT).unwrap_err();
        assert_eq!(errors.last().unwrap().code, "too_many_requests");
        assert_eq!(errors.last().unwrap().line, Some(MAX_REQUESTS as u64 + 1));
    }

    #[test]
    fn result_ids_are_fixed_per_batch_and_line() {
        assert_eq!(request_id("batch_abc", 7), "batch_req_abc_7");
        assert_eq!(result_file_id("batch_abc", true), "file-abcout");
        assert_ne!(
            result_file_id("batch_abc", false),
            result_file_id("batch_abc", true)
        );
    }
}
