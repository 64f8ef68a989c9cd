//! Durable background work that outlives the request that started it: OpenAI batches and webhook
//! deliveries. State lives in the store, so a restart resumes where the work was.

pub mod batches;
pub mod webhooks;
