//! `docpipe serve`: the HTTP server, from start-up to graceful shutdown.

use std::process::ExitCode;

use anyhow::Context as _;
use poem::listener::Listener as _;

use crate::app::App;
use crate::config::Config;
use crate::{api, telemetry};

/// Serves until SIGINT or SIGTERM, then drains.
pub async fn run(settings: Config) -> anyhow::Result<ExitCode> {
    telemetry::init(&settings.log_level, settings.log_format);
    tracing::info!(?settings, "starting docpipe");
    let app = App::open(settings).await?;
    if app.keys_required() {
        tracing::info!(
            "API keys required on every route but /health, /docs, /redoc and /openapi.json"
        );
    } else {
        tracing::warn!(
            "NO ADMIN KEY IS SET (DOCPIPE_ADMIN_KEY or API_KEY): the API is open to anyone who can reach \
             this port. Set one before exposing the server beyond this machine."
        );
    }
    let mut running = app.start().await?;
    app.start_batches(&mut running, api::batch_executor(&app));
    let addr = app.config().listen_addr();
    let acceptor = poem::listener::TcpListener::bind(addr.clone())
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let acceptor = api::header_deadline::HeaderDeadlineAcceptor::new(
        acceptor,
        std::time::Duration::from_secs(app.config().header_timeout_secs),
    );
    tracing::info!(%addr, "listening; Swagger UI at /docs");
    let draining = app.clone();
    let grace = std::time::Duration::from_secs(app.config().shutdown_grace_secs);
    poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(std::time::Duration::from_secs(
            app.config().idle_timeout_secs,
        ))
        .run_with_graceful_shutdown(
            api::routes(&app),
            async move {
                shutdown_signal().await;
                draining.begin_draining();
                tracing::info!(
                    grace_seconds = grace.as_secs(),
                    "shutdown requested: no new connections; finishing in-flight requests"
                );
            },
            Some(grace),
        )
        .await
        .with_context(|| format!("cannot serve on {addr}"))?;
    tracing::info!("requests finished; stopping workers and models");
    app.shutdown(Some(running)).await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `docpipe reindex`: rebuilds the search indexes from the database (server stopped).
pub async fn reindex(settings: Config) -> anyhow::Result<ExitCode> {
    telemetry::init(&settings.log_level, settings.log_format);
    let n = crate::app::reindex(settings).await?;
    println!("reindexed {n} chunks");
    Ok(ExitCode::SUCCESS)
}
