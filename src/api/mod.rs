//! HTTP only: routes, wire types, error mapping and the edge middleware. Handlers parse the request, call
//! the application facade ([`App`]) and map the result; no business logic, SQL or locks here.

mod audio;
mod embeddings;
pub mod error;
mod files;
pub mod middleware;
mod openai_files;
mod search;
mod system;
pub mod types;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::app::App;
use middleware::Edge;

/// The tenant every request acts for until API keys assign one.
pub const TENANT: &str = "default";

/// Groups of endpoints in the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// Upload files and read what was extracted from them.
    Files,
    /// Keyword, vector and hybrid search over uploaded files.
    Search,
    /// OpenAI-compatible endpoints.
    #[oai(rename = "OpenAI")]
    OpenAi,
    /// Health and operations.
    System,
}

type Apis = (
    files::FilesApi,
    search::SearchApi,
    embeddings::EmbeddingsApi,
    openai_files::OpenAiFilesApi,
    system::SystemApi,
    audio::AudioApi,
);

fn service(app: &App) -> OpenApiService<Apis, ()> {
    let apis = (
        files::FilesApi { app: app.clone() },
        search::SearchApi { app: app.clone() },
        embeddings::EmbeddingsApi { app: app.clone() },
        openai_files::OpenAiFilesApi { app: app.clone() },
        system::SystemApi { app: app.clone() },
        audio::AudioApi { app: app.clone() },
    );
    OpenApiService::new(apis, "docpipe", env!("CARGO_PKG_VERSION"))
        .description(
            "Upload files (PDF, office, spreadsheets, text, images, audio) and get their text with locations. \
             Errors always have the shape `{\"error\": {\"message\", \"type\", \"code\", \"param\", \"request_id\"}}`.",
        )
        .server("/")
}

/// The OpenAPI document as JSON (what `docpipe openapi` prints and `openapi/openapi.json` holds).
pub fn openapi_json(app: &App) -> String {
    service(app).spec()
}

/// The whole HTTP application.
pub fn routes(app: &App) -> impl Endpoint + use<> {
    let api = service(app);
    let edge = Edge {
        max_file_size: app.config.max_file_size,
    };
    Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/redoc", api.redoc())
        .nest("/", api)
        .around(move |ep, req| edge.handle(ep, req))
}
