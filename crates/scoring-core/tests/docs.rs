//! docs/scoring.md publishes the KPI catalogue; this test keeps it in sync with the code.
//! `VITALS_UPDATE_DOCS=1 cargo test -p vitals-scoring-core --test docs` rewrites the table.

use vitals_scoring_core::{BUILTIN_COUNT, Catalogue};

const START: &str = "<!-- kpi-table:start -->\n";
const END: &str = "<!-- kpi-table:end -->";

#[test]
fn kpi_table_in_docs_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scoring.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        panic!("{path} lacks the {START:?} / {END:?} markers");
    };
    let table = Catalogue::builtin_only().markdown_table();
    let current = &doc[a + START.len()..b];
    if current != table {
        if std::env::var_os("VITALS_UPDATE_DOCS").is_some() {
            let updated = format!("{}{}{}", &doc[..a + START.len()], table, &doc[b..]);
            std::fs::write(path, updated).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        } else {
            panic!(
                "the KPI table in docs/scoring.md is out of date; run \
                 VITALS_UPDATE_DOCS=1 cargo test -p vitals-scoring-core --test docs"
            );
        }
    }
    assert_eq!(table.lines().count(), BUILTIN_COUNT + 2);
}
