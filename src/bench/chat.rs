//! `docpipe bench chat`: local chat model speed at a fixed thread count, for comparison with llama.cpp on the
//! same GGUF in the same run (`bench/chat.sh`).
//!
//! Per model: prompt processing (tokens/s over a 300-token prompt, one forward pass as the engine does it),
//! decoding (tokens/s over 128 greedy tokens after that prompt, EOS ignored so every run decodes 128), time to
//! first token of a chat request through the engine (template, tokenizer, queue, prefill, first token), and
//! the throughput of 4 concurrent clients through the engine. Medians of `rounds` runs. The prompt token ids
//! and the chat requests are written out so the peer runs exactly the same work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use candle_core::Device;
use serde::Serialize;

use crate::models::chat::engine::{EngineConfig, LocalChatModel};
use crate::models::chat::model::ChatModel;
use crate::models::chat::registry::{self, CatalogEntry};
use crate::models::chat::sampling::argmax;
use crate::models::chat::{
    ChatBackend as _, ChatMessage, GenerationEvent, GenerationRequest, Prompt, Role, SamplingParams,
};
use crate::models::device::DeviceSpec;

/// Text the benchmark prompts are cut from (plain English prose).
const PROSE: &str = "The history of the printing press begins in the fifteenth century, when Johannes \
Gutenberg combined movable metal type, oil-based ink and a wooden press adapted from those used to make wine. \
Books had been copied by hand for centuries, and a single copy could take a scribe many months. The new press \
could produce hundreds of pages in a day, and within fifty years printing shops had opened in more than two \
hundred cities across Europe. Prices fell, literacy rose, and ideas travelled faster than ever before. \
Scientists shared their results in printed journals, merchants relied on printed price lists, and governments \
published laws for everyone to read. Historians still debate how much the press changed society, but few doubt \
that it was one of the most important inventions of the second millennium. ";
/// Questions of the concurrent clients (one each).
const CLIENT_QUESTIONS: [&str; 4] = [
    "Explain how a bicycle works.",
    "Describe the water cycle.",
    "Write a short story about a lighthouse keeper.",
    "What are the benefits of regular exercise?",
];

/// Settings of the benchmark.
#[derive(Debug, Clone)]
pub struct ChatBenchArgs {
    /// `DOCPIPE_MODELS_DIR`.
    pub models_dir: PathBuf,
    /// Catalog keys or ids of the models to measure.
    pub models: Vec<String>,
    /// Compute threads.
    pub threads: usize,
    /// Prompt tokens of the prompt-processing measurement.
    pub prompt_tokens: usize,
    /// Tokens of the decoding measurement (and per concurrent client).
    pub decode_tokens: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Repetitions (medians are reported).
    pub rounds: usize,
    /// Folder for the workload files the peer replays (`<key>-prompt.json`, `chat-requests.json`).
    pub workload_dir: PathBuf,
}

/// The figures of one model.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Model id.
    pub id: String,
    /// The GGUF file.
    pub file: String,
    /// Bytes of weights in memory.
    pub weight_bytes: usize,
    /// Seconds to load (converting the weights) and warm up.
    pub load_seconds: f64,
    /// Prompt processing, tokens/s (median).
    pub pp_tokens_per_s: f64,
    /// Decoding, tokens/s (median).
    pub decode_tokens_per_s: f64,
    /// Time to first token of a chat request with the long prompt through the engine, ms (median).
    pub ttft_ms: f64,
    /// Prompt tokens of that chat request.
    pub ttft_prompt_tokens: usize,
    /// Concurrent clients through the engine.
    pub concurrent: ConcurrentReport,
}

/// Throughput of concurrent clients.
#[derive(Debug, Serialize)]
pub struct ConcurrentReport {
    /// Clients.
    pub clients: usize,
    /// Completion tokens over all clients.
    pub completion_tokens: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Completion tokens per second over all clients.
    pub tokens_per_s: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct ChatBenchReport {
    /// Compute threads.
    pub threads: usize,
    /// Prompt tokens of the prompt-processing measurement.
    pub prompt_tokens: usize,
    /// Tokens decoded per measurement.
    pub decode_tokens: usize,
    /// Per model.
    pub models: Vec<ModelReport>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The chat request of the time-to-first-token measurement: the prose as context plus a question.
fn long_chat() -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: "Answer using only the given text.".to_owned(),
        },
        ChatMessage {
            role: Role::User,
            content: format!(
                "{}\n\nQuestion: who combined movable type with a press?",
                PROSE.repeat(2)
            ),
        },
    ]
}

/// Runs the benchmark.
pub fn run(args: &ChatBenchArgs) -> anyhow::Result<ChatBenchReport> {
    std::fs::create_dir_all(&args.workload_dir)?;
    write_requests(args)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let mut models = Vec::new();
    for name in &args.models {
        let entry = registry::find(name).with_context(|| format!("unknown chat model {name}"))?;
        models.push(pool.install(|| bench_model(args, entry))?);
    }
    Ok(ChatBenchReport {
        threads: args.threads,
        prompt_tokens: args.prompt_tokens,
        decode_tokens: args.decode_tokens,
        models,
    })
}

/// The chat requests the peer replays: the long TTFT request and the clients' questions.
fn write_requests(args: &ChatBenchArgs) -> anyhow::Result<()> {
    let wire = |messages: &[ChatMessage]| {
        messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "role": crate::models::chat::template::role_name(m.role),
                    "content": m.content,
                })
            })
            .collect::<Vec<_>>()
    };
    let clients: Vec<_> = CLIENT_QUESTIONS
        .iter()
        .cycle()
        .take(args.clients)
        .map(|q| wire(&client_messages(q)))
        .collect();
    let requests = serde_json::json!({
        "ttft": wire(&long_chat()),
        "clients": clients,
        "decode_tokens": args.decode_tokens,
        "prompt_tokens": args.prompt_tokens,
        "threads": args.threads,
        "rounds": args.rounds,
    });
    std::fs::write(
        args.workload_dir.join("chat-requests.json"),
        serde_json::to_string_pretty(&requests)?,
    )?;
    Ok(())
}

fn client_messages(question: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: Role::User,
        content: question.to_owned(),
    }]
}

fn bench_model(args: &ChatBenchArgs, entry: &CatalogEntry) -> anyhow::Result<ModelReport> {
    let path = registry::model_path(&args.models_dir, entry);
    let started = Instant::now();
    let mut model = ChatModel::load(&path, &Device::Cpu)?;
    let weight_bytes = model.weight_bytes;

    // The prompt: the prose's tokens, repeated and cut to the size asked for.
    let mut prompt = Vec::new();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(model.tokenizer.encode(PROSE)?);
    }
    prompt.truncate(args.prompt_tokens);
    std::fs::write(
        args.workload_dir.join(format!("{}-prompt.json", entry.key)),
        serde_json::to_string(&prompt)?,
    )?;
    model.forward(&prompt[..8], 0)?;
    let load_seconds = started.elapsed().as_secs_f64();

    let mut pp = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..args.rounds {
        let t = Instant::now();
        let mut logits = model.forward(&prompt, 0)?;
        pp.push(prompt.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..args.decode_tokens {
            let token = argmax(&logits);
            logits = model.forward(&[token], prompt.len() + i)?;
        }
        decode.push(args.decode_tokens as f64 / t.elapsed().as_secs_f64());
    }
    drop(model);

    // Through the engine: time to first token and concurrent clients.
    let engine = LocalChatModel::start(&EngineConfig {
        id: entry.id.to_owned(),
        path: path.clone(),
        device: DeviceSpec::Cpu,
        threads: args.threads,
        queue_capacity: args.clients.max(1) * 2,
        max_active: crate::models::chat::registry::DEFAULT_ACTIVE,
        kv_budget_bytes: crate::models::chat::registry::DEFAULT_KV_MB << 20,
    })?;
    let long = Prompt::Chat(long_chat());
    let ttft_prompt_tokens = engine.count_prompt_tokens(&long)?;
    let mut ttft = Vec::new();
    for _ in 0..args.rounds {
        let t = Instant::now();
        let mut stream = engine.generate(request(long.clone(), 8))?;
        while let Some(event) = stream.blocking_recv() {
            if matches!(event?, GenerationEvent::Delta(_)) {
                break;
            }
        }
        ttft.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(stream);
    }
    let t = Instant::now();
    let streams = CLIENT_QUESTIONS
        .iter()
        .cycle()
        .take(args.clients)
        .map(|q| {
            engine.generate(request(
                Prompt::Chat(client_messages(q)),
                args.decode_tokens,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let mut tokens = 0;
                while let Some(Ok(event)) = stream.blocking_recv() {
                    if let GenerationEvent::Done { usage, .. } = event {
                        tokens = usage.completion_tokens;
                    }
                }
                tokens
            })
        })
        .collect();
    let completion_tokens: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let seconds = t.elapsed().as_secs_f64();
    engine.shutdown();
    Ok(ModelReport {
        id: entry.id.to_owned(),
        file: file_name(&path),
        weight_bytes,
        load_seconds,
        pp_tokens_per_s: median(pp),
        decode_tokens_per_s: median(decode),
        ttft_ms: median(ttft),
        ttft_prompt_tokens,
        concurrent: ConcurrentReport {
            clients: args.clients,
            completion_tokens,
            seconds,
            tokens_per_s: completion_tokens as f64 / seconds,
        },
    })
}

fn request(prompt: Prompt, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        params: SamplingParams {
            max_tokens,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        span: tracing::Span::none(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
