//! What the documentation promises against what the code does: the README's configuration table
//! lists exactly the variables the service reads.

use std::collections::BTreeSet;

/// Every `"IDENTITY_..."` or `"OTEL_..."` string literal in `files`.
fn variables_read(files: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in files {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for quoted in text.split('"').skip(1).step_by(2) {
            let is_name = quoted
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_name && (quoted.starts_with("IDENTITY_") || quoted.starts_with("OTEL_")) {
                found.insert(quoted.to_owned());
            }
        }
    }
    found
}

/// The variables named in the first column of the README's configuration table.
fn variables_documented() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .lines()
        .skip_while(|l| !l.starts_with("| variable"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| row.split('|').nth(1).unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    table
        .iter()
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned))
        .filter(|name| name.starts_with("IDENTITY_") || name.starts_with("OTEL_"))
        .collect()
}

#[test]
fn the_readme_documents_every_variable_the_service_reads_and_no_other() {
    let read = variables_read(&["src/config.rs", "src/config/google.rs", "src/telemetry.rs"]);
    let documented = variables_documented();
    // Every secret also takes NAME_FILE, which the table says once, above itself.
    let read: BTreeSet<String> = read
        .into_iter()
        .filter(|name| !name.ends_with("_FILE"))
        .collect();
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "read but not in the README: {undocumented:?}; in the README but never read: {unread:?}"
    );
    assert!(read.len() > 30, "{read:?}");
}
