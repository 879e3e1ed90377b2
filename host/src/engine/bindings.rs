//! The one `bindgen!` of the `qodify:pipeline` WIT world; every other module uses these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    // `run` is async so the host can drop a step waiting inside a WASI sleep or poll at its
    // deadline or on cancel; the host's own capabilities stay synchronous.
    exports: { default: async },
});

pub use qodify::pipeline::{approvals, cancellation, commands, files, http, progress, types};
