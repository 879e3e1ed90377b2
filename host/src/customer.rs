//! Customers: an installer-api id and a DNS domain naming the customer's folder, where its
//! services are in either layout ([`service_paths`]), and the customer's database as the host
//! reads it from the customer's own `.env` ([`database`]).

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use crate::pipeline::{CustomerDb, CustomerPaths, DbFacts, ServicePaths};

/// A `.env` larger than this is not read (the customer's app can write it).
const MAX_ENV_FILE: u64 = 256 << 10;
/// Longest `current` link target the host follows.
const MAX_LINK: usize = 4096;

fn open_customer(customer_dir: &Path) -> Result<cap_std::fs::Dir, String> {
    cap_std::fs::Dir::open_ambient_dir(customer_dir, cap_std::ambient_authority()).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "customer folder {} does not exist (check the domain, or set QODIFY_CUSTOMERS_ROOT / --customers-root)",
                customer_dir.display()
            ),
            _ => format!("opening the customer folder {}: {e}", customer_dir.display()),
        }
    })
}

/// Where the customer's services and uploads are, relative to its folder, in either layout of
/// the plan (§3):
///
/// - **current**: `backend`, `admin`, `store` are folders; uploads in `backend/uploads`.
/// - **blue/green**: `current` names the live release (`current -> releases/<v>`, relative or
///   absolute, or a folder); the services are `releases/<v>/{backend,admin,store}`, whether or
///   not the compatibility links `backend -> current/backend` exist.
///
/// Uploads are the backend's `uploads` folder; when that is a link (to `shared/uploads`, as
/// the migration leaves it) or missing, and `shared/uploads` is a folder, they are
/// `shared/uploads`.
///
/// A real `backend` folder means the current layout, whatever else is there. The services are
/// named through the resolved release, never through a link, so mounts and restores work on a
/// shop installed straight into blue/green, and one whose `current` is an absolute link.
pub fn service_paths(customer_dir: &Path) -> CustomerPaths {
    match find_service_paths(customer_dir) {
        Ok(paths) => CustomerPaths::Known(paths),
        Err(why) => CustomerPaths::Unavailable(why),
    }
}

fn find_service_paths(customer_dir: &Path) -> Result<ServicePaths, String> {
    let dir = open_customer(customer_dir)?;
    let is_dir = |name: &str| dir.symlink_metadata(name).is_ok_and(|m| m.is_dir());
    let mut paths = if is_dir("backend") {
        ServicePaths::default()
    } else {
        match dir.symlink_metadata("current") {
            Ok(m) if m.is_dir() => ServicePaths::under("current"),
            Ok(m) if m.is_symlink() => ServicePaths::under(&release_of(&dir, customer_dir)?),
            // Neither layout (yet): the current layout's names, which the steps then report
            // as missing where they need them.
            _ => ServicePaths::default(),
        }
    };
    // Plan §6 step 5: uploads come from `shared/uploads` when the backend's `uploads` is a
    // link (or missing) and that folder exists; a real `uploads` folder is always the source.
    if !is_dir(&paths.uploads) && is_dir("shared") && is_dir("shared/uploads") {
        paths.uploads = "shared/uploads".to_owned();
    }
    Ok(paths)
}

/// The release `current` links to, as a plain path inside the customer folder.
fn release_of(dir: &cap_std::fs::Dir, customer_dir: &Path) -> Result<String, String> {
    use std::path::Component;
    let target = dir
        .read_link_contents("current")
        .map_err(|e| format!("reading the link `current`: {e}"))?;
    if target.as_os_str().len() > MAX_LINK {
        return Err("the link `current` is too long".to_owned());
    }
    let outside = || {
        format!(
            "`current` links to {}, which is not a release folder inside {}; point it at `releases/<version>`",
            target.display(),
            customer_dir.display()
        )
    };
    // An absolute link is accepted when it names a folder inside the customer folder, as
    // given or as the kernel resolves it.
    let relative = if target.is_absolute() {
        let canonical = std::fs::canonicalize(customer_dir).unwrap_or_default();
        target
            .strip_prefix(customer_dir)
            .or_else(|_| target.strip_prefix(&canonical))
            .map_err(|_| outside())?
            .to_path_buf()
    } else {
        target.clone()
    };
    let mut parts: Vec<String> = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(outside)?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(outside)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    let release = parts.join("/");
    // The release itself must be a real folder: a link there would be followed by whoever
    // uses the path.
    let mut at = String::new();
    for part in &parts {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        if !dir.symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
            return Err(format!(
                "`current` links to {}, but {at} is not a folder; point it at an existing release",
                target.display()
            ));
        }
    }
    if release.is_empty() {
        return Err(outside());
    }
    Ok(release)
}

/// The customer's database (host, port, name, user) from `DATABASE_URL` in the backend's
/// `.env`, found in either layout ([`service_paths`]). The file is opened inside the customer
/// folder (links followed only while they stay inside), must be a regular file (a FIFO never
/// blocks) and small; the URL and its password never appear in what is returned.
pub fn database(customer_dir: &Path) -> CustomerDb {
    match read_database(customer_dir) {
        Ok(facts) => CustomerDb::Known(facts),
        Err(why) => CustomerDb::Unavailable(why),
    }
}

fn read_database(customer_dir: &Path) -> Result<DbFacts, String> {
    let dir = open_customer(customer_dir)?;
    let name = format!("{}/.env", find_service_paths(customer_dir)?.backend);
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NONBLOCK);
    let mut file = match dir.open_with(&name, &opts) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{name} does not exist in {}; write DATABASE_URL there",
                customer_dir.display()
            ));
        }
        other => other,
    };
    let file = file.as_mut().map_err(|e| format!("opening {name}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("reading {name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{name} is not a regular file"));
    }
    if meta.len() > MAX_ENV_FILE {
        return Err(format!(
            "{name} is larger than {} KiB, too large for a .env file",
            MAX_ENV_FILE >> 10
        ));
    }
    let mut text = String::new();
    file.take(MAX_ENV_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {name}: {e}"))?;
    let url = pg_conn::dotenv::lookup(&text, "DATABASE_URL")
        .ok_or_else(|| format!("{name} sets no DATABASE_URL"))?;
    let target = pg_conn::url::parse(&url).map_err(|e| format!("DATABASE_URL in {name}: {e}"))?;
    Ok(DbFacts {
        host: target.host,
        port: target.port,
        name: target.database,
        user: target.user,
    })
}

/// Why a customer domain or id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustomerError {
    /// The domain is not a DNS name.
    #[error(
        "`{domain}` is not a valid customer domain: {why} (expected a DNS name such as shop.example.com)"
    )]
    BadDomain {
        /// What was given.
        domain: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The id has characters that cannot be stored or shown safely.
    #[error(
        "`{0}` is not a valid customer id: use 1-64 characters from a-z, A-Z, 0-9, `-` and `_`"
    )]
    BadId(String),
}

/// A validated DNS domain, lowercase. Being a DNS name, it can never contain `/`, `..` or NUL, so
/// `<customers_root>/<domain>` always names a direct child of the customers root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    /// Validates `s` as a DNS name: 1-253 characters, labels of 1-63 characters from a-z, 0-9 and
    /// `-`, not starting or ending with `-`, at least two labels, and a top-level label that is not
    /// all digits.
    pub fn parse(s: &str) -> Result<Self, CustomerError> {
        let bad = |why| CustomerError::BadDomain {
            domain: s.to_owned(),
            why,
        };
        let lower = s.to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(bad("length must be 1-253 characters"));
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("it needs at least two labels"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1-63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(bad("only letters, digits, `-` and `.` are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label cannot start or end with `-`"));
            }
        }
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("the top-level label cannot be numeric"));
        }
        Ok(Self(lower))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer as a run sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// installer-api's id; the CLI uses the domain when none is given.
    pub id: String,
    /// The customer's domain, naming its folder.
    pub domain: Domain,
}

impl Customer {
    /// Builds a customer from a domain and an optional id (defaulting to the domain).
    pub fn new(domain: &str, id: Option<&str>) -> Result<Self, CustomerError> {
        let domain = Domain::parse(domain)?;
        let id = match id {
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(CustomerError::BadId(id.to_owned()));
                }
                id.to_owned()
            }
            None => domain.as_str().to_owned(),
        };
        Ok(Self { id, domain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(dir: &std::path::Path) -> String {
        match database(dir) {
            CustomerDb::Unavailable(why) => why,
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[test]
    fn the_database_comes_from_the_customers_env_in_either_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("shop.example.com");
        std::fs::create_dir_all(c.join("backend")).unwrap();
        assert!(
            unavailable(&c).contains("backend/.env does not exist"),
            "{}",
            unavailable(&c)
        );
        std::fs::write(c.join("backend/.env"), "PORT=3000\n").unwrap();
        assert_eq!(unavailable(&c), "backend/.env sets no DATABASE_URL");
        std::fs::write(
            c.join("backend/.env"),
            "DATABASE_URL=postgres://shop:s3cret@127.0.0.1:5433/shop_db\n",
        )
        .unwrap();
        let want = CustomerDb::Known(DbFacts {
            host: "127.0.0.1".into(),
            port: 5433,
            name: "shop_db".into(),
            user: "shop".into(),
        });
        assert_eq!(database(&c), want);

        // Installed directly in the blue/green layout, without the compatibility links.
        let bg = tmp.path().join("bg.example.com");
        std::fs::create_dir_all(bg.join("releases/v1/backend")).unwrap();
        std::os::unix::fs::symlink("releases/v1", bg.join("current")).unwrap();
        std::fs::copy(c.join("backend/.env"), bg.join("releases/v1/backend/.env")).unwrap();
        assert_eq!(database(&bg), want);
    }

    fn paths(dir: &std::path::Path) -> ServicePaths {
        match service_paths(dir) {
            CustomerPaths::Known(p) => p,
            CustomerPaths::Unavailable(why) => panic!("layout not found: {why}"),
        }
    }

    fn no_paths(dir: &std::path::Path) -> String {
        match service_paths(dir) {
            CustomerPaths::Unavailable(why) => why,
            CustomerPaths::Known(p) => panic!("expected no layout, got {p:?}"),
        }
    }

    #[test]
    fn the_services_are_found_in_either_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |p: &str| std::fs::create_dir_all(tmp.path().join(p)).unwrap();
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, tmp.path().join(at)).unwrap()
        };

        // Plan §3.1: folders at the top, uploads in the backend.
        mk("cur.example.com/backend/uploads");
        mk("cur.example.com/admin");
        // A stale shared/uploads does not take over from a real backend/uploads.
        mk("cur.example.com/shared/uploads");
        let p = paths(&tmp.path().join("cur.example.com"));
        assert_eq!(p, ServicePaths::default());
        assert_eq!(p.uploads, "backend/uploads");

        // Plan §3.2 installed directly: releases, `current`, shared/uploads, no links on top.
        mk("bg.example.com/releases/1.4.0/backend");
        mk("bg.example.com/releases/1.4.0/admin");
        mk("bg.example.com/shared/uploads");
        link("releases/1.4.0", "bg.example.com/current");
        let p = paths(&tmp.path().join("bg.example.com"));
        assert_eq!(p.backend, "releases/1.4.0/backend");
        assert_eq!(p.store, "releases/1.4.0/store");
        assert_eq!(p.uploads, "shared/uploads");

        // What migrate-layout leaves: the compatibility links on top, uploads linked to shared.
        mk("mig.example.com/releases/20261201-000000/backend");
        mk("mig.example.com/shared/uploads");
        link("releases/20261201-000000", "mig.example.com/current");
        link("current/backend", "mig.example.com/backend");
        link(
            "../../../shared/uploads",
            "mig.example.com/releases/20261201-000000/backend/uploads",
        );
        let p = paths(&tmp.path().join("mig.example.com"));
        assert_eq!(p.backend, "releases/20261201-000000/backend");
        assert_eq!(p.uploads, "shared/uploads");

        // `current` as an absolute link into the customer folder, or as `./releases/x/`.
        mk("abs.example.com/releases/2.0.0/backend");
        let abs = tmp.path().join("abs.example.com");
        link(
            abs.join("releases/2.0.0").to_str().unwrap(),
            "abs.example.com/current",
        );
        assert_eq!(paths(&abs).backend, "releases/2.0.0/backend");
        assert_eq!(paths(&abs).uploads, "releases/2.0.0/backend/uploads");
        mk("dot.example.com/releases/2.0.0");
        link("./releases/x/../2.0.0/", "dot.example.com/current");
        assert_eq!(
            paths(&tmp.path().join("dot.example.com")).admin,
            "releases/2.0.0/admin"
        );
    }

    #[test]
    fn a_current_link_leading_out_or_nowhere_is_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |p: &str| std::fs::create_dir_all(tmp.path().join(p)).unwrap();
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, tmp.path().join(at)).unwrap()
        };
        mk("other.example.com/releases/1.0.0/backend");
        for (domain, target) in [
            ("up.example.com", "../other.example.com/releases/1.0.0"),
            (
                "abs.example.com",
                tmp.path()
                    .join("other.example.com/releases/1.0.0")
                    .to_str()
                    .unwrap(),
            ),
            ("self.example.com", "."),
        ] {
            mk(domain);
            link(target, &format!("{domain}/current"));
            let why = no_paths(&tmp.path().join(domain));
            assert!(
                why.contains("not a release folder inside"),
                "{domain}: {why}"
            );
        }
        // A dangling link, and a release that is itself a link out.
        mk("gone.example.com");
        link("releases/9.9.9", "gone.example.com/current");
        let why = no_paths(&tmp.path().join("gone.example.com"));
        assert!(
            why.contains("links to releases/9.9.9") && why.contains("is not a folder"),
            "{why}"
        );
        mk("hop.example.com/releases");
        link(
            tmp.path()
                .join("other.example.com/releases/1.0.0")
                .to_str()
                .unwrap(),
            "hop.example.com/releases/1.0.0",
        );
        link("releases/1.0.0", "hop.example.com/current");
        let why = no_paths(&tmp.path().join("hop.example.com"));
        assert!(why.contains("releases/1.0.0 is not a folder"), "{why}");
        // A missing customer folder says so.
        assert!(no_paths(&tmp.path().join("none.example.com")).contains("does not exist"));
    }

    #[test]
    fn a_hostile_env_file_is_refused_without_blocking_or_leaking() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("shop.example.com");
        std::fs::create_dir_all(c.join("backend")).unwrap();
        // A FIFO: refused at once (opened non-blocking), never read.
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            c.join("backend/.env").as_path(),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert_eq!(unavailable(&c), "backend/.env is not a regular file");
        std::fs::remove_file(c.join("backend/.env")).unwrap();
        // A link out of the customer folder: not followed.
        let outside = tmp.path().join("other.env");
        std::fs::write(&outside, "DATABASE_URL=postgres://x:y@10.0.0.9/other\n").unwrap();
        std::os::unix::fs::symlink(&outside, c.join("backend/.env")).unwrap();
        assert!(unavailable(&c).starts_with("opening backend/.env"));
        std::fs::remove_file(c.join("backend/.env")).unwrap();
        // Too large to be a .env file.
        std::fs::write(c.join("backend/.env"), vec![b'#'; 300 << 10]).unwrap();
        assert!(unavailable(&c).contains("too large"));
        // A broken URL: the reason, never the URL or its password.
        std::fs::write(
            c.join("backend/.env"),
            "DATABASE_URL=mysql://u:hunter2@h/db\n",
        )
        .unwrap();
        let why = unavailable(&c);
        assert!(why.starts_with("DATABASE_URL in backend/.env:"), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn accepts_dns_names_and_lowercases_them() {
        assert_eq!(
            Domain::parse("Shop.Example.com").unwrap().as_str(),
            "shop.example.com"
        );
        assert!(Domain::parse("a-b.c1.io").is_ok());
    }

    #[test]
    fn refuses_anything_that_could_name_another_folder() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b.com",
            "shop",
            "shop..com",
            "-a.com",
            "a-.com",
            "a.com.",
            "a b.com",
            "a\0.com",
            "1.2.3.4",
            "/etc/passwd",
            "ş.com",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn customer_ids_are_restricted() {
        assert_eq!(Customer::new("a.com", Some("42")).unwrap().id, "42");
        assert_eq!(Customer::new("a.com", None).unwrap().id, "a.com");
        assert!(Customer::new("a.com", Some("../x")).is_err());
    }
}
