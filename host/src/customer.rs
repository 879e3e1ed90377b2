//! Customers: an installer-api id and a DNS domain naming the customer's folder, and the
//! customer's database as the host reads it from the customer's own `.env` ([`database`]).

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use crate::pipeline::{CustomerDb, DbFacts};

/// Where the customer's `DATABASE_URL` is looked for, inside the customer folder, in order: the
/// services' layout, then the blue/green layout without the compatibility links.
pub const DATABASE_ENV_FILES: [&str; 2] = ["backend/.env", "current/backend/.env"];
/// A `.env` larger than this is not read (the customer's app can write it).
const MAX_ENV_FILE: u64 = 256 << 10;

/// The customer's database (host, port, name, user) from `DATABASE_URL` in the first of
/// [`DATABASE_ENV_FILES`] that exists. The file is opened inside the customer folder (links
/// followed only while they stay inside), must be a regular file (a FIFO never blocks) and
/// small; the URL and its password never appear in what is returned.
pub fn database(customer_dir: &Path) -> CustomerDb {
    match read_database(customer_dir) {
        Ok(facts) => CustomerDb::Known(facts),
        Err(why) => CustomerDb::Unavailable(why),
    }
}

fn read_database(customer_dir: &Path) -> Result<DbFacts, String> {
    let dir = cap_std::fs::Dir::open_ambient_dir(customer_dir, cap_std::ambient_authority())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "customer folder {} does not exist (check the domain, or set QODIFY_CUSTOMERS_ROOT / --customers-root)",
                customer_dir.display()
            ),
            _ => format!("opening the customer folder {}: {e}", customer_dir.display()),
        })?;
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NONBLOCK);
    let (name, mut file) = DATABASE_ENV_FILES
        .iter()
        .find_map(|name| match dir.open_with(name, &opts) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            other => Some((*name, other)),
        })
        .ok_or_else(|| {
            format!(
                "neither {} exists in {}; write DATABASE_URL there",
                DATABASE_ENV_FILES.join(" nor "),
                customer_dir.display()
            )
        })?;
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
        assert!(unavailable(&c).contains("neither backend/.env nor current/backend/.env exists"));
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
