//! Runs a batch's requests through the API's own handlers, in process: the same parsing, validation, error
//! shapes and answers as the same request sent over HTTP, acting as the batch creator's tenant. The edge
//! (rate limiting, request ids from headers, compression) is skipped: the batch was admitted as a whole.

use std::sync::Arc;

use futures::future::BoxFuture;
use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Request};
use serde_json::json;

use super::error::REQUEST_ID;
use crate::app::App;
use crate::app::batches::{Answer, Call, Executor};
use crate::auth::{Principal, Scope};

/// Largest answer read back (an embeddings answer of 2,048 inputs is about 16 MB of JSON).
const MAX_ANSWER_BYTES: usize = 64 << 20;

struct InProcess {
    routes: Arc<BoxEndpoint<'static>>,
}

/// The executor the batch runner uses.
pub fn executor(app: &App) -> Arc<dyn Executor> {
    Arc::new(InProcess {
        routes: Arc::new(
            super::service(app)
                .into_endpoint()
                .map_to_response()
                .boxed(),
        ),
    })
}

impl Executor for InProcess {
    fn call(&self, call: Call) -> BoxFuture<'static, Answer> {
        let routes = Arc::clone(&self.routes);
        Box::pin(async move {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri_str(&call.url)
                .content_type("application/json")
                .body(call.body);
            // Running a request needs only what reading needs (chat, completions, embeddings).
            req.extensions_mut().insert(Principal {
                tenant: call.tenant,
                key_id: call.key_id,
                scope: Scope::Read,
                root: false,
            });
            let resp = REQUEST_ID
                .scope(
                    call.request_id,
                    async move { routes.get_response(req).await },
                )
                .await;
            let status = resp.status().as_u16();
            let body = match resp.into_body().into_bytes_limit(MAX_ANSWER_BYTES).await {
                Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|_| json!({"text": String::from_utf8_lossy(&bytes)})),
                Err(e) => json!({"error": {"message": format!("the answer could not be read: {e}"),
                    "type": "server_error", "code": "internal_error"}}),
            };
            Answer { status, body }
        })
    }
}
