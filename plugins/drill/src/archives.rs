//! The archives of a backup as its `backup.json` lists them, and what unpacking one must give:
//! the number of regular files and their bytes the `archive` step counted while writing it
//! (`files`, `bytes` of the artifact; absent in backups made before they were recorded, which
//! are then only unpacked). Pure, so the rules are unit-tested natively.

use serde::Deserialize;

/// One archive of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Path relative to the backup folder, e.g. `uploads.tar.gz`.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Regular files in it, when backup.json says.
    pub files: Option<u64>,
    /// Their bytes, when backup.json says.
    pub bytes: Option<u64>,
}

#[derive(Deserialize)]
struct Manifest {
    artifacts: Vec<Artifact>,
}

#[derive(Deserialize)]
struct Artifact {
    file: String,
    size: u64,
    #[serde(default)]
    files: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
}

/// The `.tar.gz` artifacts `backup.json` lists, in its order.
pub fn listed(manifest: &str) -> Result<Vec<Listed>, String> {
    let m: Manifest = serde_json::from_str(manifest)
        .map_err(|e| format!("backup.json is not a manifest ({e})"))?;
    Ok(m.artifacts
        .into_iter()
        .filter(|a| a.file.ends_with(".tar.gz"))
        .map(|a| Listed {
            file: a.file,
            size: a.size,
            files: a.files,
            bytes: a.bytes,
        })
        .collect())
}

/// Whether `db.dump` is among the artifacts.
pub fn has_db_dump(manifest: &str) -> bool {
    serde_json::from_str::<Manifest>(manifest)
        .map(|m| m.artifacts.iter().any(|a| a.file == "db.dump"))
        .unwrap_or(false)
}

/// What differs between an unpacked archive (`files`, `bytes`) and backup.json.
pub fn compare(archive: &Listed, files: u64, bytes: u64) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(want) = archive.files
        && want != files
    {
        problems.push(format!(
            "{} unpacks to {files} files, backup.json lists {want}",
            archive.file
        ));
    }
    if let Some(want) = archive.bytes
        && want != bytes
    {
        problems.push(format!(
            "{} unpacks to {bytes} bytes of files, backup.json lists {want}",
            archive.file
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_with_and_without_counts() {
        let m = r#"{"formatVersion":1,"artifacts":[
            {"name":"db","file":"db.dump","size":9,"sha256":"x"},
            {"name":"uploads","file":"uploads.tar.gz","size":5,"sha256":"y","files":3,"bytes":70},
            {"name":"old","file":"admin.tar.gz","size":4,"sha256":"z"}]}"#;
        let l = listed(m).unwrap();
        assert_eq!(l.len(), 2);
        assert!(has_db_dump(m));
        assert!(compare(&l[0], 3, 70).is_empty());
        let p = compare(&l[0], 2, 60);
        assert_eq!(
            p,
            [
                "uploads.tar.gz unpacks to 2 files, backup.json lists 3",
                "uploads.tar.gz unpacks to 60 bytes of files, backup.json lists 70"
            ]
        );
        assert!(compare(&l[1], 1, 1).is_empty(), "no counts: only unpacked");
        assert!(listed("{}").is_err());
    }
}
