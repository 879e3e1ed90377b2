//! Capability manifests: what a plugin says it expects to be granted (mounts by role, host
//! programs, HTTP origins), embedded in its component as the custom section `qodify-manifest`
//! (the bytes of its `qodify-plugin.toml`, appended by the build). The host never grants from a
//! manifest: grants come from pipelines only. It compares the two, so ops see a pipeline that
//! grants more than the plugin asks for, and `plugins list` shows what each plugin asks for.

use serde::{Deserialize, Serialize};

use crate::pipeline::PlannedStep;

/// The custom section's name.
pub const SECTION: &str = "qodify-manifest";

/// The manifest file's name in a plugin's folder.
pub const FILE_NAME: &str = "qodify-plugin.toml";

/// What a plugin expects to be granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format, 1.
    pub schema: u32,
    /// One line about the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Host programs it calls.
    #[serde(default)]
    pub programs: Vec<String>,
    /// HTTP origins it reaches, `http://HOST:PORT` (PORT may be `*`).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Folders it needs.
    #[serde(default)]
    pub mounts: Vec<DeclaredMount>,
}

/// A folder a plugin needs, by what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredMount {
    /// What the folder is for, e.g. `source`.
    pub role: String,
    /// `ro` or `rw`.
    pub access: DeclaredAccess,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeclaredAccess {
    /// Read-only.
    Ro,
    /// Read-write.
    Rw,
}

/// A plugin's manifest with the interfaces its component imports: what it asks for, and what it
/// could call at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The manifest.
    pub manifest: Manifest,
    /// The component's imported interfaces.
    pub imports: Vec<String>,
}

/// Why a component's manifest cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a component.
    #[error("not a valid component: {0}")]
    Component(String),
    /// The section is not valid TOML of the manifest's shape.
    #[error("its `qodify-manifest` section is not a valid manifest: {0}")]
    Invalid(String),
    /// Two sections.
    #[error("it has more than one `qodify-manifest` section")]
    Duplicate,
}

impl Manifest {
    /// Parses manifest text (the TOML file).
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Invalid(e.message().to_owned()))?;
        if m.schema != 1 {
            return Err(ManifestError::Invalid(format!(
                "schema {} is not known to this host (it reads schema 1)",
                m.schema
            )));
        }
        for o in &m.origins {
            crate::pipeline::HttpGrant::parse(o)
                .map_err(|why| ManifestError::Invalid(format!("origin `{o}`: {why}")))?;
        }
        Ok(m)
    }

    /// The manifest embedded in a component, `None` when it has none.
    pub fn of_component(bytes: &[u8]) -> Result<Option<Self>, ManifestError> {
        let mut found = None;
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| ManifestError::Component(e.to_string()))? {
                wasmparser::Payload::Version { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::CustomSection(c) if depth == 1 && c.name() == SECTION => {
                    if found.is_some() {
                        return Err(ManifestError::Duplicate);
                    }
                    let text = std::str::from_utf8(c.data())
                        .map_err(|_| ManifestError::Invalid("not UTF-8 text".into()))?;
                    found = Some(Self::parse(text)?);
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// What `step` is granted beyond what this manifest declares, one line each, e.g.
    /// "program `rm` is granted but the plugin does not declare it". `imports` are the
    /// component's imported interfaces: a grant of a capability it cannot call is named too.
    pub fn excess(&self, step: &PlannedStep, imports: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let imports_iface = |name: &str| {
            imports
                .iter()
                .any(|i| i.starts_with(&format!("qodify:pipeline/{name}@")))
        };
        if !step.commands.is_empty() && !imports_iface("commands") {
            out.push("programs are granted but the plugin cannot run programs (it does not import `commands`)".to_owned());
        }
        for c in &step.commands {
            if !self.programs.contains(&c.program) {
                out.push(format!(
                    "program `{}` is granted but the plugin does not declare it",
                    c.program
                ));
            }
        }
        if !step.http.is_empty() && !imports_iface("http") {
            out.push("origins are granted but the plugin cannot send requests (it does not import `http`)".to_owned());
        }
        for h in &step.http {
            if !self.origins.iter().any(|o| covers(o, &h.host, h.port)) {
                out.push(format!(
                    "origin `{}` is granted but the plugin does not declare it",
                    h.origin
                ));
            }
        }
        let declared_rw = self
            .mounts
            .iter()
            .filter(|m| m.access == DeclaredAccess::Rw)
            .count();
        let granted_rw = step.mounts.iter().filter(|m| m.writable).count();
        if granted_rw > declared_rw {
            out.push(format!(
                "{granted_rw} writable mount(s) are granted but the plugin declares {declared_rw}"
            ));
        }
        if step.mounts.len() > self.mounts.len() {
            out.push(format!(
                "{} mount(s) are granted but the plugin declares {}",
                step.mounts.len(),
                self.mounts.len()
            ));
        }
        out
    }
}

/// Whether the declared origin `declared` covers `host:port` (`None`: any port).
fn covers(declared: &str, host: &str, port: Option<u16>) -> bool {
    match crate::pipeline::HttpGrant::parse(declared) {
        Ok((h, p)) => h == host && (p.is_none() || p == port),
        Err(_) => false,
    }
}

/// Appends `manifest` to a component as its `qodify-manifest` custom section (what the builds
/// do; tests use it to make plugin versions).
pub fn embed(component: &[u8], manifest: &str) -> Vec<u8> {
    let mut out = component.to_vec();
    let section = wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: manifest.as_bytes().into(),
    };
    // A custom section is id 0, then its size, name and bytes, in a component as in a module.
    out.push(0);
    wasm_encoder::Encode::encode(&section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{CommandGrant, HttpGrant, Limits, MountRoot, PlannedMount};

    const TEXT: &str = r#"
schema = 1
description = "dumps the database"
programs = ["pg_dump"]
origins = ["http://127.0.0.1:*"]
[[mounts]]
role = "dest"
access = "rw"
"#;

    fn step(programs: &[&str], origins: &[&str], mounts: &[bool]) -> PlannedStep {
        PlannedStep {
            id: "s".into(),
            plugin: "p".into(),
            sha256: None,
            description: None,
            config: serde_json::json!({}),
            mounts: mounts
                .iter()
                .enumerate()
                .map(|(i, w)| PlannedMount {
                    guest: format!("/m{i}"),
                    from: MountRoot::Customer,
                    path: "x".into(),
                    writable: *w,
                    create: false,
                    optional: false,
                    reason: None,
                })
                .collect(),
            commands: programs
                .iter()
                .map(|p| CommandGrant {
                    program: (*p).into(),
                    args: vec![],
                    env: vec![],
                    inherit: vec![],
                    secrets: Default::default(),
                    net: vec![],
                    bind: vec![],
                    reason: None,
                })
                .collect(),
            http: origins
                .iter()
                .map(|o| {
                    let (host, port) = HttpGrant::parse(o).unwrap();
                    HttpGrant {
                        origin: (*o).into(),
                        host,
                        port,
                        reason: None,
                    }
                })
                .collect(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_a_custom_section() {
        // The smallest component: magic and the component layer's version.
        let component = b"\0asm\x0d\0\x01\0";
        assert_eq!(Manifest::of_component(component).unwrap(), None);
        let with = embed(component, TEXT);
        let m = Manifest::of_component(&with).unwrap().unwrap();
        assert_eq!(m.programs, ["pg_dump"]);
        assert_eq!(m.mounts[0].access, DeclaredAccess::Rw);
        let twice = embed(&with, TEXT);
        assert_eq!(
            Manifest::of_component(&twice),
            Err(ManifestError::Duplicate)
        );
        let bad = embed(component, "schema = 2");
        assert!(
            matches!(Manifest::of_component(&bad), Err(ManifestError::Invalid(m)) if m.contains("schema 2"))
        );
    }

    #[test]
    fn grants_beyond_the_manifest_are_named() {
        let m = Manifest::parse(TEXT).unwrap();
        let imports = vec![
            "qodify:pipeline/commands@0.1.2".to_owned(),
            "qodify:pipeline/http@0.1.2".to_owned(),
        ];
        assert!(
            m.excess(
                &step(&["pg_dump"], &["http://127.0.0.1:8080"], &[true]),
                &imports
            )
            .is_empty()
        );
        let extra = m.excess(
            &step(&["pg_dump", "rm"], &["http://10.0.0.1:80"], &[true, true]),
            &imports,
        );
        assert_eq!(extra.len(), 4, "{extra:?}");
        assert!(extra[0].contains("`rm`") && extra[1].contains("http://10.0.0.1:80"));
        let extra = m.excess(&step(&["pg_dump"], &[], &[true]), &[]);
        assert!(extra[0].contains("does not import `commands`"), "{extra:?}");
    }
}
