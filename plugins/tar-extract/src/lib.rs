//! Shared by `restore-files` and `release-unpack`: unpacking an untrusted `.tar.gz` into a fresh,
//! empty folder with every entry checked before anything of it is written ([`extract`]), through
//! the SDK's [`FileSystem`](qodify_plugin_sdk::fs::FileSystem) (the host's in the plugins,
//! `std`'s in native tests), and the relative-path helpers both use ([`paths`]).
//!
//! A library, not a plugin: a plugin crate cannot depend on another plugin crate, whose `run`
//! export would clash with its own at link time.

pub mod extract;
pub mod paths;
