//! The corpus of Microkit's rules (`tests/sdf/microkit/`, descriptions of ours, each valid
//! or breaking one rule: `<!-- expect: ok|refused -->`, the line at fault marked
//! `<!-- HERE -->`). Here, without an SDK: a valid one passes `check`; a refused one is
//! refused by `check` at the marked line, or is left to the Microkit tool, and then
//! `build` keeps the marked line at its number, so the Microkit tool's message points at
//! it. With an SDK, `images/microkit-rules.sh` (in `make test`) runs the Microkit tool on
//! the same files and checks that the two agree.

use std::path::Path;

#[test]
fn the_corpus_is_refused_where_microkit_would_or_left_to_it_line_for_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/microkit");
    let (mut ours, mut left, mut valid) = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display();
        let refused = text.contains("<!-- expect: refused -->");
        assert!(refused || text.contains("<!-- expect: ok -->"), "{name}: no expect line");
        // In the configuration images/microkit-rules.sh gives both tools (make test's).
        let (sys, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::default().with_config("debug"));
        if !refused {
            assert!(problems.is_empty(), "{name}: {problems:?}");
            valid += 1;
            continue;
        }
        let here = text.lines().position(|l| l.contains("<!-- HERE -->")).expect("a marked line") + 1;
        if let Some(p) = problems.first() {
            assert_eq!(p.line as usize, here, "{name}: refused at the wrong line: {p:?}");
            ours += 1;
        } else {
            let built = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
            assert_eq!(built.lines().nth(here - 1), text.lines().nth(here - 1), "{name}: the marked line moved");
            left += 1;
        }
    }
    assert!(valid >= 3 && ours >= 8 && left >= 10, "valid {valid}, refused here {ours}, left to Microkit {left}");
}
