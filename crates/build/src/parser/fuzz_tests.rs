//! A deterministic smoke fuzz: random token soups must give a result or an error, never a
//! panic, from the parser and the expander.

use super::expand::{expand_vars_only, expand_word, expand_words};
use super::{parse, parse_line};

const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "CMD ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "LABEL ",
    "SHELL ",
    "EXPOSE ",
    "\\\n",
    "\n",
    " ",
    "\t",
    "\r",
    "#",
    "# escape=`\n",
    "`",
    "<<EOF",
    "<<-\"E\"",
    "EOF\n",
    "E\n",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "-",
    "+",
    "$",
    "'",
    "\"",
    "[",
    "]",
    "\"a\"",
    ",",
    "=",
    "--mount=",
    "type=cache,target=/x",
    "--from=",
    "--interval=",
    "1s",
    "AS ",
    "x",
    "é",
    "µs",
    "NONE",
    "CMD",
    "\\",
];

#[test]
fn random_inputs_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let lookup = |k: &str| k.len().is_multiple_of(2).then(|| format!("v{k}"));
    for _ in 0..20_000 {
        let n = (next() % 24) as usize;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(TOKENS[(next() % TOKENS.len() as u64) as usize]);
        }
        let _ = parse(&s);
        let _ = parse(&format!("FROM x\n{s}"));
        let _ = parse_line(&s, '\\');
        let _ = expand_word(&s, '\\', &lookup);
        let _ = expand_words(&s, '`', &lookup);
        let _ = expand_vars_only(&s, &lookup);
    }
}
