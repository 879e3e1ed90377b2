//! Test plugin that returns at once, to measure the host's per-step overhead. With config
//! `{ "echo": "text" }` it returns the output `echo = text`.

use qodify_plugin_sdk::prelude::*;

/// Optional `echo` text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    echo: Option<String>,
}

struct Noop;

impl Step for Noop {
    type Config = Config;

    fn run(_ctx: &Context, config: Config) -> Result<Output, Error> {
        Ok(match config.echo {
            Some(text) => Output::new().value("echo", text),
            None => Output::new(),
        })
    }
}

export_step!(Noop);
