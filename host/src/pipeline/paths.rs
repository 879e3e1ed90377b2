//! Path rules for mounts: guest paths are absolute and normalised, host paths stay inside their
//! folder (checked before and again after templating).

use std::path::PathBuf;

use super::units::Problem;

/// Checks a guest path: absolute, normalised, not `/` itself.
pub(crate) fn check_guest(path: &str) -> Result<(), Problem> {
    let fail = |message: String, hint: &str| {
        Err(Problem {
            message,
            hint: hint.to_owned(),
        })
    };
    if path.contains('\0') || path.contains('\\') {
        return fail(
            format!("guest path `{}` contains a NUL or a backslash", show(path)),
            "use `/` as the separator, e.g. `/src`",
        );
    }
    let Some(rest) = path.strip_prefix('/') else {
        return fail(
            format!("guest path `{path}` is not absolute"),
            "start it with `/`, e.g. `/src`",
        );
    };
    if rest.is_empty() {
        return fail(
            "guest path `/` would be the guest's whole file system".to_owned(),
            "mount at a folder such as `/src`",
        );
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        let normal: Vec<&str> = rest
            .split('/')
            .filter(|c| !c.is_empty() && *c != "." && *c != "..")
            .collect();
        return fail(
            format!("guest path `{path}` is not normalised"),
            &format!(
                "write it without `.`, `..`, `//` or a trailing `/`, e.g. `/{}`",
                normal.join("/")
            ),
        );
    }
    Ok(())
}

/// Whether guest path `inner` equals `outer` or lies inside it (both already checked).
pub(crate) fn guest_within(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Why a host path (after templating) does not stay inside its folder; completes
/// "path `x` …" in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathProblem {
    Escapes,
    Absolute,
    EmptyComponent,
    DotComponent,
    Backslash,
    Nul,
    Empty,
}

impl PathProblem {
    /// What to write instead.
    pub(crate) fn hint(&self, folder: &str) -> String {
        match self {
            PathProblem::Backslash => "use `/` as the separator".to_owned(),
            PathProblem::EmptyComponent => "remove the extra `/`".to_owned(),
            PathProblem::DotComponent => {
                "remove the `.` components; \"\" or \".\" alone mean the folder itself".to_owned()
            }
            _ => format!(
                "give a relative path inside the {folder}, such as `backend`; \"\" or \".\" mean the folder itself"
            ),
        }
    }

    pub(crate) fn describe(&self, folder: &str) -> String {
        match self {
            PathProblem::Escapes => format!("leaves the {folder}"),
            PathProblem::Absolute => format!("is absolute, so it leaves the {folder}"),
            PathProblem::EmptyComponent => {
                "has an empty component (`//`, or a leading or trailing `/`)".to_owned()
            }
            PathProblem::DotComponent => "has a `.` component".to_owned(),
            PathProblem::Backslash => "contains a backslash".to_owned(),
            PathProblem::Nul => "contains a NUL byte".to_owned(),
            PathProblem::Empty => "is empty after templating".to_owned(),
        }
    }
}

/// Checks a host path relative to its folder and returns it as normal components only.
/// `literal_root` says whether the path as written was `""` or `"."`: only that spelling means
/// the folder itself, so a template can never widen a mount to the whole folder.
pub(crate) fn check_relative(path: &str, literal_root: bool) -> Result<PathBuf, PathProblem> {
    if literal_root {
        return Ok(PathBuf::new());
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    let mut out = PathBuf::new();
    for component in path.split('/') {
        match component {
            ".." => return Err(PathProblem::Escapes),
            "." => return Err(PathProblem::DotComponent),
            "" => return Err(PathProblem::EmptyComponent),
            normal => out.push(normal),
        }
    }
    Ok(out)
}

/// A path for messages: control characters escaped, everything else as written.
pub(crate) fn show(path: &str) -> String {
    path.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether a mount path as written means the folder itself.
pub(crate) fn is_literal_root(path: &str) -> bool {
    path.is_empty() || path == "."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_must_be_absolute_and_normalised() {
        assert!(check_guest("/src").is_ok());
        assert!(check_guest("/out/db").is_ok());
        for bad in ["src", "/", "/src/", "/a//b", "/a/./b", "/a/../b", "/a\\b"] {
            assert!(check_guest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_compares_whole_components() {
        assert!(guest_within("/src/a", "/src"));
        assert!(guest_within("/src", "/src"));
        assert!(!guest_within("/srcx", "/src"));
    }

    #[test]
    fn host_paths_stay_inside_their_folder() {
        assert_eq!(
            check_relative("backend/uploads", false),
            Ok(PathBuf::from("backend/uploads"))
        );
        assert_eq!(check_relative("", true), Ok(PathBuf::new()));
        assert_eq!(check_relative("../x", false), Err(PathProblem::Escapes));
        assert_eq!(
            check_relative("a/../../x", false),
            Err(PathProblem::Escapes)
        );
        assert_eq!(check_relative("/etc", false), Err(PathProblem::Absolute));
        assert_eq!(
            check_relative("a//b", false),
            Err(PathProblem::EmptyComponent)
        );
        assert_eq!(
            check_relative("a/", false),
            Err(PathProblem::EmptyComponent)
        );
        assert_eq!(check_relative("./a", false), Err(PathProblem::DotComponent));
        assert_eq!(
            check_relative("a\\..\\b", false),
            Err(PathProblem::Backslash)
        );
        assert_eq!(check_relative("a\0b", false), Err(PathProblem::Nul));
        assert_eq!(check_relative("", false), Err(PathProblem::Empty));
        assert_eq!(check_relative(".", false), Err(PathProblem::DotComponent));
    }
}
