//! Planning and fallback, with a scripted in-process backend (the real models are exercised by the
//! integration tests).

use std::sync::Arc;

use super::*;
use crate::models::chat::{
    ChatBackend, ChatModelInfo, FinishReason, GenerationEvent, SamplingParams, Usage,
};

/// Answers "ok" or fails at once, as told.
struct Scripted {
    info: ChatModelInfo,
    fail: bool,
}

impl ChatBackend for Scripted {
    fn info(&self) -> &ChatModelInfo {
        &self.info
    }
    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, ChatError> {
        Ok(match prompt {
            Prompt::Chat(m) => estimate_chars(m),
            Prompt::Text(t) => estimate_text(t),
        })
    }
    fn generate(&self, _: GenerationRequest) -> Result<GenerationStream, ChatError> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (fail, model) = (self.fail, self.info.id.clone());
        tokio::spawn(async move {
            if fail {
                let _ = tx.send(Err(ChatError::Remote("down".into()))).await;
            } else {
                let _ = tx.send(Ok(GenerationEvent::Delta("ok".into()))).await;
                let _ = tx
                    .send(Ok(GenerationEvent::Done {
                        finish_reason: FinishReason::Stop,
                        usage: Usage::default(),
                        model,
                    }))
                    .await;
            }
        });
        Ok(rx)
    }
}

fn tier(name: &str, min: f32, max: f32, window: Option<usize>, fail: bool) -> Tier {
    Tier {
        config: TierConfig {
            name: name.into(),
            model: format!("{name}-model"),
            kind: TierKind::Local,
            min_score: min,
            max_score: max,
            context_window: None,
            cost_per_1k_tokens: 0.0,
            base_url: None,
            api_key_env: None,
            timeout_secs: None,
        },
        backend: window.map(|w| {
            Arc::new(Scripted {
                info: ChatModelInfo {
                    id: format!("{name}-model"),
                    context_window: w,
                    owned_by: "test".into(),
                    prompt_tokens_per_sec: None,
                },
                fail,
            }) as SharedChatBackend
        }),
    }
}

fn router(tiers: Vec<Tier>) -> Router {
    Router {
        tiers,
        grounding: GroundingConfig {
            tier: Some("strong".into()),
            ..GroundingConfig::default()
        },
        aliases: AliasConfig::default(),
        metrics: RouterMetrics::default(),
    }
}

#[test]
fn plan_picks_by_score_and_window() {
    let tiers = vec![
        tier("fast", 0.0, 0.3, Some(2048), false),
        tier("strong", 0.3, 0.7, Some(4096), false),
        tier("big", 0.7, 1.0, Some(32768), false),
    ];
    assert_eq!(plan(&tiers, 0.1, 100).order, [0, 1, 2]);
    assert_eq!(plan(&tiers, 0.5, 100).order, [1, 2, 0]);
    assert_eq!(plan(&tiers, 0.9, 100).order, [2, 1, 0]);
    // Too big for the fast tier: the next tier that fits takes it, the fast one is never tried.
    let p = plan(&tiers, 0.1, 3000);
    assert_eq!(p.order, [1, 2]);
    assert_eq!(p.scored, 0);
    assert!(p.skipped[0].reason.contains("2048-token window"));
    assert!(plan(&tiers, 0.1, 40_000).order.is_empty());
}

#[test]
fn unloaded_tiers_are_skipped() {
    let tiers = vec![
        tier("fast", 0.0, 0.5, None, false),
        tier("strong", 0.5, 1.0, Some(4096), false),
    ];
    let p = plan(&tiers, 0.0, 10);
    assert_eq!(p.order, [1]);
    assert!(p.skipped[0].reason.contains("not loaded"));
}

#[test]
fn decision_explains_itself() {
    let r = router(vec![
        tier("fast", 0.0, 0.3, Some(2048), false),
        tier("strong", 0.3, 1.0, Some(4096), false),
    ]);
    let input = ComplexityInput {
        last_user_message: "Hi".into(),
        prompt_tokens: 3,
        ..ComplexityInput::default()
    };
    let d = r.decide(&input, 0, 64).expect("fits");
    assert_eq!(d.plan.order[0], 0);
    assert!(d.reason.contains("tier `fast`"), "{}", d.reason);
    let big = r.decide(&input, 3000, 64).expect("fits strong");
    assert_eq!(big.plan.order, [1]);
    assert!(
        big.reason.contains("would take that score but"),
        "{}",
        big.reason
    );
    assert!(matches!(
        r.decide(&input, 10_000, 64),
        Err(RouteError::NothingFits { .. })
    ));
}

#[test]
fn questions_about_files_go_to_the_grounding_tier() {
    let r = router(vec![
        tier("fast", 0.0, 0.3, Some(2048), false),
        tier("strong", 0.3, 1.0, Some(4096), false),
    ]);
    let ask = |msg: &str| ComplexityInput {
        last_user_message: msg.into(),
        prompt_tokens: 10,
        files: vec![crate::types::Category::Text],
        ..ComplexityInput::default()
    };
    // A short fact question scores low, yet goes to the grounding tier because it is about a file.
    let d = r.decide(&ask("How many pears?"), 100, 64).expect("fits");
    assert!(d.complexity.score < 0.3, "{}", d.complexity.score);
    assert_eq!(d.plan.order[0], 1);
    assert!(
        d.reason.contains("attached files goes to tier `strong`"),
        "{}",
        d.reason
    );
    // Chit-chat with a file attached keeps its score's tier.
    let chat = r.decide(&ask("thanks!"), 100, 64).expect("fits");
    assert_eq!(chat.plan.order[0], 0);
    // Without files the score decides.
    let plain = ComplexityInput {
        files: Vec::new(),
        ..ask("How many pears?")
    };
    assert_eq!(r.decide(&plain, 0, 64).expect("fits").plan.order[0], 0);
}

#[test]
fn chit_chat_is_small_talk_only() {
    for t in ["thanks!", "Hello there", "ok, got it", "thank you so much"] {
        assert!(is_chit_chat(t), "{t}");
    }
    for t in [
        "",
        "thanks, and what is the total?",
        "hello, how many pages does it have",
        "summarise it",
    ] {
        assert!(!is_chit_chat(t), "{t}");
    }
}

fn request() -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text("hi".into()),
        params: SamplingParams::default(),
        span: tracing::Span::none(),
    }
}

#[tokio::test]
async fn failing_tier_falls_back_and_is_counted() {
    let r = router(vec![
        tier("remote", 0.0, 1.0, Some(4096), true),
        tier("local", 0.0, 1.0, Some(4096), false),
    ]);
    let mut routed = r
        .generate(&[0, 1], |t| Ok((request(), t.config.name.clone())))
        .await
        .expect("falls back");
    assert_eq!(routed.tier, "local");
    assert_eq!(routed.extra, "local");
    assert_eq!(routed.failed.len(), 1);
    assert!(routed.failed[0].reason.contains("down"));
    assert_eq!(
        routed.stream.recv().await.expect("event").expect("ok"),
        GenerationEvent::Delta("ok".into())
    );
    assert!(matches!(
        routed.stream.recv().await,
        Some(Ok(GenerationEvent::Done { .. }))
    ));
    let m = r.metrics().snapshot();
    assert_eq!(m["remote"].failed, 1);
    assert_eq!(m["local"].after_fallback, 1);
    let all_down = router(vec![tier("remote", 0.0, 1.0, Some(4096), true)]);
    assert!(matches!(
        all_down.generate(&[0], |_| Ok((request(), ()))).await,
        Err(RouteError::AllFailed(ChatError::Remote(_)))
    ));
}
