//! Parses a `postgres://` / `postgresql://` connection URL into what `pg_dump` needs. Errors
//! never quote the URL or any part of it: it holds the password.

use std::fmt;

/// `sslmode` values libpq accepts.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Where and as whom to connect. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// Host name, IP address, or a unix socket folder (from `?host=`).
    pub host: String,
    /// TCP port (also names the socket file).
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, percent-decoded; `None` when the URL has none.
    pub password: Option<String>,
    /// Database name.
    pub database: String,
    /// `sslmode` query parameter, when given.
    pub sslmode: Option<String>,
    /// Query parameters that were ignored (names only), e.g. Prisma's `schema`.
    pub ignored_params: Vec<String>,
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .field("ignored_params", &self.ignored_params)
            .finish()
    }
}

/// Why a URL was rejected; the text names the problem, never the URL's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Parses `url`.
pub fn parse(url: &str) -> Result<DbTarget, UrlError> {
    let url = url.trim();
    let rest = strip_scheme(url, "postgresql://")
        .or_else(|| strip_scheme(url, "postgres://"))
        .ok_or(UrlError(
            "it does not start with postgres:// or postgresql://",
        ))?;
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    // RFC 3986: the authority ends at the first `/` or `?`; special characters in the user or
    // password must be percent-encoded.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, q),
        None => (after, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (decode(user)?, Some(decode(pw)?)),
            None => (decode(u)?, None),
        },
        None => (String::new(), None),
    };
    if hostport.contains(',') {
        return Err(UrlError(
            "it names several hosts; give the one primary host to dump from",
        ));
    }
    let (host, port) = split_host_port(hostport)?;
    let mut host = decode(host)?;
    let mut port = match port {
        None | Some("") => 5432,
        Some(p) => parse_port(p)?,
    };
    let mut sslmode = None;
    let mut ignored_params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        let value = decode(value)?;
        match key.as_str() {
            "sslmode" => {
                if !SSL_MODES.contains(&value.as_str()) {
                    return Err(UrlError(
                        "its sslmode is not one of disable, allow, prefer, require, verify-ca, \
                         verify-full",
                    ));
                }
                sslmode = Some(value);
            }
            // libpq: query parameters override the authority.
            "host" if !value.is_empty() => host = value,
            "port" if !value.is_empty() => port = parse_port(&value)?,
            _ => ignored_params.push(key),
        }
    }
    if host.is_empty() {
        host = "localhost".to_string();
    }
    let database = decode(path.trim_start_matches('/'))?;
    if database.is_empty() {
        return Err(UrlError(
            "it names no database (postgres://user:password@host:port/DATABASE)",
        ));
    }
    if user.is_empty() {
        return Err(UrlError(
            "it names no user (postgres://USER:password@host:port/database)",
        ));
    }
    // pg_dump reads a `--dbname` holding `=` as a connection string, not a name.
    if database.contains('=') {
        return Err(UrlError(
            "its database name contains `=`, which pg_dump would misread",
        ));
    }
    if [&host, &user, &database]
        .iter()
        .any(|v| v.chars().any(char::is_control))
    {
        return Err(UrlError(
            "its host, user or database contains control characters",
        ));
    }
    Ok(DbTarget {
        host,
        port,
        user,
        password,
        database,
        sslmode,
        ignored_params,
    })
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// Splits `host:port`, `[v6]:port`, `host` or ``.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, rest) = v6
            .split_once(']')
            .ok_or(UrlError("its IPv6 host has no closing `]`"))?;
        return match rest {
            "" => Ok((addr, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((addr, Some(port))),
                None => Err(UrlError("text follows its IPv6 host")),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

fn parse_port(port: &str) -> Result<u16, UrlError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(UrlError(
            "its port is not a number from 1 to 65535 (are special characters in the password \
             percent-encoded?)",
        )),
    }
}

/// Percent-decodes `s` (`+` stays `+`, as libpq reads it).
fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UrlError(
                    "it has a bad percent-escape (`%` must be followed by two hex digits)",
                ))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError("a percent-escape in it does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> DbTarget {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn full_url_with_encoded_password() {
        let t = ok(
            "postgresql://shop_user:p%40ss%2Fw%3Ard%25@db.internal:6543/shop_prod?schema=public&sslmode=require",
        );
        assert_eq!(t.host, "db.internal");
        assert_eq!(t.port, 6543);
        assert_eq!(t.user, "shop_user");
        assert_eq!(t.password.as_deref(), Some("p@ss/w:rd%"));
        assert_eq!(t.database, "shop_prod");
        assert_eq!(t.sslmode.as_deref(), Some("require"));
        assert_eq!(t.ignored_params, ["schema"]);
    }

    #[test]
    fn defaults_and_scheme_case() {
        let t = ok("POSTGRES://u@/db");
        assert_eq!((t.host.as_str(), t.port), ("localhost", 5432));
        assert_eq!(t.password, None);
        let t = ok("postgres://u:@h:/db");
        assert_eq!(t.password.as_deref(), Some(""));
        assert_eq!(t.port, 5432);
    }

    #[test]
    fn socket_folder_and_port_from_the_query() {
        let t = ok("postgres://u:pw@/shop?host=%2Fvar%2Frun%2Fpostgresql&port=5433");
        assert_eq!((t.host.as_str(), t.port), ("/var/run/postgresql", 5433));
        let t = ok("postgres://u:pw@ignored:1/shop?host=/tmp");
        assert_eq!(t.host, "/tmp");
    }

    #[test]
    fn ipv6_hosts() {
        let t = ok("postgres://u:pw@[::1]:5444/db");
        assert_eq!((t.host.as_str(), t.port), ("::1", 5444));
        assert_eq!(ok("postgres://u:pw@[fe80::1]/db").port, 5432);
        assert!(parse("postgres://u:pw@[::1/db").is_err());
    }

    #[test]
    fn malformed_urls_are_rejected_without_quoting_them() {
        let secret = "hunter2";
        for url in [
            "hunter2".to_string(),
            format!("mysql://u:{secret}@h/db"),
            format!("postgres://u:{secret}@h:99999/db"),
            format!("postgres://u:{secret}@h:5x/db"),
            format!("postgres://u:{secret}@h/"),
            format!("postgres://:{secret}@h/db"),
            format!("postgres://u:{secret}%zz@h/db"),
            format!("postgres://u:{secret}@h1,h2/db"),
            format!("postgres://u:{secret}@h/db?sslmode=maybe"),
            format!("postgres://u:{secret}@h/a=b"),
            format!("postgres://u:{secret}/x@h/db"),
        ] {
            let err = parse(&url).expect_err(&url).to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(!err.contains("u:"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let t = ok("postgres://u:hunter2@h/db");
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
