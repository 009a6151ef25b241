//! A cheap, non-recursive pre-scan of a CEL source that bounds how deep the parser, the
//! AST walks and the interpreter will recurse, before any of them runs.
//!
//! The `cel` crate's parser (ANTLR) and interpreter are recursive, and its own recursion
//! limit only counts bracket nesting: a long chain of binary operators (`1 + 1 + ... + 1`)
//! or of member accesses (`a.b.c...`, `x[0][0]...`) is a left-leaning tree as deep as the
//! chain is long, and 1,500 terms overflowed a 2 MiB thread stack. This scan walks the
//! tokens once with an explicit stack and computes an upper bound on the depth of the
//! tree the parser would build; [`super::Rule::compile`] refuses a source whose bound is
//! over [`super::MAX_DEPTH`] without ever parsing it.

/// What the scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Upper bound on the depth of the expression tree.
    pub depth: u32,
    /// Tokens seen (literals, names, operators and brackets).
    pub tokens: u32,
}

/// One bracket level: `(...)`, `[...]` or `{...}` (the root counts as one).
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    /// Operators (and bracket openings) in the current term: each may add a level.
    ops: u32,
    /// The deepest bracket group closed inside the current term.
    child: u32,
    /// The deepest term seen so far in this level.
    best: u32,
    /// Terms joined by `&&` / `||` (a balanced tree: log2 of them add levels).
    logic: u32,
    /// `?` seen in this level: the parser nests the rest of the level in the else
    /// branch, so every later term is one level deeper per `?`, whatever joins them.
    ternary: u32,
}

impl Frame {
    /// Ends the current term (at `,`, `&&`, `||`).
    fn end_term(&mut self) {
        let term = self
            .ops
            .saturating_add(self.child)
            .saturating_add(self.ternary);
        self.best = self.best.max(term);
        self.ops = 0;
        self.child = 0;
    }

    /// The depth bound of the whole level, the level itself included.
    fn close(mut self) -> u32 {
        self.end_term();
        let logic = u32::BITS - self.logic.leading_zeros();
        self.best.saturating_add(logic).saturating_add(1)
    }
}

/// Scans `source` (see the module comment). Never fails: what the scan does not
/// understand is left to the parser, which reports it.
pub fn scan(source: &str) -> Scan {
    let b = source.as_bytes();
    let mut stack: Vec<Frame> = vec![Frame::default()];
    let mut tokens: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        tokens = tokens.saturating_add(1);
        let top = stack.len() - 1;
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                tokens -= 1;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => i = skip_string(b, i, false),
            b'0'..=b'9' => {
                while i < b.len() {
                    let d = b[i];
                    let exponent_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                    if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &b[start..i];
                let quote = b.get(i).is_some_and(|q| *q == b'"' || *q == b'\'');
                if quote && is_string_prefix(word) {
                    let raw = word.iter().any(|x| x.eq_ignore_ascii_case(&b'r'));
                    i = skip_string(b, i, raw);
                } else if word == b"in" {
                    stack[top].ops = stack[top].ops.saturating_add(1);
                }
            }
            b'&' | b'|' => {
                if b.get(i + 1) == Some(&c) {
                    i += 1;
                }
                stack[top].end_term();
                stack[top].logic = stack[top].logic.saturating_add(1);
                i += 1;
            }
            b',' => {
                stack[top].end_term();
                i += 1;
            }
            b'(' | b'[' | b'{' => {
                stack[top].ops = stack[top].ops.saturating_add(1);
                stack.push(Frame::default());
                i += 1;
            }
            b')' | b']' | b'}' => {
                if stack.len() > 1 {
                    close_top(&mut stack);
                }
                i += 1;
            }
            b'?' => {
                stack[top].ternary = stack[top].ternary.saturating_add(1);
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'!' | b'<' | b'>' | b'.' => {
                // Two-character operators (`==`, `!=`, `<=`, `>=`) count once.
                if b.get(i + 1) == Some(&b'=') {
                    i += 1;
                }
                stack[top].ops = stack[top].ops.saturating_add(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    while stack.len() > 1 {
        close_top(&mut stack);
    }
    let depth = stack.pop().map(Frame::close).unwrap_or(1);
    Scan { depth, tokens }
}

fn close_top(stack: &mut Vec<Frame>) {
    if let Some(f) = stack.pop() {
        let d = f.close();
        if let Some(parent) = stack.last_mut() {
            parent.child = parent.child.max(d);
        }
    }
}

/// `r`, `b`, `rb`, `br` in any case: the prefixes of CEL string and bytes literals.
fn is_string_prefix(word: &[u8]) -> bool {
    match word.len() {
        1 => matches!(word[0].to_ascii_lowercase(), b'r' | b'b'),
        2 => {
            let (x, y) = (word[0].to_ascii_lowercase(), word[1].to_ascii_lowercase());
            (x == b'r' && y == b'b') || (x == b'b' && y == b'r')
        }
        _ => false,
    }
}

/// The index just past the string literal opening at `i` (single, double or triple
/// quotes; escapes unless `raw`); the end of the source when it is not closed.
fn skip_string(b: &[u8], i: usize, raw: bool) -> usize {
    let q = b[i];
    let triple = b.len() >= i + 3 && b[i + 1] == q && b[i + 2] == q;
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && !raw {
            j += 2;
            continue;
        }
        if c == q {
            if !triple {
                return j + 1;
            }
            if b.len() >= j + 3 && b[j + 1] == q && b[j + 2] == q {
                return j + 3;
            }
        }
        j += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(s: &str) -> u32 {
        scan(s).depth
    }

    #[test]
    fn chains_count_every_operator() {
        let chain = |n: usize| format!("{} > 0", vec!["1"; n].join("+"));
        assert!(depth(&chain(10)) >= 10);
        assert!(depth(&chain(1500)) >= 1500);
        assert!(depth(&"a.".repeat(100)) >= 100);
        assert!(depth(&format!("x{}", "[0]".repeat(100))) >= 100);
        assert!(depth(&format!("{}1{}", "(".repeat(50), ")".repeat(50))) >= 100);
        assert!(depth(&format!("{}1{}", "[".repeat(50), "]".repeat(50))) >= 100);
        // Ternaries nest their else branch, even across `||`.
        assert!(depth(&"a ? b : c || ".repeat(100)) >= 100);
    }

    #[test]
    fn flat_lists_and_logic_stay_shallow() {
        let list = format!("plan in [{}]", vec!["\"a\""; 500].join(", "));
        assert!(depth(&list) <= 4, "{}", depth(&list));
        let ors = vec!["plan == \"a\""; 200].join(" || ");
        assert!(depth(&ors) <= 12, "{}", depth(&ors));
    }

    #[test]
    fn strings_and_comments_hide_operators() {
        assert!(depth(r#"plan == "((((((((((+++++++++""#) <= 3);
        assert!(depth("plan == '''a''' + r'\\' // ((((((((((\n") <= 4);
        assert_eq!(scan("").tokens, 0);
        // An unclosed string or bracket is left to the parser.
        assert!(depth("\"abc") <= 2);
        assert!(depth("((((") >= 8);
    }
}
