//! `docpipe openapi`: the OpenAPI document.

use anyhow::Context as _;
use clap::FromArgMatches as _;

use crate::api;
use crate::app::App;
use crate::config::Config;

/// Prints the document, or writes it to `output`.
pub async fn run(output: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let spec = spec().await?;
    match output {
        Some(path) => std::fs::write(&path, spec + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{spec}"),
    }
    Ok(())
}

/// The OpenAPI document, built from a throw-away app (the spec does not depend on any state).
async fn spec() -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("docpipe-openapi-{}", std::process::id()));
    let settings = Config::from_arg_matches(&super::serve_command().get_matches_from(["serve"]))?;
    let app = App::open(Config {
        data_dir: dir.clone(),
        // The spec does not depend on which models are loaded.
        chat_models: "none".to_owned(),
        ..settings
    })
    .await?;
    let spec = api::openapi_json(&app);
    app.shutdown(None).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(spec)
}
