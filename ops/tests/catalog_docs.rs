//! `docs/ops.md` describes every op of the catalog: a section heading names it, and the
//! summary table (its last section) has a row for it that lists each of its attributes, and of no op that the
//! catalog does not have.

use std::collections::HashSet;

use anyaccel_ops::CATALOG;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ops.md");
    std::fs::read_to_string(path).expect("docs/ops.md is readable")
}

/// The op names in backticks on a line.
fn names(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_op_has_a_section_and_a_table_row_with_its_attributes() {
    let doc = doc();
    let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with('#')).collect();
    let table = doc
        .split_once("## 9. Summary table")
        .expect("docs/ops.md has its summary table")
        .1;
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
    for def in CATALOG.iter() {
        assert!(
            headings.iter().any(|h| names(h).contains(&def.name)),
            "docs/ops.md has no section heading naming `{}`",
            def.name
        );
        let row = rows
            .iter()
            .find(|r| names(r.split('|').nth(1).unwrap_or("")).contains(&def.name))
            .unwrap_or_else(|| panic!("docs/ops.md's table has no row for `{}`", def.name));
        for a in def.attrs {
            assert!(
                row.contains(&format!("{}:", a.name)),
                "docs/ops.md's row for `{}` does not list attribute `{}`: {row}",
                def.name,
                a.name
            );
        }
    }
    let known: HashSet<&str> = CATALOG.iter().map(|d| d.name).collect();
    for r in rows {
        for name in names(r.split('|').nth(1).unwrap_or("")) {
            assert!(
                known.contains(name),
                "docs/ops.md's table lists `{name}`, which is not in the catalog"
            );
        }
    }
}
