//! Test plugin (work in progress).
