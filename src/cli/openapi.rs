//! `docpipe openapi`: the OpenAPI document, built from the endpoints' types (no database, no models).

use anyhow::Context as _;

/// Prints the document, or writes it to `output`.
pub fn run(output: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let spec = crate::api::openapi_json();
    match output {
        Some(path) => std::fs::write(&path, spec + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{spec}"),
    }
    Ok(())
}
