//! A remote OpenAI-compatible provider as a [`ChatBackend`]: `POST {base_url}/chat/completions` (or
//! `/completions` for raw prompts) with `stream: true`, relayed as [`GenerationEvent`]s.
//!
//! Design note: `generate` spawns one task per request on the runtime and returns at once. The task waits at
//! most the tier's timeout for the response to start and between streamed pieces; it stops reading (and
//! drops the connection) as soon as the receiver is gone. Nothing here blocks.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::config::TierConfig;
use super::{estimate_chars, estimate_text};
use crate::models::chat::{
    ChatBackend, ChatError, ChatModelInfo, FinishReason, GenerationEvent, GenerationRequest,
    GenerationStream, Prompt, Role, Usage,
};

/// Events buffered between the reading task and the consumer.
const STREAM_BUFFER: usize = 64;
/// Longest error body quoted from a provider.
const ERROR_BODY_CHARS: usize = 300;
/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A remote tier's client.
pub struct RemoteBackend {
    info: ChatModelInfo,
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl RemoteBackend {
    /// A client for a remote tier (validated by the config: it has a base URL and a window). The API key is
    /// read from the environment variable the tier names, now.
    pub fn new(tier: &TierConfig) -> RemoteBackend {
        let api_key = tier.api_key_env.as_deref().and_then(|name| {
            let key = std::env::var(name).ok().filter(|k| !k.is_empty());
            if key.is_none() {
                tracing::warn!(tier = %tier.name, env = name, "the remote tier's API key variable is not set; calling without a key");
            }
            key
        });
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(tier.timeout()))
            .build()
            .unwrap_or_default();
        RemoteBackend {
            info: ChatModelInfo {
                id: tier.model.clone(),
                context_window: tier.context_window.unwrap_or_default(),
                owned_by: format!("remote:{}", tier.name),
                prompt_tokens_per_sec: None,
            },
            base_url: tier
                .base_url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            api_key,
            timeout: tier.timeout(),
            client,
        }
    }
}

impl ChatBackend for RemoteBackend {
    fn info(&self) -> &ChatModelInfo {
        &self.info
    }

    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, ChatError> {
        Ok(match prompt {
            Prompt::Chat(messages) => estimate_chars(messages),
            Prompt::Text(text) => estimate_text(text),
        })
    }

    fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, ChatError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ChatError::ShutDown)?;
        let p = &request.params;
        let mut body = json!({
            "model": self.info.id,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
        });
        if let Some(seed) = p.seed {
            body["seed"] = json!(seed);
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        let (path, prompt_estimate) = match &request.prompt {
            Prompt::Chat(messages) => {
                body["messages"] = messages
                    .iter()
                    .map(|m| {
                        let role = match m.role {
                            Role::System => "system",
                            Role::User => "user",
                            Role::Assistant => "assistant",
                        };
                        json!({"role": role, "content": m.content})
                    })
                    .collect();
                ("chat/completions", estimate_chars(messages))
            }
            Prompt::Text(text) => {
                body["prompt"] = json!(text);
                ("completions", estimate_text(text))
            }
        };
        let mut call = self
            .client
            .post(format!("{}/{path}", self.base_url))
            .json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let job = Job {
            timeout: self.timeout,
            model: self.info.id.clone(),
            prompt_estimate,
            tx,
        };
        runtime.spawn(tracing::Instrument::instrument(job.run(call), request.span));
        Ok(rx)
    }
}

/// One streamed remote request.
struct Job {
    timeout: Duration,
    model: String,
    prompt_estimate: usize,
    tx: mpsc::Sender<Result<GenerationEvent, ChatError>>,
}

/// What the stream said so far.
#[derive(Default)]
struct Progress {
    model: Option<String>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    pieces: usize,
}

impl Job {
    async fn run(self, call: reqwest::RequestBuilder) {
        let result = self.stream(call).await;
        if let Err(e) = result {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn stream(&self, call: reqwest::RequestBuilder) -> Result<(), ChatError> {
        let wait = self.timeout;
        let timed_out = || ChatError::Remote(format!("no answer within {} s", wait.as_secs()));
        let response = tokio::time::timeout(wait, call.send())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| ChatError::Remote(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = tokio::time::timeout(wait, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let text: String = text.chars().take(ERROR_BODY_CHARS).collect();
            return Err(ChatError::Remote(format!("HTTP {status}: {text}")));
        }
        let mut body = response.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut progress = Progress::default();
        loop {
            let next = tokio::select! {
                () = self.tx.closed() => return Ok(()),
                next = tokio::time::timeout(wait, body.next()) => next.map_err(|_| timed_out())?,
            };
            let Some(bytes) = next else { break };
            buf.extend_from_slice(&bytes.map_err(|e| ChatError::Remote(e.to_string()))?);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    return self.finish(progress).await;
                }
                if !self.piece(data, &mut progress).await? {
                    return Ok(());
                }
            }
        }
        if progress.finish.is_none() {
            return Err(ChatError::Remote(
                "the stream ended before the answer did".into(),
            ));
        }
        self.finish(progress).await
    }

    /// Handles one `data:` payload; false when the receiver is gone.
    async fn piece(&self, data: &str, progress: &mut Progress) -> Result<bool, ChatError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ChatError::Remote(format!("bad stream event: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(ChatError::Remote(
                err.get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| err.to_string(), str::to_owned),
            ));
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            progress.model = Some(m.to_owned());
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| {
                u.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|x| usize::try_from(x).ok())
                    .unwrap_or_default()
            };
            progress.usage = Some(Usage {
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
            });
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(true);
        };
        let text = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            progress.finish = Some(if reason == "length" {
                FinishReason::Length
            } else {
                FinishReason::Stop
            });
        }
        if !text.is_empty() {
            progress.pieces += 1;
            if self
                .tx
                .send(Ok(GenerationEvent::Delta(text.to_owned())))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn finish(&self, progress: Progress) -> Result<(), ChatError> {
        let usage = progress.usage.unwrap_or(Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: progress.pieces,
        });
        let _ = self
            .tx
            .send(Ok(GenerationEvent::Done {
                finish_reason: progress.finish.unwrap_or(FinishReason::Stop),
                usage,
                model: progress.model.unwrap_or_else(|| self.model.clone()),
            }))
            .await;
        Ok(())
    }
}
