//! What a dump says it holds and what the scratch database holds after the restore, compared:
//! the tables of the dump's catalog (`pg_restore --list`), the rows of each table's `COPY` data
//! (`pg_restore --data-only`, one line per row), and the tables and row counts the scratch
//! database answers to [`COUNT_QUERY`]. Pure: the plugin runs the programs, these read their
//! output, so the rules are unit-tested natively.

use std::collections::BTreeMap;
use std::io::BufRead;

/// A table: (schema, name), as PostgreSQL spells them (unquoted).
pub type Table = (String, String);

/// Every ordinary and partitioned table of the scratch database outside the system schemas,
/// with its own rows (`ONLY`: a partition's rows are counted once, in the partition), as one
/// line of JSON: `[["schema","table",rows],…]`. Fixed text, granted literally to `psql -c` in
/// `pipelines/drill.toml`, so the step can run no other SQL through that grant.
pub const COUNT_QUERY: &str = r#"SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, array_to_string(xpath('/row/n/text()', query_to_xml(format('SELECT count(1) AS n FROM ONLY %I.%I', n.nspname, c.relname), false, true, '')), '')::bigint) ORDER BY n.nspname, c.relname), json_build_array()) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('information_schema') AND n.nspname NOT LIKE 'pg\_%'"#;

/// The tables of a dump's table of contents (`pg_restore --list`): every `TABLE` entry (not
/// `TABLE DATA` nor `TABLE ATTACH`). Entry lines read `<id>; <oid> <oid> TABLE <schema> <name>
/// <owner>`; a name with spaces cannot be told from its neighbours, so it is counted but not
/// named (`None`).
pub fn toc_tables(list: &str) -> Vec<Option<Table>> {
    let mut out = Vec::new();
    for line in list.lines() {
        if line.starts_with(';') {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        if tokens.len() < 3 || tokens[2] != "TABLE" {
            continue;
        }
        if matches!(tokens.get(3), Some(&"DATA") | Some(&"ATTACH")) {
            continue;
        }
        out.push(match tokens.as_slice() {
            [_, _, _, schema, name, _owner] => Some((schema.to_string(), name.to_string())),
            _ => None,
        });
    }
    out
}

/// Rows of each table's `COPY … FROM stdin;` block in a data-only SQL script, as pg_restore
/// writes it: one line per row (text format escapes newlines), ended by `\.`. Tables whose data
/// is empty are there with 0.
pub fn copy_rows(script: impl BufRead) -> std::io::Result<BTreeMap<Table, u64>> {
    let mut rows = BTreeMap::new();
    let mut current: Option<(Table, u64)> = None;
    for line in script.split(b'\n') {
        let line = line?;
        match &mut current {
            Some((_, n)) => {
                if line == b"\\." {
                    let (table, n) = current.take().unwrap_or_default();
                    *rows.entry(table).or_insert(0) += n;
                } else {
                    *n += 1;
                }
            }
            None => {
                let text = String::from_utf8_lossy(&line);
                if let Some(table) = copy_header(&text) {
                    current = Some((table, 0));
                }
            }
        }
    }
    Ok(rows)
}

/// The table of a `COPY <schema>.<table> (<columns>) FROM stdin;` line.
fn copy_header(line: &str) -> Option<Table> {
    let rest = line.strip_prefix("COPY ")?;
    if !line.ends_with(" FROM stdin;") {
        return None;
    }
    let (schema, rest) = identifier(rest)?;
    let rest = rest.strip_prefix('.')?;
    let (table, _) = identifier(rest)?;
    Some((schema, table))
}

/// One SQL identifier at the start of `s` as pg_dump writes it (quoted with `"…"` and `""` for a
/// quote, or bare), and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// The scratch database's answer to [`COUNT_QUERY`].
pub fn db_rows(json: &str) -> Result<BTreeMap<Table, u64>, String> {
    let rows: Vec<(String, String, u64)> = serde_json::from_str(json.trim())
        .map_err(|e| format!("the table counts are not what the query returns ({e})"))?;
    Ok(rows.into_iter().map(|(s, t, n)| ((s, t), n)).collect())
}

/// What the restored database lacks against the dump: tables of the catalog that are missing,
/// and tables whose rows differ from their `COPY` data. Empty: they agree.
pub fn compare(
    toc: &[Option<Table>],
    data: &BTreeMap<Table, u64>,
    db: &BTreeMap<Table, u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (schema, name) in toc.iter().flatten() {
        if !db.contains_key(&(schema.clone(), name.clone())) {
            problems.push(format!(
                "table {schema}.{name} is in the dump's catalog but not in the restored database"
            ));
        }
    }
    if toc.len() > db.len() {
        problems.push(format!(
            "the dump's catalog has {} tables, the restored database {}",
            toc.len(),
            db.len()
        ));
    }
    for ((schema, name), rows) in data {
        match db.get(&(schema.clone(), name.clone())) {
            Some(restored) if restored == rows => {}
            Some(restored) => problems.push(format!(
                "table {schema}.{name} has {restored} rows restored, the dump holds {rows}"
            )),
            None => problems.push(format!(
                "table {schema}.{name} has data in the dump but is not in the restored database"
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, n: &str) -> Table {
        (s.into(), n.into())
    }

    #[test]
    fn the_catalog_lists_tables_not_their_data_or_attachments() {
        let list = ";\n; Archive created at 2026-12-07\n;\n\
            215; 1259 16390 TABLE public items postgres\n\
            216; 1259 16391 SEQUENCE public items_id_seq postgres\n\
            217; 1259 16392 TABLE public \"odd name\" postgres\n\
            218; 1259 16393 TABLE ATTACH public p_2026 postgres\n\
            3340; 0 16390 TABLE DATA public items postgres\n";
        let tables = toc_tables(list);
        assert_eq!(tables.len(), 2, "{tables:?}");
        assert_eq!(tables[0], Some(t("public", "items")));
        assert_eq!(tables[1], None, "a name with a space is counted, not named");
    }

    #[test]
    fn copy_blocks_count_one_row_per_line_and_names_are_unquoted() {
        let script = "--\n-- Data\n--\n\n\
            COPY public.items (id, name) FROM stdin;\n1\ta\n2\tb\\nc\n3\tc\n\\.\n\n\
            COPY \"Shop\".\"odd \"\"name\"\"\" (id) FROM stdin;\n\\.\n\
            COPY public.nocols  FROM stdin;\n\n\\.\n\
            SELECT pg_catalog.setval('public.items_id_seq', 3, true);\n";
        let rows = copy_rows(script.as_bytes()).unwrap();
        assert_eq!(rows[&t("public", "items")], 3);
        assert_eq!(rows[&t("Shop", "odd \"name\"")], 0);
        assert_eq!(rows[&t("public", "nocols")], 1, "an empty line is a row");
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn a_cut_copy_block_counts_no_table() {
        let rows = copy_rows("COPY public.items (id) FROM stdin;\n1\n2\n".as_bytes()).unwrap();
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[test]
    fn restored_and_dumped_rows_must_agree() {
        let toc = vec![Some(t("public", "items")), Some(t("public", "gone"))];
        let data = BTreeMap::from([(t("public", "items"), 3), (t("public", "gone"), 1)]);
        let db = db_rows(r#"[["public","items",2]]"#).unwrap();
        let problems = compare(&toc, &data, &db);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("public.gone is in the dump's catalog"));
        assert!(problems[1].contains("2 tables, the restored database 1"));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("2 rows restored, the dump holds 3"))
        );
        let db = db_rows(r#"[["public","items",3],["public","gone",1]]"#).unwrap();
        assert!(compare(&toc, &data, &db).is_empty());
        assert!(db_rows("[]").unwrap().is_empty());
        assert!(db_rows("ERROR").is_err());
    }
}
