//! HTTP only: routes, wire types, error mapping and the edge middleware. Handlers parse the request, call
//! the application facade ([`App`]) and map the result; no business logic, SQL or locks here.

mod analyze;
mod audio;
mod batch_exec;
pub use batch_exec::executor as batch_executor;
pub mod auth;
mod batches;
mod chat;
mod chat_files;
mod chat_types;
mod chat_wire;
mod compression;
mod document_batches;
mod embeddings;
pub mod error;
mod files;
pub use files::parse_upload_form;
pub mod header_deadline;
mod json_body;
mod keys;
pub mod middleware;
mod models;
mod monitoring;
mod openai_files;
mod search;
mod spec;
mod system;
pub mod types;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use poem::web::Html;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{ExtraHeader, OpenApiService, Tags};

use crate::app::App;
use middleware::Edge;

/// Groups of endpoints in the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// Upload files and read what was extracted from them.
    Files,
    /// Keyword, vector and hybrid search over uploaded files.
    Search,
    /// Chat with your files, and the complexity router that picks the model.
    Chat,
    /// OpenAI-compatible endpoints.
    #[oai(rename = "OpenAI")]
    OpenAi,
    /// Health and operations.
    System,
    /// API keys (admin).
    Keys,
    /// Signed event callbacks (Standard Webhooks), per tenant (admin).
    Webhooks,
}

type Apis = (
    files::FilesApi,
    search::SearchApi,
    embeddings::EmbeddingsApi,
    models::ModelsApi,
    chat::ChatApi,
    openai_files::OpenAiFilesApi,
    system::SystemApi,
    chat_files::ChatFilesApi,
    analyze::AnalyzeApi,
    keys::KeysApi,
    monitoring::MonitoringApi,
    audio::AudioApi,
    batches::BatchesApi,
    webhooks::WebhooksApi,
    document_batches::DocumentBatchesApi,
);

fn service(app: &App) -> OpenApiService<Apis, ()> {
    let apis = (
        files::FilesApi { app: app.clone() },
        search::SearchApi { app: app.clone() },
        embeddings::EmbeddingsApi { app: app.clone() },
        models::ModelsApi { app: app.clone() },
        chat::ChatApi { app: app.clone() },
        openai_files::OpenAiFilesApi { app: app.clone() },
        system::SystemApi { app: app.clone() },
        chat_files::ChatFilesApi { app: app.clone() },
        analyze::AnalyzeApi { app: app.clone() },
        keys::KeysApi { app: app.clone() },
        monitoring::MonitoringApi { app: app.clone() },
        audio::AudioApi { app: app.clone() },
        batches::BatchesApi { app: app.clone() },
        webhooks::WebhooksApi { app: app.clone() },
        document_batches::DocumentBatchesApi { app: app.clone() },
    );
    described(OpenApiService::new(apis, TITLE, env!("CARGO_PKG_VERSION")))
}

/// The document's title.
const TITLE: &str = "docpipe";

/// The document-wide description and server, the same for the serving and the spec-only service.
fn described<T: poem_openapi::OpenApi>(service: OpenApiService<T, ()>) -> OpenApiService<T, ()> {
    service
        .description(
            "Upload files (PDF, office, spreadsheets, text, images, audio) and get their text with locations. \
             Errors always have the shape `{\"error\": {\"message\", \"type\", \"code\", \"param\", \"request_id\"}}`.",
        )
        .server("/")
        .extra_response_header::<String, _>(
            ExtraHeader::new("X-Request-Id")
                .description("The request's id (the client's own when it sent a sane one)."),
        )
        .extra_response_header::<Option<u32>, _>(ExtraHeader::new("X-RateLimit-Limit").description(
            "Requests allowed per window (RATE_LIMIT_REQUESTS); absent when rate limiting is off.",
        ))
        .extra_response_header::<Option<u32>, _>(
            ExtraHeader::new("X-RateLimit-Remaining")
                .description("Requests left in the current window; absent when rate limiting is off."),
        )
        .extra_response_header::<Option<u64>, _>(
            ExtraHeader::new("X-RateLimit-Reset")
                .description("Seconds until the full quota is back; absent when rate limiting is off."),
        )
}

/// The endpoints' metadata without their handlers: what the OpenAPI document is built from, so writing it
/// needs no [`App`] (no database, no models). It has no routes and is never served.
struct SpecOnly<T>(std::marker::PhantomData<T>);

impl<T: poem_openapi::OpenApi> poem_openapi::OpenApi for SpecOnly<T> {
    fn meta() -> Vec<poem_openapi::registry::MetaApi> {
        T::meta()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }

    fn add_routes(
        self,
        _route_table: &mut std::collections::HashMap<
            String,
            std::collections::HashMap<poem::http::Method, poem::endpoint::BoxEndpoint<'static>>,
        >,
    ) {
    }
}

/// The OpenAPI document as JSON (what `docpipe openapi` prints and `openapi/openapi.json` holds), built from
/// the endpoints' types alone.
pub fn openapi_json() -> String {
    let spec = SpecOnly::<Apis>(std::marker::PhantomData);
    spec::finish(&described(OpenApiService::new(spec, TITLE, env!("CARGO_PKG_VERSION"))).spec())
}

/// The paths of the OpenAPI document (`/api/v1/files/{file_id}`, ...).
fn spec_paths(spec: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(spec)
        .ok()
        .and_then(|spec| {
            spec["paths"]
                .as_object()
                .map(|paths| paths.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// The whole HTTP application.
pub fn routes(app: &App) -> impl Endpoint + use<> {
    let api = service(app);
    let raw_spec = api.spec();
    let spec_json = spec::finish(&raw_spec);
    // The UIs embed the document; they get the finished one.
    let swagger = api.swagger_ui_html().replacen(&raw_spec, &spec_json, 1);
    let redoc = api.redoc_html().replacen(&raw_spec, &spec_json, 1);
    let config = app.config();
    let edge = Edge {
        max_file_size: config.max_file_size,
        max_batch_size: config.max_batch_size,
        linger: Duration::from_secs(config.oversize_linger_secs),
        linger_bytes: config.oversize_linger_bytes,
        allow: Arc::new(spec::AllowTable::new(
            &spec_json,
            &[("/metrics", "GET"), ("/openapi.json", "GET")],
        )),
    };
    let guard = Arc::new(auth::Guard::new(
        app.key_ring(),
        config.rate_limit_requests,
        Duration::from_secs(config.rate_limit_window),
        Duration::from_secs(config.body_timeout_secs),
        auth::route_names(spec_paths(&raw_spec)),
    ));
    let metrics_app = app.clone();
    let cors = poem::middleware::Cors::new()
        .allow_origins(config.cors_origins.iter().map(|o| o.trim().to_owned()))
        .allow_headers(["authorization", "x-api-key", "content-type", "x-request-id"])
        .expose_headers([
            "x-request-id",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
        ])
        .allow_credentials(false);
    Route::new()
        .at(
            "/metrics",
            poem::get(poem::endpoint::make(move |_| {
                monitoring::prometheus(metrics_app.clone())
            })),
        )
        .at(
            "/openapi.json",
            poem::get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(spec_json.clone())
            })),
        )
        .nest(
            "/docs",
            poem::get(poem::endpoint::make_sync(move |_| Html(swagger.clone()))),
        )
        .nest(
            "/redoc",
            poem::get(poem::endpoint::make_sync(move |_| Html(redoc.clone()))),
        )
        .nest("/", api)
        .around(move |ep, req| Arc::clone(&guard).handle(ep, req))
        .around(move |ep, req| edge.clone().handle(ep, req))
        .around(compression::handle)
        .with_if(!config.cors_origins.is_empty(), cors)
}
