//! Plugin (work in progress).
