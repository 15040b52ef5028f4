//! A problem found in a description, for a person: where, what, and what would fix it.
//! The layer every other one reports through; it depends on nothing.

/// A problem, for a person: where, what, and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the element.
    pub line: u32,
    /// The element's name.
    pub element: String,
    /// What is wrong.
    pub message: String,
    /// What would fix it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{}>: {}\n    fix: {}", self.line, self.element, self.message, self.fix)
    }
}

/// The 1-based column of `p`'s element on its line: where `<element` starts, else the
/// line's first non-blank character (a problem found where the text ends), else 1.
pub fn column(text: &str, p: &Problem) -> usize {
    column_on(text.lines().nth((p.line as usize).saturating_sub(1)), p)
}

/// `column` with `p`'s line already found (`text.lines()` collected once: 20,000 problems
/// each searching the text from its start would be quadratic).
pub fn column_on(line: Option<&str>, p: &Problem) -> usize {
    let Some(line) = line else { return 1 };
    let at = line.find(&format!("<{}", p.element)).or_else(|| line.find(|c: char| !c.is_whitespace()));
    // Columns count characters, as editors do.
    at.map_or(1, |i| line[..i].chars().count() + 1)
}

/// A problem at `line` with the element `element`.
pub fn p(line: u32, element: &str, message: String, fix: impl Into<String>) -> Problem {
    Problem { line, element: element.into(), message, fix: fix.into() }
}

/// `s` for a terminal, on one line: a backslash, and every control character (a newline,
/// a terminal's ESC, C1 controls), escaped (`\\`, `\n`, `\r`, `\t`, `\x1b`), the rest as
/// it is. For names read from files a hostile build may have written (`verify`'s list):
/// printed raw, ESC sequences would rewrite what the terminal shows, and a newline forge
/// a line of output.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaped_leaves_one_line_of_no_controls() {
        assert_eq!(super::escaped("a\u{1b}[2J\nb\\c\u{9b}d é"), "a\\x1b[2J\\nb\\\\c\\x9bd é");
    }
}
