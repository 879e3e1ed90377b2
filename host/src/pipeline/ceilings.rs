//! Host ceilings on grants: which programs, TCP ports and HTTP origins any pipeline may grant on
//! this host (`[grants]` in `qodify-host.toml`). A pipeline that asks for more is refused with the
//! place of each grant that goes past a ceiling, before anything runs.

use super::diag::{Diagnostic, Diagnostics};
use super::resolve::{HttpGrant, NetGrant};
use super::{Pipeline, Section};

/// What any pipeline may grant on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCeilings {
    /// Programs a `[[steps.commands]]` grant may name.
    pub programs: Vec<String>,
    /// TCP ports a `net` grant may name (Landlock filters ports, not addresses).
    pub connect_ports: Vec<u16>,
    /// TCP ports a `bind` grant may name.
    pub bind_ports: Vec<u16>,
    /// HTTP origins a `[[steps.http]]` grant may name: `http://HOST:PORT`, PORT may be `*`.
    pub http: Vec<String>,
    /// Where the ceilings come from, for the hint (the settings file, or "the defaults").
    pub origin: String,
}

impl Default for GrantCeilings {
    /// What the shipped pipelines need, and nothing else.
    fn default() -> Self {
        Self {
            programs: [
                "createdb",
                "dropdb",
                "node",
                "npm",
                "npx",
                "pg_dump",
                "pg_restore",
                "pm2",
                "psql",
            ]
            .map(String::from)
            .to_vec(),
            connect_ports: vec![5432],
            bind_ports: Vec::new(),
            http: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
                .map(String::from)
                .to_vec(),
            origin: "the built-in defaults".to_owned(),
        }
    }
}

impl GrantCeilings {
    /// Whether an HTTP origin grant (host, port; `None` is any port) stays inside a ceiling.
    fn allows_http(&self, host: &str, port: Option<u16>) -> bool {
        self.http.iter().any(|c| match HttpGrant::parse(c) {
            Ok((ch, cp)) => ch == host && (cp.is_none() || cp == port),
            Err(_) => false,
        })
    }

    /// Checks the ceilings themselves (the settings file): every HTTP origin parses.
    pub fn check(&self) -> Result<(), String> {
        for origin in &self.http {
            HttpGrant::parse(origin)
                .map_err(|e| format!("[grants] http: `{origin}` is not an origin: {e}"))?;
        }
        Ok(())
    }
}

/// Refuses every grant of `p` that goes past `c`, each at its `file:line:col`.
pub fn check_ceilings(p: &Pipeline, c: &GrantCeilings) -> Result<(), Diagnostics> {
    let mut diags: Vec<(usize, usize, Diagnostic)> = Vec::new();
    let mut at = |src: usize, span: std::ops::Range<usize>, message: String, hint: String| {
        let d = p.sources[src].error(span.clone(), message).with_hint(hint);
        diags.push((src, span.start, d));
    };
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    for section in Section::ALL {
        for step in p.section(section) {
            for cmd in &step.commands {
                let program = cmd.program.get();
                if !c.programs.iter().any(|a| a == program) {
                    at(
                        cmd.program.src(),
                        cmd.program.span(),
                        format!(
                            "step {} grants program `{program}`, which this host does not allow any pipeline to run",
                            step.id.get()
                        ),
                        format!(
                            "allowed programs ([grants] programs in {}): {}; ask the host's operators to add it, or do the work in the plugin",
                            c.origin,
                            list(c.programs.clone())
                        ),
                    );
                }
                for (key, grants, allowed) in [
                    ("net", &cmd.net, &c.connect_ports),
                    ("bind", &cmd.bind, &c.bind_ports),
                ] {
                    for grant in grants {
                        // Unparsable grants are `validate`'s to report.
                        let Ok(NetGrant { port, .. }) = NetGrant::parse(grant) else {
                            continue;
                        };
                        if !allowed.contains(&port) {
                            let setting = if key == "net" {
                                "connect_ports"
                            } else {
                                "bind_ports"
                            };
                            at(
                                grant.src(),
                                grant.span(),
                                format!(
                                    "step {} grants `{program}` {key} port {port}, which this host does not allow",
                                    step.id.get()
                                ),
                                format!(
                                    "allowed ports ([grants] {setting} in {}): {}",
                                    c.origin,
                                    list(allowed.iter().map(u16::to_string).collect())
                                ),
                            );
                        }
                    }
                }
            }
            for h in &step.http {
                let Ok((host, port)) = HttpGrant::parse(h.origin.get()) else {
                    continue;
                };
                if !c.allows_http(&host, port) {
                    at(
                        h.origin.src(),
                        h.origin.span(),
                        format!(
                            "step {} grants HTTP origin `{}`, which this host does not allow",
                            step.id.get(),
                            h.origin.get()
                        ),
                        format!(
                            "allowed origins ([grants] http in {}): {}",
                            c.origin,
                            list(c.http.clone())
                        ),
                    );
                }
            }
        }
    }
    diags.sort_by_key(|(src, start, _)| (*src, *start));
    match Diagnostics::from_vec(diags.into_iter().map(|(_, _, d)| d).collect()) {
        Some(d) => Err(d),
        None => Ok(()),
    }
}
