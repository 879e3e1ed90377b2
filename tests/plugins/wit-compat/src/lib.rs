//! `wit-compat` test plugin: built with plain wit-bindgen against the frozen
//! `qodify:pipeline@0.1.0` WIT in `wit/`, the contract as first released. It uses an item of
//! every interface that 0.1.0 had (progress, cancellation, files, commands: `node --version`) and returns what it
//! saw as outputs, so a test proves a plugin built before 0.1.1 still runs, and works, on the
//! current host.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "wasm32")]
mod guest {
    wit_bindgen::generate!({ path: "wit", world: "step" });

    use qodify::pipeline::types::{ErrorKind, Output};
    use qodify::pipeline::{cancellation, commands, files, progress};

    struct Compat;

    impl Guest for Compat {
        fn run(ctx: StepContext) -> Result<StepResult, StepError> {
            progress::report(10.0, "starting");
            progress::log(
                progress::Level::Info,
                &format!("wit 0.1.0 plugin for {}", ctx.customer.domain),
            );
            let mount = ctx
                .mounts
                .first()
                .map(|m| m.guest_path.clone())
                .ok_or(StepError {
                    kind: ErrorKind::InvalidConfig,
                    message: "grant one mount".into(),
                })?;
            let entries = std::fs::read_dir(&mount)
                .map_err(|e| StepError {
                    kind: ErrorKind::Io,
                    message: format!("listing {mount}: {e}"),
                })?
                .count();
            let kind = match files::stat(&mount) {
                Ok(m) => format!("{:?}", m.kind),
                Err(e) => format!("error {e:?}"),
            };
            let node = match commands::run(&commands::Command {
                program: "node".into(),
                args: vec!["--version".into()],
                env: vec![],
                cwd: None,
                stdout: commands::OutputTarget::Capture,
                stderr: commands::OutputTarget::Discard,
                timeout_ms: Some(10_000),
            }) {
                Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                Err(e) => format!("denied {e:?}"),
            };
            progress::report(100.0, "done");
            let out = |k: &str, v: String| Output {
                key: k.into(),
                value: v,
            };
            Ok(StepResult {
                artifacts: vec![],
                outputs: vec![
                    out("wit", "0.1.0".into()),
                    out("entries", entries.to_string()),
                    out("stat", kind),
                    out("node", node),
                    out("cancelled", cancellation::is_cancelled().to_string()),
                ],
            })
        }
    }

    export!(Compat);
}
