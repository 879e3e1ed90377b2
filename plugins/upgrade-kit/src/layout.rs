//! Names of the blue/green layout, relative to the customer folder.

/// The folder of installed releases.
pub const RELEASES: &str = "releases";
/// The symlink to the live release (`releases/<version>`, relative).
pub const CURRENT: &str = "current";
/// Content that survives releases.
pub const SHARED: &str = "shared";
/// The services of a release, in the order they are handled.
pub const SERVICES: [&str; 3] = ["backend", "admin", "store"];
/// Where uploads live after the migration.
pub const SHARED_UPLOADS: &str = "shared/uploads";
/// The symlink target of `releases/<v>/backend/uploads`.
pub const UPLOADS_LINK: &str = "../../../shared/uploads";

/// `releases/<version>` as the `current` symlink stores it.
pub fn current_target(version: &str) -> String {
    format!("{RELEASES}/{version}")
}

/// The version a `current` target names (`releases/v1.0.0` → `v1.0.0`), if it has that shape.
pub fn version_of_target(target: &str) -> Option<&str> {
    let v = target.trim_end_matches('/').strip_prefix("releases/")?;
    (is_version_name(v)).then_some(v)
}

/// A release folder name: `[A-Za-z0-9._+-]`, not starting with `.`, at most 64 bytes.
pub fn is_version_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_current_targets() {
        assert_eq!(version_of_target("releases/v1.0.0"), Some("v1.0.0"));
        assert_eq!(version_of_target("releases/v1.0.0/"), Some("v1.0.0"));
        assert_eq!(version_of_target("releases/../x"), None);
        assert_eq!(version_of_target("/abs/releases/v1"), None);
        assert_eq!(version_of_target("releases/.upgrade.json"), None);
        assert_eq!(current_target("v2"), "releases/v2");
    }
}
