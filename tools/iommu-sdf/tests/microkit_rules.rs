//! The corpus of Microkit's rules (`tests/sdf/microkit/`, descriptions of ours, each valid
//! or breaking one rule: `<!-- expect: ok|refused -->`, the line at fault marked
//! `<!-- HERE -->`). Here, without an SDK: a valid one passes `check`; a refused one is
//! refused by `check` at the marked line, or is left to the Microkit tool, and then
//! `build` keeps the marked line at its number, so the Microkit tool's message points at
//! it. With an SDK, `images/microkit-rules.sh` (in `make test`) runs the Microkit tool on
//! the same files and checks that the two agree.

use std::path::Path;

mod common;

/// Corpus descriptions `check` refuses only with the files read (a program's symbols, a
/// prefill file's size), which this test does not give it; `images/microkit-rules.sh`
/// does.
const READ_FILES: &[&str] = &["setvar-symbol-missing", "prefill-larger-than-region"];

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
        // One marked `by: iommu-sdf` is one `check` must refuse itself, not leave to the
        // Microkit tool; here, without the programs, only those whose rule is not about
        // a program (every PD runs the corpus's own c-edu-driver.elf) or another file.
        let programs_only = text.lines().any(|l| l.contains("<program_image") && !l.contains("\"c-edu-driver.elf\""));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        assert!(
            !text.contains("<!-- by: iommu-sdf -->")
                || programs_only
                || READ_FILES.contains(&stem)
                || !problems.is_empty(),
            "{name}: left to the Microkit tool, and it is marked as iommu-sdf's to refuse"
        );
        if let Some(p) = problems.first() {
            assert_eq!(p.line as usize, here, "{name}: refused at the wrong line: {p:?}");
            ours += 1;
        } else {
            let built = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
            assert_eq!(built.lines().nth(here - 1), text.lines().nth(here - 1), "{name}: the marked line moved");
            left += 1;
        }
    }
    assert!(valid >= 5 && ours >= 73, "valid {valid}, refused here {ours}, left to Microkit {left}");
    // As many, and as many valid, as the README says agree under the SDK's tool: a
    // description lost goes unnoticed there (the script judges the files it finds).
    let all = common::readme_count_after("Today **");
    let readme_valid = common::readme_count_after(&format!("Today **{all} of {all} agree**: "));
    assert_eq!((valid + ours + left, valid), (all, readme_valid), "the corpus (all, valid) against the README's count");
}
