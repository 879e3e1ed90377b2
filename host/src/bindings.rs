//! The one `bindgen!` of the `qodify:pipeline` WIT world; every other module uses these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
});

pub use qodify::pipeline::{approvals, cancellation, commands, files, http, progress, types};
