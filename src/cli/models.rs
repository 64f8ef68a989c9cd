//! `docpipe models ...`: conversions of model files done once after `make models`.

use std::process::ExitCode;

use super::ModelsCommand;

/// Runs one conversion.
pub async fn run(which: ModelsCommand) -> anyhow::Result<ExitCode> {
    match which {
        ModelsCommand::ConvertWhisper { models_dir, force } => {
            use crate::models::asr;
            let dir = models_dir.join(asr::CT2_DIR_NAME);
            let out = dir.join(asr::GGML_FILE_NAME);
            if out.is_file() && !force {
                println!("{} exists (use --force to convert again)", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let out2 = out.clone();
            let model = tokio::task::spawn_blocking(move || {
                asr::convert::convert_dir(&dir, &out2, asr::GGML_WEIGHTS)
            })
            .await??;
            println!(
                "wrote {} ({} tensors, {:?})",
                out.display(),
                model.tensors.len(),
                model.hparams
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
