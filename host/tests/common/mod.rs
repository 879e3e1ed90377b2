//! Shared by the in-process API tests: an [`AppState`] over a given store, with a temporary
//! customers root and data folder, and no worker running.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use qodify_host::engine::plugins::Catalog;
use qodify_host::engine::runtime::Runtime;
use qodify_host::ops::{AppState, EventHub};
use qodify_host::settings::{Ceilings, Settings};
use qodify_host::store::Store;

/// The app state of one test and the folders behind it.
pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub customers_root: PathBuf,
    pub state: AppState,
}

/// A state over `store`, with `token` as the API token (none: the API refuses everything).
pub fn env_on(store: Arc<dyn Store>, token: Option<&str>) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let customers_root = tmp.path().join("customers");
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&customers_root).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    let settings = Settings {
        customers_root: customers_root.clone(),
        data_dir: data_dir.clone(),
        store: Default::default(),
        node: "test".into(),
        advertise_url: None,
        plugin_dirs: Vec::new(),
        pipelines_dir: tmp.path().join("pipelines"),
        releases_dir: tmp.path().join("releases"),
        listen: "127.0.0.1:0".into(),
        api_token: token.map(str::to_owned),
        ceilings: Ceilings::default(),
        config_file: None,
        commands: Default::default(),
        grants: Default::default(),
        runs: Default::default(),
        console: Default::default(),
        schedule: Default::default(),
    };
    let state = AppState {
        hub: EventHub::new(store.clone()),
        store,
        wake: Arc::new(tokio::sync::Notify::new()),
        settings: Arc::new(settings),
        catalog: Arc::new(Catalog::default()),
        runtime: Arc::new(Runtime::new(&data_dir).unwrap()),
        host_id: "test-host".into(),
        running: Default::default(),
    };
    Env {
        _tmp: tmp,
        customers_root,
        state,
    }
}

/// Every entry below `root` (path, content of files, mode), sorted: to show a folder is
/// unchanged.
pub fn snapshot(root: &std::path::Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p.clone());
            }
            let content = if md.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push((p, content, md.permissions().mode()));
        }
    }
    out.sort();
    out
}
