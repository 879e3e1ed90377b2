//! What the web console reads about customers, the same for every surface: the list of customers
//! ([`list`]: each with its layout and live release as found in its folder, its newest backup
//! history line and its active run) and a customer's upgrade targets ([`upgrades`]: the release
//! catalog's versions, each allowed or refused by the rule the upgrade's `release-check` step
//! applies, with the `.env` keys the release would add, change or remove).
//!
//! The store answers a page of customers in one query; only the customers of that page are
//! looked at on disk.

use std::io::Read as _;
use std::path::Path;

use serde::Serialize;

use super::Page;
use crate::customer;
use crate::pipeline::{CustomerPaths, ServicePaths};
use crate::releases::{self, CatalogError, Release};
use crate::store::{ActiveRun, BackupRecord, CustomerQuery, CustomerRecord, Store, StoreError};

/// Largest `.env` or `package.json` read (the customer's app can write them).
const MAX_FILE: u64 = 256 << 10;
/// The upgrade journal inside `releases/` (`upgrade_kit::journal::FILE`): there while an upgrade
/// runs, and left behind by one that did not finish.
const UPGRADE_JOURNAL: &str = "releases/.upgrade.json";
/// Why a customer in the current layout cannot be upgraded (`release-check`'s words).
const NOT_BLUE_GREEN: &str = "the customer folder is not in the blue/green layout (it has no \
     `current` symlink); run the migrate-layout pipeline first";

/// How a customer's folder is laid out (plan §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `backend`, `admin` and `store` directly in the customer's folder.
    Current,
    /// `current` names the live release, `releases/<version>`.
    BlueGreen,
    /// The customer has no folder on this host.
    Missing,
}

/// What is installed in a customer's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The layout.
    pub layout: Layout,
    /// The live release: in the blue/green layout the release folder `current` names (e.g.
    /// `v1.1.0`), in the current layout the version in `backend/package.json`; `None` when
    /// neither tells.
    pub release: Option<String>,
}

/// What a customer's folder holds: the layout as runs find it ([`customer::service_paths`], so
/// the list shows what a backup would use), and the services' paths in it.
fn inspect(customers_root: &Path, domain: &str) -> (Installed, Option<ServicePaths>) {
    let Ok(dir) = crate::engine::sandbox::open_customer(customers_root, domain) else {
        let missing = Installed {
            layout: Layout::Missing,
            release: None,
        };
        return (missing, None);
    };
    match customer::service_paths(&customers_root.join(domain)) {
        CustomerPaths::Known(paths) => {
            let installed = match paths.backend.strip_suffix("/backend") {
                None => Installed {
                    layout: Layout::Current,
                    release: package_version(&dir, &paths.backend),
                },
                // `releases/<version>`, or `current` itself when it is a folder (no version).
                Some(root) => Installed {
                    layout: Layout::BlueGreen,
                    release: root
                        .strip_prefix("releases/")
                        .filter(|v| !v.contains('/'))
                        .map(str::to_owned),
                },
            };
            (installed, Some(paths))
        }
        // A `current` that does not lead to a release folder: blue/green, but broken.
        CustomerPaths::Unavailable(_) => {
            let layout = if dir.symlink_metadata("current").is_ok() {
                Layout::BlueGreen
            } else {
                Layout::Current
            };
            let installed = Installed {
                layout,
                release: None,
            };
            (installed, None)
        }
    }
}

/// The layout and live release of the customer with folder `domain`.
pub fn installed(customers_root: &Path, domain: &str) -> Installed {
    inspect(customers_root, domain).0
}

/// A small regular file inside the customer's folder (links followed only while they stay
/// inside; a FIFO never blocks): `Ok(None)` when it does not exist, `Err(())` when it cannot be
/// read as such.
fn read_small(dir: &cap_std::fs::Dir, name: &str) -> Result<Option<String>, ()> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NONBLOCK);
    let file = match dir.open_with(name, &opts) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
        _ => return Err(()),
    }
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|_| ())?;
    Ok(Some(text))
}

/// The `version` of `<backend>/package.json`, when it is a short line of text.
fn package_version(dir: &cap_std::fs::Dir, backend: &str) -> Option<String> {
    let text = read_small(dir, &format!("{backend}/package.json")).ok()??;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let version = doc.get("version")?.as_str()?.trim();
    let plain =
        !version.is_empty() && version.len() <= 64 && !version.chars().any(char::is_control);
    plain.then(|| version.to_owned())
}

/// Which customers [`list`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only customers whose id or domain contains this text, in any case.
    pub text: Option<String>,
    /// Only customers whose domain sorts after this one: the previous page's `next_before`.
    pub before: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// A customer as the list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The customer.
    pub customer: CustomerRecord,
    /// Its layout and live release.
    pub installed: Installed,
    /// The newest line of its backup history.
    pub last_backup: Option<BackupRecord>,
    /// Its active run (the running one, else the oldest queued).
    pub active_run: Option<ActiveRun>,
}

/// One page of customers in domain order; `next_before` is the page's last domain when more
/// follow.
pub fn list(
    store: &dyn Store,
    customers_root: &Path,
    query: &ListQuery,
) -> Result<Page<Listed>, StoreError> {
    let rows = store.customer_overviews(&CustomerQuery {
        text: query.text.clone(),
        after_domain: query.before.clone(),
        limit: query.limit.saturating_add(1),
    })?;
    Ok(
        Page::cut(rows, query.limit, |o| o.customer.domain.clone()).map(|o| Listed {
            installed: installed(customers_root, &o.customer.domain),
            customer: o.customer,
            last_backup: o.last_backup,
            active_run: o.active_run,
        }),
    )
}

/// A customer's upgrade options.
#[derive(Debug, Clone, PartialEq)]
pub struct Upgrades {
    /// What the customer runs now.
    pub current: Installed,
    /// Every release of the catalog, newest first.
    pub targets: Vec<Target>,
}

/// One release of the catalog, for one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The version.
    pub version: String,
    /// The upgrade's first step would let it through (the Node.js and PostgreSQL versions
    /// aside: those are checked when the upgrade runs, against `node` and `postgres`).
    pub allowed: bool,
    /// Why not, when not: the refusal the upgrade would fail with.
    pub reason: Option<String>,
    /// Release notes.
    pub notes: Option<String>,
    /// Node.js versions it runs on.
    pub node: String,
    /// PostgreSQL versions it supports.
    pub postgres: String,
    /// The `.env` keys the catalog's changes would add, change or remove in the customer's live
    /// `.env` files; `None` when those files cannot be read (or the customer has no folder).
    pub env_changes: Option<EnvKeys>,
}

/// `.env` keys, by what a release does to them (names only, never values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvKeys {
    /// Keys the release sets that the live file does not have.
    pub added: Vec<EnvKey>,
    /// Keys the live file has that the release sets to another value (approval needed).
    pub changed: Vec<EnvKey>,
    /// Keys the live file has that the release removes (approval needed).
    pub removed: Vec<EnvKey>,
}

/// One key of one service's `.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvKey {
    /// `backend`, `admin` or `store`.
    pub service: String,
    /// The variable's name.
    pub key: String,
}

/// Why a customer's upgrade targets cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradesError {
    /// No such customer.
    #[error("unknown customer {0}; register it with PUT /api/customers/{0}")]
    UnknownCustomer(String),
    /// The release catalog cannot be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The release catalog's versions (in `releases_dir`; none when it holds no catalog) for
/// customer `customer_id`, newest first, each allowed or refused as the upgrade's check would:
/// the customer's folder is in the blue/green layout with `current` naming a release, no upgrade
/// journal is there, the catalog's rule ([`release_rules::check`]: the target upgrades from the
/// live release), and the target's package is in the catalog folder.
pub fn upgrades(
    store: &dyn Store,
    customers_root: &Path,
    releases_dir: &Path,
    customer_id: &str,
) -> Result<Upgrades, UpgradesError> {
    let customer = store
        .customer(customer_id)?
        .ok_or_else(|| UpgradesError::UnknownCustomer(customer_id.to_owned()))?;
    let (current, paths) = inspect(customers_root, &customer.domain);
    let dir = crate::engine::sandbox::open_customer(customers_root, &customer.domain).ok();
    let from = live_release(dir.as_ref(), &current, &customer.domain);
    let catalog = releases::read(releases_dir)?.unwrap_or_else(|| releases::Catalog {
        releases: Vec::new(),
        external_versions: Default::default(),
    });
    let env = match (&dir, &paths) {
        (Some(dir), Some(paths)) => LiveEnv::read(dir, paths),
        _ => None,
    };
    let entries = catalog.upgrade_entries();
    let mut targets: Vec<Target> = catalog
        .releases
        .iter()
        .map(|release| {
            let reason = match &from {
                Err(why) => Some(why.clone()),
                Ok(from) => match release_rules::check(&entries, from, &release.version) {
                    Err(refusal) => Some(refusal.to_string()),
                    Ok(_) => package_missing(releases_dir, release),
                },
            };
            Target {
                version: release.version.clone(),
                allowed: reason.is_none(),
                reason,
                notes: release.notes.clone(),
                node: release.compat.node.clone(),
                postgres: release.compat.postgres.clone(),
                env_changes: env.as_ref().map(|e| e.changes(release)),
            }
        })
        .collect();
    targets.sort_by(|a, b| releases::compare_versions(&b.version, &a.version));
    Ok(Upgrades { current, targets })
}

/// The release an upgrade would start from, or why no upgrade can start (the checks of
/// `release-check` before the catalog's: the layout, then a left-over journal).
fn live_release(
    dir: Option<&cap_std::fs::Dir>,
    current: &Installed,
    domain: &str,
) -> Result<String, String> {
    let release = match (current.layout, &current.release) {
        (Layout::Missing, _) => {
            return Err(format!(
                "the customer has no folder {domain} on this host; install it (or restore a \
                 backup) first"
            ));
        }
        (Layout::Current, _) => return Err(NOT_BLUE_GREEN.to_owned()),
        (Layout::BlueGreen, None) => {
            return Err(
                "`current` does not point at a release folder (releases/<version>); \
                 point it back at the live release (ln -sfn releases/<version> current)"
                    .to_owned(),
            );
        }
        (Layout::BlueGreen, Some(release)) => release.clone(),
    };
    let Some(dir) = dir else {
        return Ok(release);
    };
    match read_small(dir, UPGRADE_JOURNAL) {
        Ok(None) => Ok(release),
        journal => {
            // Name the upgrade when the journal says which (`{run, from, to, …}`).
            let named = journal
                .ok()
                .flatten()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|j| {
                    let field = |k: &str| j.get(k)?.as_str().map(str::to_owned);
                    Some(format!(
                        " (run {}, from {} to {})",
                        field("run")?,
                        field("from")?,
                        field("to")?
                    ))
                })
                .unwrap_or_default();
            Err(format!(
                "an upgrade{named} is running or did not finish ({UPGRADE_JOURNAL} is there): \
                 wait for its run to end; when none is active, run `qodify-host recover \
                 --customer {domain}`"
            ))
        }
    }
}

/// `release-check`'s refusal when the release's package is not in the catalog folder.
fn package_missing(releases_dir: &Path, release: &Release) -> Option<String> {
    let rel = Path::new(&release.package.path);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain && releases_dir.join(rel).is_file() {
        return None;
    }
    Some(format!(
        "the package of {} ({}) is not in the release catalog folder; copy it there and check \
         the catalog with `qodify-host validate`",
        release.version, release.package.path
    ))
}

/// The customer's live `.env` text of each service (empty when a service has none).
struct LiveEnv {
    services: Vec<(&'static str, String)>,
}

impl LiveEnv {
    /// `None` when a service's `.env` is there but cannot be read as a small regular file.
    fn read(dir: &cap_std::fs::Dir, paths: &ServicePaths) -> Option<Self> {
        let mut services = Vec::new();
        for (service, path) in [
            ("backend", &paths.backend),
            ("admin", &paths.admin),
            ("store", &paths.store),
        ] {
            let text = read_small(dir, &format!("{path}/.env")).ok()?;
            services.push((service, text.unwrap_or_default()));
        }
        Some(Self { services })
    }

    /// What `release`'s deliberate changes do to the live files, as the upgrade's `env` step
    /// reports them: a key set where there is none is added, one set to another value changed,
    /// one removed where there is one removed. (Keys new in the release's `.env.example` are
    /// added too when it runs; they are in the package, not the catalog.)
    fn changes(&self, release: &Release) -> EnvKeys {
        let mut keys = EnvKeys::default();
        for (service, text) in &self.services {
            let Some(changes) = release.env.get(*service) else {
                continue;
            };
            let key = |k: &str| EnvKey {
                service: (*service).to_owned(),
                key: k.to_owned(),
            };
            for (k, value) in &changes.set {
                match pg_conn::dotenv::lookup(text, k) {
                    None => keys.added.push(key(k)),
                    Some(old) if old != *value => keys.changed.push(key(k)),
                    Some(_) => {}
                }
            }
            for k in &changes.remove {
                if pg_conn::dotenv::lookup(text, k).is_some() {
                    keys.removed.push(key(k));
                }
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn mk(root: &Path, path: &str) {
        std::fs::create_dir_all(root.join(path)).unwrap();
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn installed_as(layout: Layout, release: Option<&str>) -> Installed {
        Installed {
            layout,
            release: release.map(str::to_owned),
        }
    }

    #[test]
    fn the_layout_and_release_are_read_as_runs_find_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "cur.example.com/backend/package.json",
            r#"{"name":"backend","version":"1.0.3"}"#,
        );
        mk(root, "bg.example.com/releases/1.0.0/backend");
        mk(root, "bg.example.com/shared/uploads");
        std::os::unix::fs::symlink("releases/1.0.0", root.join("bg.example.com/current")).unwrap();
        // What migrate-layout leaves: the compatibility links on top.
        mk(root, "mig.example.com/releases/v1.1.0/backend");
        std::os::unix::fs::symlink("releases/v1.1.0", root.join("mig.example.com/current"))
            .unwrap();
        std::os::unix::fs::symlink("current/backend", root.join("mig.example.com/backend"))
            .unwrap();
        mk(root, "broken.example.com");
        std::os::unix::fs::symlink("releases/9.9.9", root.join("broken.example.com/current"))
            .unwrap();
        write(
            root,
            "odd.example.com/backend/package.json",
            "{\"version\": 3}",
        );

        for (domain, want) in [
            (
                "cur.example.com",
                installed_as(Layout::Current, Some("1.0.3")),
            ),
            (
                "bg.example.com",
                installed_as(Layout::BlueGreen, Some("1.0.0")),
            ),
            (
                "mig.example.com",
                installed_as(Layout::BlueGreen, Some("v1.1.0")),
            ),
            ("broken.example.com", installed_as(Layout::BlueGreen, None)),
            ("odd.example.com", installed_as(Layout::Current, None)),
            ("none.example.com", installed_as(Layout::Missing, None)),
        ] {
            assert_eq!(installed(root, domain), want, "{domain}");
        }
    }

    #[test]
    fn the_list_is_a_page_of_customers_with_what_their_folders_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let store = SqliteStore::open_in_memory().unwrap();
        for (id, domain) in [
            ("1", "a.example.com"),
            ("2", "b.example.com"),
            ("3", "c.example.com"),
        ] {
            store.upsert_customer(id, domain, Some("paid")).unwrap();
        }
        mk(root, "b.example.com/releases/2.0.0/backend");
        std::os::unix::fs::symlink("releases/2.0.0", root.join("b.example.com/current")).unwrap();

        let page = |text: Option<&str>, before: Option<&str>, limit| {
            list(
                &store,
                root,
                &ListQuery {
                    text: text.map(str::to_owned),
                    before: before.map(str::to_owned),
                    limit,
                },
            )
            .unwrap()
        };
        let first = page(None, None, 2);
        let ids: Vec<&str> = first.items.iter().map(|l| l.customer.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(first.next_before.as_deref(), Some("b.example.com"));
        assert_eq!(first.items[0].installed.layout, Layout::Missing);
        assert_eq!(
            first.items[1].installed,
            installed_as(Layout::BlueGreen, Some("2.0.0"))
        );
        assert_eq!(first.items[1].customer.tier.as_deref(), Some("paid"));
        let second = page(None, first.next_before.as_deref(), 2);
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].customer.id, "3");
        assert_eq!(second.next_before, None);
        let found = page(Some("B.EXAMPLE"), None, 100);
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].customer.id, "2");
    }

    /// A catalog folder: v1.0.0 → v1.1.0 → v1.2.0, v2.0.0 from v1.2.0 only; every package but
    /// v1.2.0's present.
    fn catalog(dir: &Path) {
        let release = |v: &str, from: &[&str], env: serde_json::Value| {
            serde_json::json!({
                "version": v,
                "package": {"path": format!("packages/{v}.tar.gz"), "sha256": "0".repeat(64)},
                "compat": {"node": ">=18.17 <23", "postgres": ">=13 <18", "upgradeFrom": from},
                "env": env,
                "notes": format!("notes of {v}"),
            })
        };
        let doc = serde_json::json!({"releases": [
            release("v1.0.0", &[], serde_json::json!({})),
            release("v2.0.0", &["v1.2.0"], serde_json::json!({})),
            release("v1.1.0", &["v1.0.0"], serde_json::json!({
                "backend": {"set": {"NEW_KEY": "1", "POOL": "20", "SAME": "x"}, "remove": ["OLD", "GONE"]},
                "store": {"set": {"STORE_KEY": "y"}},
            })),
            release("v1.2.0", &["v1.1.0"], serde_json::json!({})),
        ]});
        write(dir, "releases.json", &doc.to_string());
        for v in ["v1.0.0", "v1.1.0", "v2.0.0"] {
            write(dir, &format!("packages/{v}.tar.gz"), "tarball");
        }
    }

    fn targets(u: &Upgrades) -> Vec<(&str, bool, &str)> {
        u.targets
            .iter()
            .map(|t| {
                (
                    t.version.as_str(),
                    t.allowed,
                    t.reason.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    #[test]
    fn upgrade_targets_are_judged_by_the_upgrade_s_rule_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, releases_dir) = (tmp.path().join("customers"), tmp.path().join("releases"));
        catalog(&releases_dir);
        let store = SqliteStore::open_in_memory().unwrap();
        store.upsert_customer("7", "bg.example.com", None).unwrap();
        mk(&root, "bg.example.com/releases/v1.0.0/admin");
        write(
            &root,
            "bg.example.com/releases/v1.0.0/backend/.env",
            "POOL=10\nSAME=x\nOLD=1\n",
        );
        std::os::unix::fs::symlink("releases/v1.0.0", root.join("bg.example.com/current")).unwrap();

        let got = upgrades(&store, &root, &releases_dir, "7").unwrap();
        assert_eq!(got.current, installed_as(Layout::BlueGreen, Some("v1.0.0")));
        assert_eq!(
            targets(&got),
            [
                (
                    "v2.0.0",
                    false,
                    "v2.0.0 cannot be installed over v1.0.0: it upgrades from v1.2.0; upgrade \
                     through v1.1.0, then v1.2.0 first (v1.0.0 → v1.1.0 → v1.2.0 → v2.0.0)"
                ),
                (
                    "v1.2.0",
                    false,
                    "v1.2.0 cannot be installed over v1.0.0: it upgrades from v1.1.0; upgrade \
                     through v1.1.0 first (v1.0.0 → v1.1.0 → v1.2.0)"
                ),
                ("v1.1.0", true, ""),
                (
                    "v1.0.0",
                    false,
                    "the customer already runs v1.0.0; nothing to upgrade"
                ),
            ]
        );
        let v110 = &got.targets[2];
        assert_eq!(v110.notes.as_deref(), Some("notes of v1.1.0"));
        assert_eq!(v110.node, ">=18.17 <23");
        let names = |keys: &[EnvKey]| -> Vec<String> {
            keys.iter()
                .map(|k| format!("{}:{}", k.service, k.key))
                .collect()
        };
        let env = v110.env_changes.as_ref().unwrap();
        assert_eq!(names(&env.added), ["backend:NEW_KEY", "store:STORE_KEY"]);
        assert_eq!(names(&env.changed), ["backend:POOL"]);
        assert_eq!(names(&env.removed), ["backend:OLD"]);
        assert_eq!(got.targets[0].env_changes, Some(EnvKeys::default()));

        // From v1.1.0, v1.2.0 is allowed by the catalog, but its package is missing.
        std::fs::rename(
            root.join("bg.example.com/releases/v1.0.0"),
            root.join("bg.example.com/releases/v1.1.0"),
        )
        .unwrap();
        std::fs::remove_file(root.join("bg.example.com/current")).unwrap();
        std::os::unix::fs::symlink("releases/v1.1.0", root.join("bg.example.com/current")).unwrap();
        let got = upgrades(&store, &root, &releases_dir, "7").unwrap();
        assert_eq!(
            got.targets[1].reason.as_deref(),
            Some(
                "the package of v1.2.0 (packages/v1.2.0.tar.gz) is not in the release catalog \
                 folder; copy it there and check the catalog with `qodify-host validate`"
            )
        );

        // A journal left in releases/ refuses every target, naming the upgrade.
        write(
            &root,
            "bg.example.com/releases/.upgrade.json",
            r#"{"run":"r-9","from":"v1.0.0","to":"v1.1.0"}"#,
        );
        let got = upgrades(&store, &root, &releases_dir, "7").unwrap();
        assert!(got.targets.iter().all(|t| !t.allowed), "{got:?}");
        assert!(
            got.targets[0].reason.as_deref().unwrap().starts_with(
                "an upgrade (run r-9, from v1.0.0 to v1.1.0) is running or did not finish"
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_customer_that_cannot_be_upgraded_gets_every_target_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, releases_dir) = (tmp.path().join("customers"), tmp.path().join("releases"));
        catalog(&releases_dir);
        let store = SqliteStore::open_in_memory().unwrap();
        store.upsert_customer("1", "cur.example.com", None).unwrap();
        store
            .upsert_customer("2", "gone.example.com", None)
            .unwrap();
        write(&root, "cur.example.com/backend/.env", "OLD=1\n");

        let got = upgrades(&store, &root, &releases_dir, "1").unwrap();
        assert_eq!(got.current.layout, Layout::Current);
        assert_eq!(got.targets.len(), 4);
        for t in &got.targets {
            assert_eq!(t.reason.as_deref(), Some(NOT_BLUE_GREEN), "{t:?}");
        }
        // What a release would change is still told, from the current layout's files.
        let v110 = got.targets.iter().find(|t| t.version == "v1.1.0").unwrap();
        assert_eq!(v110.env_changes.as_ref().unwrap().removed.len(), 1);

        let got = upgrades(&store, &root, &releases_dir, "2").unwrap();
        assert_eq!(got.current.layout, Layout::Missing);
        assert!(
            got.targets[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("no folder")
        );
        assert_eq!(got.targets[0].env_changes, None);

        assert!(matches!(
            upgrades(&store, &root, &releases_dir, "3"),
            Err(UpgradesError::UnknownCustomer(_))
        ));
        // No catalog: nothing to offer. A broken one: the error says how to check it.
        let empty = tmp.path().join("empty");
        assert!(
            upgrades(&store, &root, &empty, "1")
                .unwrap()
                .targets
                .is_empty()
        );
        write(&empty, "releases.json", "{\"releases\": [");
        let err = upgrades(&store, &root, &empty, "1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("qodify-host validate"), "{err}");
    }

    #[test]
    fn the_shipped_catalog_upgrades_v1_0_0_to_v1_1_0() {
        // The catalog in templates/ is what a checkout's host offers by default.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let store = SqliteStore::open_in_memory().unwrap();
        store.upsert_customer("1", "bg.example.com", None).unwrap();
        mk(root, "bg.example.com/releases/v1.0.0/backend");
        std::os::unix::fs::symlink("releases/v1.0.0", root.join("bg.example.com/current")).unwrap();
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let got = upgrades(&store, root, &templates, "1").unwrap();
        let allowed: Vec<&str> = got
            .targets
            .iter()
            .filter(|t| t.allowed)
            .map(|t| t.version.as_str())
            .collect();
        assert_eq!(allowed, ["v1.1.0"], "{got:?}");
    }
}
