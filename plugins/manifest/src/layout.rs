//! What the customer folder says about versions and the uploads path, for both layouts (plan
//! §3): the current one (`backend/`, `admin/`, `store/` with their `package.json`) and blue/green
//! (`current -> releases/<tag>`, `backend/uploads -> shared/uploads`). The functions here are
//! pure; the plugin gathers the [`Facts`] through the host.

use serde::Serialize;

/// The services whose versions the manifest records, in its order.
pub const SERVICES: [&str; 3] = ["backend", "admin", "store"];

/// What was found in the customer folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Target of `<customer>/current` when it is a symlink (blue/green layout).
    pub current_link: Option<String>,
    /// Text of `<customer>/<service>/package.json` for [`SERVICES`] (current layout).
    pub packages: [Option<String>; 3],
    /// Text of the backend's `package.json` in the layout in use.
    pub backend_package: Option<String>,
    /// True when `backend/uploads` (or the release's) is a symlink.
    pub uploads_is_symlink: bool,
}

/// `versions` of `backup.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// The backend's semver or release tag.
    pub backend: Option<String>,
    /// The admin's.
    pub admin: Option<String>,
    /// The store's.
    pub store: Option<String>,
}

/// `paths` of `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Paths {
    /// `backend/uploads`, or `shared/uploads` once uploads moved there.
    pub uploads_path: String,
}

/// The release tag a `current` link points to: its last component (`releases/v1.2.0` →
/// `v1.2.0`; absolute targets too).
pub fn release_tag(link: &str) -> Option<String> {
    link.split('/')
        .rfind(|c| !c.is_empty() && *c != ".")
        .filter(|c| *c != "..")
        .map(str::to_string)
}

/// Guest path of the release folder `current` points to, inside `customer`. A relative link is
/// resolved from the customer folder; an absolute one is a host path the sandbox cannot see, so
/// `releases/<tag>` is assumed. `None` when it would leave the customer folder.
pub fn release_dir(customer: &str, link: &str) -> Option<String> {
    let customer = customer.trim_end_matches('/');
    let relative = if link.starts_with('/') {
        format!("releases/{}", release_tag(link)?)
    } else {
        link.to_string()
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    (!parts.is_empty()).then(|| format!("{customer}/{}", parts.join("/")))
}

/// A string field of a `package.json` text, e.g. `version` or `packageManager`.
pub fn package_field(package_json: &str, field: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(package_json).ok()?;
    doc.get(field)?
        .as_str()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Versions: the release tag for every service in the blue/green layout, else each service's
/// `package.json` version (`None` when missing).
pub fn versions(facts: &Facts) -> Versions {
    if let Some(tag) = facts.current_link.as_deref().and_then(release_tag) {
        return Versions {
            backend: Some(tag.clone()),
            admin: Some(tag.clone()),
            store: Some(tag),
        };
    }
    let [backend, admin, store] = facts
        .packages
        .clone()
        .map(|p| p.and_then(|text| package_field(&text, "version")));
    Versions {
        backend,
        admin,
        store,
    }
}

/// `paths.uploadsPath`.
pub fn paths(facts: &Facts) -> Paths {
    Paths {
        uploads_path: if facts.uploads_is_symlink {
            "shared/uploads"
        } else {
            "backend/uploads"
        }
        .to_string(),
    }
}

/// The package manager from the backend's `package.json` (`packageManager`, e.g. `pnpm@9.1.0`).
pub fn declared_package_manager(facts: &Facts) -> Option<String> {
    package_field(facts.backend_package.as_deref()?, "packageManager")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(version: &str) -> Option<String> {
        Some(format!(r#"{{"name":"x","version":"{version}"}}"#))
    }

    #[test]
    fn release_tags() {
        assert_eq!(release_tag("releases/v1.2.0").as_deref(), Some("v1.2.0"));
        assert_eq!(release_tag("./releases/v1.2.0/").as_deref(), Some("v1.2.0"));
        assert_eq!(
            release_tag("/var/qodify/customers/x/releases/v2.0.0").as_deref(),
            Some("v2.0.0")
        );
        assert_eq!(release_tag(""), None);
        assert_eq!(release_tag("releases/.."), None);
    }

    #[test]
    fn release_dirs_stay_in_the_customer_folder() {
        assert_eq!(
            release_dir("/customer", "releases/v1").as_deref(),
            Some("/customer/releases/v1")
        );
        assert_eq!(
            release_dir("/customer/", "./releases//v1/").as_deref(),
            Some("/customer/releases/v1")
        );
        assert_eq!(
            release_dir("/customer", "/srv/c/releases/v3").as_deref(),
            Some("/customer/releases/v3")
        );
        assert_eq!(release_dir("/customer", "../other/releases/v1"), None);
        assert_eq!(release_dir("/customer", "."), None);
    }

    #[test]
    fn current_layout_versions_from_package_json() {
        let facts = Facts {
            packages: [pkg("1.4.2"), Some("{not json".into()), None],
            ..Facts::default()
        };
        assert_eq!(
            versions(&facts),
            Versions {
                backend: Some("1.4.2".into()),
                admin: None,
                store: None
            }
        );
        assert_eq!(paths(&facts).uploads_path, "backend/uploads");
    }

    #[test]
    fn blue_green_layout_uses_the_release_tag_everywhere() {
        let facts = Facts {
            current_link: Some("releases/v1.2.0".into()),
            packages: [pkg("9.9.9"), None, None],
            backend_package: Some(r#"{"packageManager":"pnpm@9.1.0"}"#.into()),
            uploads_is_symlink: true,
        };
        let tag = Some("v1.2.0".to_string());
        assert_eq!(
            versions(&facts),
            Versions {
                backend: tag.clone(),
                admin: tag.clone(),
                store: tag
            }
        );
        assert_eq!(paths(&facts).uploads_path, "shared/uploads");
        assert_eq!(
            declared_package_manager(&facts).as_deref(),
            Some("pnpm@9.1.0")
        );
    }

    #[test]
    fn package_fields() {
        assert_eq!(
            package_field(r#"{"version":" 2.0.0 "}"#, "version").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(package_field(r#"{"version":2}"#, "version"), None);
        assert_eq!(package_field(r#"{"version":""}"#, "version"), None);
        assert_eq!(package_field("", "version"), None);
        assert_eq!(declared_package_manager(&Facts::default()), None);
    }
}
